"""Dependencies as `Annotated` aliases: routes say what they need, not how to get it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from service.context import ApiContext
from workers.store.keys import Principal


async def get_ctx(request: Request) -> ApiContext:
    # async: a plain attribute read, not worth a hop to the thread pool (sync dependencies
    # run there).
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


async def _api_key(
    authorization: Annotated[str | None, Header(description="`Bearer <API key>`")] = None,
    x_api_key: Annotated[str | None, Header(description="The API key (alternative).")] = None,
) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


async def get_principal(ctx: Ctx, key: Annotated[str | None, Depends(_api_key)]) -> Principal:
    """Authenticate (401/403), then count the request against the key's rate limit (429).
    Both on the event loop when the key's row is cached (`api_key_cache_s`); the database is
    read in a worker thread only when it is not."""
    principal = ctx.keys.cached(key)
    if principal is None:
        principal = await run_in_threadpool(ctx.keys.authenticate, key)
    await ctx.limiter.hit(principal.key_id)
    return principal


CurrentKey = Annotated[Principal, Depends(get_principal)]
