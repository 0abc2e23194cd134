"""Report rows from the verdict store (issue 3), for `backfire report --hashtag` and the API.

Yields the records a JSONL output holds (`ResultRow.as_record()`, via the store's one row map),
plus when each post was scored, so the report does not care where rows come from. Thumbnails
come from the content-addressed media store (bytes already vetted at upload; `build_report`
is given the store), so a store report never fetches a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from workers.config import Settings
from workers.domain import iso_utc
from workers.store.db import Database
from workers.store.models import PostRow
from workers.store.posts import with_current_verdict
from workers.store.views import result_row

PAGE = 2000


def store_rows(
    db: Database, settings: Settings, hashtag: str, owner: str | None = None
) -> Iterator[dict[str, Any]]:
    """Finished posts of `hashtag` (all owners unless `owner`): their current verdict or error.
    Posts still queued or running are left out."""
    after = 0
    while True:
        with db.read() as s:
            q = (
                with_current_verdict()
                .where(PostRow.hashtag == hashtag, PostRow.seq > after)
                .order_by(PostRow.seq)
                .limit(PAGE)
            )
            if owner is not None:
                q = q.where(PostRow.owner == owner)
            page = s.execute(q).all()
        if not page:
            return
        for p, v in page:
            after = p.seq
            row = result_row(p, v)
            if row is not None:
                yield replace(row, scored_at=iso_utc(p.finished_at)).as_record()
