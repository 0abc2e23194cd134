"""The one translation of errors into HTTP answers: RFC 9457 problem details
(`application/problem+json`) with a specific `type` per error and a sentence for a person."""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from workers.errors import BackfireError, RateLimited, StorageFull, Unauthenticated, Unavailable
from workers.store.blobs import NO_SPACE

log = logging.getLogger("backfire.api")

PROBLEM_BASE = "https://backfire.dev/problems/"
MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 413: "Content too large", 415: "Unsupported media type",
    422: "Unprocessable content", 429: "Too many requests", 499: "Client closed request",
    500: "Internal server error", 503: "Service unavailable", 507: "Insufficient storage",
}  # fmt: skip
#: Not a server fault, so shown as they are (other 5xx become a logged, generic 500), and
#: each says when to try again (Retry-After).
_RETRY_LATER = (RateLimited, Unavailable, StorageFull)
#: What the metrics and logs record for a request whose client went away before the answer
#: (nginx's convention); nothing is sent.
CLIENT_CLOSED = 499


def problem(
    status: int, code: str, detail: str, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def error_headers(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, _RETRY_LATER):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def problem_response(exc: BackfireError, instance: str | None = None) -> JSONResponse:
    status = exc.http_status
    if isinstance(exc, StorageFull):
        log.error("storage full, answered 507 on %s: %s", instance, exc.message)
    if status >= 500 and not isinstance(exc, _RETRY_LATER):
        log.error("internal error: %s", exc.message)
        detail = "Something went wrong on our side; the error was logged."
        return JSONResponse(problem(500, "internal", detail, instance), 500, media_type=MEDIA_TYPE)
    return JSONResponse(
        problem(status, exc.code, exc.message, instance),
        status_code=status,
        headers=error_headers(exc),
        media_type=MEDIA_TYPE,
    )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(BackfireError)
    async def _backfire(request: Request, exc: BackfireError) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        detail = f"The request is not valid: {where or 'body'}: {first['msg']}."
        return JSONResponse(
            problem(422, "invalid-request", detail, request.url.path, errors=errors),
            422,
            media_type=MEDIA_TYPE,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; each method is
            # its own route here, so `Allow` must gather them all.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(
            problem(exc.status_code, code, str(exc.detail), request.url.path),
            exc.status_code,
            headers=headers or None,
            media_type=MEDIA_TYPE,
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem_response(
            Unavailable("The database does not answer; try again shortly.", 5), request.url.path
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client closed the connection while sending its body: nothing was stored, nobody
        # is left to answer, and it is not a server error. The status is only for the metrics.
        log.warning("client disconnected mid-request: %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> Response:
        # Handled here (not by the catch-all below, which runs outside the app and makes the
        # server drop the connection): a full disk is the client's 507 to retry later.
        if exc.errno in NO_SPACE:
            ctx = getattr(request.app.state, "ctx", None)
            retry = ctx.settings.storage_full_retry_after_s if ctx is not None else 30
            full = StorageFull(
                f"The server's disk is full ({os.strerror(exc.errno or 0)}): nothing was "
                "stored; send the same request again later.",
                retry,
            )
            return problem_response(full, request.url.path)
        log.exception("unhandled error on %s", request.url.path)
        detail = "Something went wrong on our side; the error was logged."
        return JSONResponse(
            problem(500, "internal", detail, request.url.path), 500, media_type=MEDIA_TYPE
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        detail = "Something went wrong on our side; the error was logged."
        return JSONResponse(
            problem(500, "internal", detail, request.url.path), 500, media_type=MEDIA_TYPE
        )
