"""Report rows from the verdict store (issue 3), for `backfire report --hashtag` and the API.

Yields the same dicts as `PostResult.as_record()` so the report does not care where rows come
from. Thumbnails come from the content-addressed media store (bytes already vetted at upload),
so a store report never fetches a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workers.config import Settings
from workers.store.blobs import BlobStore
from workers.store.db import Database
from workers.store.models import PostRow, VerdictRow
from workers.store.posts import with_current_verdict

PAGE = 2000


def store_rows(
    db: Database, settings: Settings, hashtag: str, owner: str | None = None
) -> Iterator[dict[str, Any]]:
    """Finished posts of `hashtag` (all owners unless `owner`): their current verdict or error.
    Posts still queued or running are left out."""
    blobs = BlobStore(settings.resolved_media_dir)
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
            row = _row(p, v, blobs)
            if row is not None:
                yield row


def _row(p: PostRow, v: VerdictRow | None, blobs: BlobStore) -> dict[str, Any] | None:
    base: dict[str, Any] = {
        "post_id": p.post_id or p.id,
        "hashtag": p.hashtag,
        "created_at": p.created_at,
        "author": p.author,
        "image": str(blobs.path(p.media_sha256)) if p.media_sha256 else p.image_url,
        "caption_text": p.caption,
        "media_sha256": p.media_sha256,
        "pipeline_version": p.pipeline_version,
        "scored_at": p.finished_at.strftime("%-d %b %Y %H:%M UTC") if p.finished_at else None,
    }
    if v is not None and v.verdict:
        rec = v.record or {}
        keep = ("verdict", "confidence", "reasons", "signals", "scenes", "caption", "extra")
        return {**base, "status": "ok", **{k: rec[k] for k in keep if k in rec}}
    if p.status in ("failed", "quarantined") or (v is not None and not v.verdict):
        err = p.last_error or (v.record.get("error") if v is not None else None) or {}
        return {**base, "status": "error", "error": err or {"type": p.status, "message": ""}}
    return None
