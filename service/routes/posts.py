"""/v1/posts: upload (multipart file or JSON image URL), status and verdict, listing."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from service.deps import Ctx, CurrentKey
from service.schemas import (
    PostAccepted,
    PostFields,
    PostFromUrl,
    PostOut,
    PostPage,
    Problem,
    Status,
    VerdictName,
)
from workers.domain import clean_hashtag
from workers.errors import InvalidRequest, UnsupportedMediaType
from workers.net.fetch import fetch_url
from workers.store import posts as repo
from workers.store.views import post_resource

router = APIRouter(prefix="/v1/posts", tags=["posts"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": desc}
    for code, desc in {
        401: "No or bad API key", 403: "Revoked API key", 413: "Body over the cap",
        415: "Not an accepted image format", 422: "Undecodable image or invalid fields",
        429: "Rate limit", 503: "Database unavailable",
    }.items()
}  # fmt: skip

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        **PostFields.model_json_schema()["properties"],
                    },
                }
            },
            "application/json": {"schema": PostFromUrl.model_json_schema()},
        },
    }
}


def _invalid(e: ValidationError) -> InvalidRequest:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return InvalidRequest(f"The request is not valid: {where}: {err.get('msg')}.")


async def _read_multipart(request: Request) -> tuple[PostFields, bytes]:
    form = await request.form(max_files=1, max_fields=20)
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("A multipart upload needs the photo in a file part named `image`.")
        fields = {k: v for k, v in form.multi_items() if k != "image" and isinstance(v, str)}
        try:
            meta = PostFields.model_validate(fields)
        except ValidationError as e:
            raise _invalid(e) from None
        return meta, await upload.read()
    finally:
        await form.close()


async def _read_json(request: Request) -> PostFromUrl:
    try:
        return PostFromUrl.model_validate_json(await request.body())
    except ValidationError as e:
        raise _invalid(e) from None


@router.post(
    "",
    status_code=202,
    response_model=PostAccepted,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a post (photo + caption) for scoring",
)
async def create_post(
    request: Request,
    ctx: Ctx,
    key: CurrentKey,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> PostAccepted:
    """Multipart (`image` file + fields) or JSON with `image_url`. Answers 202 once the image is
    in the media store and the post is committed; the verdict follows at `status_url`.
    Re-sending the same `post_id` or `Idempotency-Key` returns the existing post."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: bytes | None = None
    image_url: str | None = None
    meta: PostFields
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        meta, data = await _read_multipart(request)
    elif ctype == "application/json":
        meta = await _read_json(request)
        image_url = meta.image_url
    else:
        raise UnsupportedMediaType(
            "Send multipart/form-data (an `image` file) or application/json (an `image_url`)."
        )
    new = repo.NewPost(
        owner=key.key_id, media_sha256="", post_id=meta.post_id, idempotency_key=idempotency_key,
        caption=meta.caption, hashtag=meta.hashtag, created_at=meta.created_at,
        author=meta.author, image_url=image_url, callback_url=meta.callback_url,
    )  # fmt: skip
    # Everything after the body is read happens in one worker-thread hop (each hop costs a
    # context switch and a wake-up of the event loop): the one ingest path of the queue side.
    def download() -> bytes:  # only for a new post: a re-sent one never downloads again
        assert image_url is not None  # no upload, so the JSON body named the image
        return fetch_url(image_url, ctx.fetch_policy).data

    media = data if data is not None else download
    row, created = await run_in_threadpool(ctx.ingest.accept, new, media)
    return _accepted(row, duplicate=not created)


def _accepted(row: Any, duplicate: bool) -> PostAccepted:
    return PostAccepted(
        id=row.id,
        post_id=row.post_id,
        status=row.status,
        status_url=f"/v1/posts/{row.id}",
        duplicate=duplicate,
    )


@router.get("/{id}", response_model=PostOut, responses=_ERRORS, summary="A post and its verdict")
def get_post(id: str, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Status (queued, running, done, failed, quarantined) and, when done, the verdict."""
    return post_resource(repo.get_post(ctx.db, key.key_id, id))


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def _seq(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith("s"):
            return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidRequest("The cursor is not one this API returned.")


@router.get("", response_model=PostPage, responses=_ERRORS, summary="List posts, oldest first")
def list_posts(
    ctx: Ctx,
    key: CurrentKey,
    hashtag: Annotated[str | None, Query(max_length=200)] = None,
    verdict: Annotated[VerdictName | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="Posts published at/after.")] = None,
    review: Annotated[
        bool | None, Query(description="Only verdicts flagged (true) or not (false) for review.")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        from datetime import UTC

        since = since.replace(tzinfo=UTC)
    views = repo.list_posts(
        ctx.db, key.key_id, hashtag=clean_hashtag(hashtag), verdict=verdict,
        status=status, since=since, review=review, after_seq=_seq(cursor), limit=limit + 1,
    )  # fmt: skip
    more = len(views) > limit
    views = views[:limit]
    return {
        "items": [post_resource(v) for v in views],
        "next_cursor": _cursor(views[-1].post.seq) if more and views else None,
    }
