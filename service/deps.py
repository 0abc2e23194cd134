"""Dependencies as `Annotated` aliases: routes say what they need, not how to get it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.context import ApiContext
from service.ratelimit import AuthFailureLimiter
from workers.errors import NotFound, Unauthenticated
from workers.store.keys import Principal


async def get_ctx(request: Request) -> ApiContext:
    # async: a plain attribute read, not worth a hop to the thread pool (sync dependencies
    # run there).
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]

# Declared as security schemes (not plain headers) so the OpenAPI document says how to
# authenticate and contract tests can check that every operation refuses a request without.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="bearerAuth", description="`Authorization: Bearer <API key>`"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader",
    description="The API key in `X-API-Key` (alternative to the bearer header).",
)  # fmt: skip


async def _api_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Depends(_api_key_header)],
) -> str | None:
    if bearer is not None:
        return bearer.credentials.strip()
    return x_api_key


def client_address(request: Request) -> str:
    return AuthFailureLimiter.client_of(request.client.host if request.client else None)


async def get_principal(
    request: Request, ctx: Ctx, key: Annotated[str | None, Depends(_api_key)]
) -> Principal:
    """Authenticate (401/403), then count the request against the key's rate limit (429).
    Both on the event loop when the key's row is cached (`api_key_cache_s`); the database is
    read in a worker thread only when it is not. An address past its refused-key limit is
    answered 429 before any of that; a request with no key at all costs nothing to refuse and
    is not counted."""
    address = client_address(request)
    ctx.auth_failures.check(address)
    try:
        principal = ctx.keys.cached(key)
        if principal is None:
            principal = await run_in_threadpool(ctx.keys.authenticate, key)
    except Unauthenticated:
        if key:
            await ctx.auth_failures.failed(address)
        raise
    await ctx.limiter.hit(principal.key_id)
    return principal


CurrentKey = Annotated[Principal, Depends(get_principal)]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_metrics_token(request: Request, ctx: Ctx, bearer: Bearer) -> None:
    """GET /metrics: only with `Authorization: Bearer <BACKFIRE_METRICS_TOKEN>`, compared in
    constant time; refusals count as failed authentications of the address."""
    token = ctx.settings.metrics_token
    if not token:  # the route is not mounted then; this is a second lock on the same door
        raise NotFound("Not found.")
    address = client_address(request)
    ctx.auth_failures.check(address)
    given = bearer.credentials.strip() if bearer is not None else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        if given:
            await ctx.auth_failures.failed(address)
        raise Unauthenticated("The metrics need `Authorization: Bearer <metrics token>`.")
