"""The post as clients see it: one JSON shape for `GET /v1/posts/{id}`, lists and webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workers.store.posts import PostView


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


def post_resource(view: PostView, base_path: str = "/v1/posts") -> dict[str, Any]:
    p, v = view.post, view.verdict
    rec: dict[str, Any] = v.record if v is not None else {}
    out: dict[str, Any] = {
        "id": p.id,
        "post_id": p.post_id,
        "status": p.status,
        "hashtag": p.hashtag,
        "caption": p.caption,
        "author": p.author,
        "created_at": p.created_at,
        "accepted_at": _iso(p.accepted_at),
        "finished_at": _iso(p.finished_at),
        "attempts": p.attempts,
        "media_sha256": p.media_sha256,
        "image_url": p.image_url,
        "pipeline_version": p.pipeline_version,
        "verdict": rec.get("verdict"),
        "confidence": rec.get("confidence"),
        "reasons": rec.get("reasons"),
        "scenes": rec.get("scenes"),
        "detected_scenes": list(v.detected) if v is not None else None,
        "caption_scores": rec.get("caption"),
        "signals": rec.get("signals"),
        "error": p.last_error if p.status in ("failed", "quarantined") else None,
        "webhook": (
            {"status": p.webhook_status, "attempts": p.webhook_attempts}
            if p.callback_url
            else None
        ),
        "links": {"self": f"{base_path}/{p.id}"},
    }
    return out
