"""/v1/hashtags/{tag}/summary: how a campaign is going."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from service.deps import Ctx, CurrentKey
from service.schemas import HashtagSummary
from workers.store import posts as repo

router = APIRouter(prefix="/v1/hashtags", tags=["hashtags"])


@router.get("/{tag}/summary", response_model=HashtagSummary, summary="Counts for one hashtag")
def hashtag_summary(tag: str, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Posts per status, verdict and detected scene; backlash share; first/last post time."""
    return asdict(repo.summary(ctx.db, key.key_id, tag.lstrip("#")))
