"""/v1/posts: upload (multipart file or JSON image URL), status and verdict, listing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from service.deps import Ctx, CurrentKey
from service.openapi import AUTH, problems
from service.schemas import (
    CURSOR_PATTERN,
    NUL_FREE_PATTERN,
    DateTimeText,
    PostAccepted,
    PostFields,
    PostFromUrl,
    PostOut,
    PostPage,
    Status,
    VerdictName,
)
from workers.domain import clamp_utc, clean_hashtag, parse_rfc3339
from workers.errors import InvalidRequest, UnsupportedMediaType
from workers.store import posts as repo
from workers.store.views import post_resource

router = APIRouter(prefix="/v1/posts", tags=["posts"], responses=problems(*AUTH))

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "additionalProperties": False,  # other fields are refused (422)
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
    responses=problems(400, 413, 415, 422, 507),
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a post (photo + caption) for scoring",
)
async def create_post(
    request: Request,
    ctx: Ctx,
    key: CurrentKey,
    # Not empty: an empty key would be stored yet never looked up (the second one a 500).
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
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
    if data is None:
        assert image_url is not None  # no upload, so the JSON body named the image
        # A re-sent post never downloads again. The download runs on its own pool, never in
        # the worker threads every other request needs (service/downloads.py).
        if new.post_id or new.idempotency_key:
            existing = await run_in_threadpool(repo.find_existing, ctx.db, new)
            if existing is not None:
                return _accepted(existing, duplicate=True)
        data = await ctx.downloads.fetch(key.key_id, image_url)
    # Everything after the bytes are in hand happens in one worker-thread hop (each hop costs
    # a context switch and a wake-up of the event loop): the one ingest path of the queue side.
    row, created = await run_in_threadpool(ctx.ingest.accept, new, data)
    return _accepted(row, duplicate=not created)


def _accepted(row: Any, duplicate: bool) -> PostAccepted:
    return PostAccepted(
        id=row.id,
        post_id=row.post_id,
        status=row.status,
        status_url=f"/v1/posts/{row.id}",
        duplicate=duplicate,
    )


@router.get(
    "/{id}",
    response_model=PostOut,
    responses=problems(404, d404="No such post for this API key"),
    summary="A post and its verdict",
)
def get_post(id: str, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Status (queued, running, done, failed, quarantined) and, when done, the verdict."""
    return post_resource(repo.get_post(ctx.db, key.key_id, id))


def _cursor(seq: int) -> str:
    # A form a pattern can describe (CURSOR_PATTERN): the OpenAPI document then refuses what
    # the API refuses, and every cursor that matches it is one the API can page from.
    return f"p{seq}"


#: Sequence numbers are 32-bit in the store (PostgreSQL `integer`): a cursor beyond the last
#: possible one is an empty page, not an out-of-range query.
_MAX_SEQ = 2**31 - 1


def _seq(cursor: str | None) -> int:
    return min(int(cursor[1:]), _MAX_SEQ) if cursor else 0


@router.get("", response_model=PostPage, summary="List posts, oldest first")
def list_posts(
    ctx: Ctx,
    key: CurrentKey,
    hashtag: Annotated[str | None, Query(max_length=200, pattern=NUL_FREE_PATTERN)] = None,
    verdict: Annotated[VerdictName | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
    since: Annotated[
        DateTimeText | None, Query(description="Posts published at/after (RFC 3339).")
    ] = None,
    review: Annotated[
        bool | None, Query(description="Only verdicts flagged (true) or not (false) for review.")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(description="`next_cursor` of the previous page.", pattern=CURSOR_PATTERN),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    views = repo.list_posts(
        ctx.db, key.key_id, hashtag=clean_hashtag(hashtag), verdict=verdict,
        status=status, since=clamp_utc(parse_rfc3339(since)) if since else None, review=review,
        after_seq=_seq(cursor), limit=limit + 1,
    )  # fmt: skip
    more = len(views) > limit
    views = views[:limit]
    return {
        "items": [post_resource(v) for v in views],
        "next_cursor": _cursor(views[-1].post.seq) if more and views else None,
    }
