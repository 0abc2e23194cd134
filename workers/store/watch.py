"""The store side of `backfire watch`: durable cursors per (source, query), and the verdicts of
an in-process watcher (posts scored by the watcher itself, not by a worker).

Exactly-once effect across `kill -9`: a batch's posts and verdicts are committed in one
transaction, then the cursor is saved. A watcher killed between the two polls the same posts
again after a restart; `scored_among` says they are done, so none is scored twice, and none is
missed because the cursor never moves past posts that are not committed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from workers.domain import ResultRow, parse_time
from workers.store.db import Database
from workers.store.models import TERMINAL, PostRow, VerdictRow, WatchCursorRow, utcnow

#: The owner of posts a watcher scored in-process (API keys own the others). Rules added with
#: `backfire alert add` watch every owner's posts, so they see these too.
WATCH_OWNER = "watch"


def load_cursor(db: Database, source: str, query: str) -> dict[str, Any] | None:
    with db.read() as s:
        row = s.get(WatchCursorRow, (source, query))
        return None if row is None else dict(row.state)


def save_cursor(db: Database, source: str, query: str, state: dict[str, Any]) -> None:
    with db.write() as s:
        row = s.get(WatchCursorRow, (source, query))
        if row is None:
            s.add(WatchCursorRow(source=source, query=query, state=state, updated_at=utcnow()))
        else:
            row.state, row.updated_at = state, utcnow()


def scored_among(db: Database, owner: str, post_ids: Sequence[str], version: str) -> set[str]:
    """Which of `post_ids` already have a finished row for `version` (or failed, quarantined):
    what a restarted watcher must not score again."""
    if not post_ids:
        return set()
    with db.read() as s:
        q = select(PostRow.post_id).where(
            PostRow.owner == owner,
            PostRow.post_id.in_(list(post_ids)),
            PostRow.status.in_(TERMINAL),
            PostRow.pipeline_version == version,
        )
        return set(s.scalars(q).all())


@dataclass
class Stored:
    """A stored result: its row as the store keeps it (for alerts) and when it was stored."""

    post: PostRow
    finished_at: datetime


def store_results(
    db: Database,
    owner: str,
    rows: Sequence[tuple[ResultRow, list[str]]],
    version: str,
    accepted_at: datetime | None = None,
) -> list[Stored]:
    """Commit each (row, detected scenes) as a finished post with its verdict (or error), in one
    transaction. A post already finished for `version` is left alone (not stored twice)."""
    now = utcnow()
    out: list[Stored] = []
    with db.write() as s:
        ids = [r.post_id for r, _ in rows]
        existing = {
            p.post_id: p
            for p in s.scalars(
                select(PostRow).where(PostRow.owner == owner, PostRow.post_id.in_(ids))
            )
        }
        for row, detected in rows:
            post = existing.get(row.post_id)
            if post is not None and post.status in TERMINAL and post.pipeline_version == version:
                continue
            if post is None:
                post = PostRow(
                    id=secrets.token_hex(12), owner=owner, post_id=row.post_id,
                    hashtag=row.hashtag, caption=row.caption_text or "", author=row.author,
                    created_at=row.created_at, posted_at=parse_time(row.created_at) or now,
                    image_url=row.image, media_sha256=row.media_sha256 or "", attempts=1,
                    accepted_at=accepted_at or now, touched_at=now, webhook_attempts=0,
                )  # fmt: skip
                s.add(post)
                existing[row.post_id] = post
            post.status = "done" if row.ok else "failed"
            post.pipeline_version = version
            post.media_sha256 = row.media_sha256 or post.media_sha256
            post.finished_at = post.touched_at = now
            post.last_error = row.error
            s.flush()  # the post's seq, for its verdict
            try:
                with s.begin_nested():
                    s.add(
                        VerdictRow(
                            post_seq=post.seq, pipeline_version=version, record=row.as_record(),
                            verdict=row.verdict, detected=detected, scoring_s=0.0,
                        )
                    )  # fmt: skip
            except IntegrityError:
                continue  # a worker stored this post's verdict first (a --queue run): keep it
            out.append(Stored(post, now))
    return out
