"""The one mapping between stored rows and what leaves the store: a post's output row
(`result_row`, the typed `ResultRow` that reports, alert windows and `score --queue` read) and
its API resource (`post_resource`, for `GET /v1/posts/{id}`, lists and webhooks)."""

from __future__ import annotations

from typing import Any

from workers.domain import ResultRow, iso_utc
from workers.store.models import PostRow, VerdictRow
from workers.store.posts import PostView


def result_row(p: PostRow, v: VerdictRow | None) -> ResultRow | None:
    """The post's output row: its current verdict or its error; None while it is still queued
    or running. The post's own fields come from its row, the scores from the stored record."""
    if v is None and p.status not in ("failed", "quarantined"):
        return None
    scores = ResultRow.from_record(v.record or {}) if v is not None else ResultRow("", "error")
    ok = v is not None and bool(v.verdict)
    error = None
    if not ok:
        error = p.last_error or scores.error or {"type": p.status, "message": ""}
    return ResultRow(
        post_id=p.post_id or p.id,
        status="ok" if ok else "error",
        hashtag=p.hashtag,
        created_at=p.created_at,
        author=p.author,
        # The image the client named (a URL, or a path for `score --queue`), never a path
        # inside the media store: thumbnails are found by media_sha256.
        image=p.image_url,
        caption_text=p.caption or "",
        media_sha256=p.media_sha256,
        pipeline_version=p.pipeline_version,
        verdict=scores.verdict if ok else None,
        confidence=scores.confidence if ok else None,
        reasons=scores.reasons if ok else (),
        signals=scores.signals if ok else None,
        review=scores.review if ok else None,
        review_reason=scores.review_reason if ok else None,
        scenes=scores.scenes if ok else None,
        caption=scores.caption if ok else None,
        error=error,
        extra=scores.extra if ok else None,
    )


def post_resource(view: PostView, base_path: str = "/v1/posts") -> dict[str, Any]:
    """The post as clients see it (`PostOut` in service/schemas.py)."""
    p, v = view.post, view.verdict
    scores = ResultRow.from_record(v.record or {}) if v is not None else None
    return {
        "id": p.id,
        "post_id": p.post_id,
        "status": p.status,
        "hashtag": p.hashtag,
        "caption": p.caption,
        "author": p.author,
        "created_at": p.created_at,
        "accepted_at": iso_utc(p.accepted_at),
        "finished_at": iso_utc(p.finished_at),
        "attempts": p.attempts,
        "media_sha256": p.media_sha256,
        "image_url": p.image_url,
        "pipeline_version": p.pipeline_version,
        "verdict": scores.verdict if scores else None,
        "confidence": scores.confidence if scores else None,
        "reasons": list(scores.reasons) if scores and scores.verdict else None,
        "scenes": scores.scenes if scores else None,
        "detected_scenes": list(v.detected) if v is not None else None,
        "caption_scores": scores.caption if scores else None,
        "signals": scores.signals if scores else None,
        "review": scores.review if scores and scores.verdict else None,
        "review_reason": scores.review_reason if scores and scores.verdict else None,
        "error": p.last_error if p.status in ("failed", "quarantined") else None,
        "webhook": (
            {"status": p.webhook_status, "attempts": p.webhook_attempts}
            if p.callback_url
            else None
        ),
        "links": {"self": f"{base_path}/{p.id}"},
    }
