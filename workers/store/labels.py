"""Labels of posts: one row per (post, key), who gave it and when. Written by
`PUT /v1/posts/{id}/labels`, read by `GET` and by `backfire eval --from-store`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from workers.domain import LABEL_KEYS, iso_utc
from workers.errors import NotFound
from workers.store.db import Database
from workers.store.models import LabelRow, PostRow, utcnow

PAGE = 1000


def _post(s: Any, owner: str | None, public_id: str) -> PostRow:
    q = select(PostRow).where(PostRow.id == public_id)
    if owner is not None:
        q = q.where(PostRow.owner == owner)
    row = s.scalars(q).first()
    if row is None:  # another key's post looks exactly like a missing one
        raise NotFound(f"There is no post {public_id!r}.")
    return row


def _resource(post: PostRow, rows: list[LabelRow]) -> dict[str, Any]:
    return {
        "post": post.id,
        "post_id": post.post_id,
        "labels": {
            r.key: {"value": r.value, "by": r.labelled_by, "at": iso_utc(r.labelled_at)}
            for r in sorted(rows, key=lambda r: LABEL_KEYS.index(r.key))
        },
    }


def get_labels(db: Database, owner: str | None, public_id: str) -> dict[str, Any]:
    with db.read() as s:
        post = _post(s, owner, public_id)
        rows = list(s.scalars(select(LabelRow).where(LabelRow.post_seq == post.seq)))
        return _resource(post, rows)


def set_labels(
    db: Database, owner: str, public_id: str, values: Mapping[str, Any], by: str
) -> dict[str, Any]:
    """Set each key given (a None value removes that label); keys not given are kept."""
    for attempt in range(2):
        try:
            with db.write() as s:
                post = _post(s, owner, public_id)
                existing = {
                    r.key: r
                    for r in s.scalars(select(LabelRow).where(LabelRow.post_seq == post.seq))
                }
                now = utcnow()
                for key, value in values.items():
                    row = existing.get(key)
                    if value is None:
                        if row is not None:
                            s.delete(row)
                            del existing[key]
                    elif row is None:
                        existing[key] = LabelRow(post_seq=post.seq, key=key, value=value,
                                                 labelled_by=by, labelled_at=now)  # fmt: skip
                        s.add(existing[key])
                    else:
                        row.value, row.labelled_by, row.labelled_at = value, by, now
                s.flush()
                return _resource(post, list(existing.values()))
        except IntegrityError:
            if attempt:  # a concurrent PUT inserted the same key first: update it instead
                raise
    raise AssertionError("unreachable")


def labelled_posts(
    db: Database, hashtag: str | None = None, owner: str | None = None
) -> Iterator[tuple[PostRow, dict[str, Any]]]:
    """Posts with at least one label (of `hashtag`, of `owner`; all when None), oldest first,
    with {key: value}."""
    after = 0
    while True:
        with db.read() as s:
            q = (
                select(PostRow)
                .where(PostRow.seq > after, PostRow.seq.in_(select(LabelRow.post_seq)))
                .order_by(PostRow.seq)
                .limit(PAGE)
            )
            if hashtag is not None:
                q = q.where(PostRow.hashtag == hashtag)
            if owner is not None:
                q = q.where(PostRow.owner == owner)
            posts = list(s.scalars(q))
            if not posts:
                return
            labels: dict[int, dict[str, Any]] = {p.seq: {} for p in posts}
            for r in s.scalars(select(LabelRow).where(LabelRow.post_seq.in_(list(labels)))):
                labels[r.post_seq][r.key] = r.value
        for p in posts:
            after = p.seq
            yield p, labels[p.seq]
