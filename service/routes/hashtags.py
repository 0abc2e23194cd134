"""/v1/hashtags/{tag}/summary and /report: how a campaign is going, as numbers and as a page."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from service.deps import Ctx, CurrentKey
from service.openapi import AUTH, problems
from service.schemas import NUL_FREE_PATTERN, HashtagSummary
from workers.domain import clean_hashtag
from workers.errors import NotFound
from workers.report import render_report
from workers.report.render import CSP
from workers.report.store_rows import store_rows
from workers.store import posts as repo

router = APIRouter(prefix="/v1/hashtags", tags=["hashtags"], responses=problems(*AUTH))

#: A hashtag in the path, as the store can look it up (a NUL would be PostgreSQL's 500).
Tag = Annotated[str, PathParam(max_length=200, pattern=NUL_FREE_PATTERN)]


@router.get("/{tag}/summary", response_model=HashtagSummary, summary="Counts for one hashtag")
def hashtag_summary(tag: Tag, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Posts per status, verdict and detected scene; backlash share; first/last post time."""
    return asdict(repo.summary(ctx.db, key.key_id, clean_hashtag(tag) or ""))


@router.get(
    "/{tag}/report",
    response_class=HTMLResponse,
    summary="The campaign report (one self-contained HTML page)",
    responses={
        200: {"content": {"text/html": {}}, "description": "The report page."},
        **problems(404, d404="No finished post of this key under the tag"),
    },
)
def hashtag_report(tag: Tag, ctx: Ctx, key: CurrentKey) -> HTMLResponse:
    """This key's finished posts under the hashtag: verdict shares, backlash over time, scenes,
    the posts driving it, reposted photos, failures. Thumbnails come from the media store; the
    page loads nothing from anywhere (the same policy is sent as a header as in its meta tag)."""
    tag = clean_hashtag(tag) or ""
    rows = list(store_rows(ctx.db, ctx.settings, tag, owner=key.key_id))
    if not rows:
        raise NotFound(f"No finished posts under #{tag} for this API key yet.")
    html = render_report(rows, settings=ctx.settings, blobs=ctx.blobs)
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        # The page shows one tenant's posts: no shared cache may keep it.
        "Cache-Control": "private, no-store",
    }
    return HTMLResponse(html, headers=headers)
