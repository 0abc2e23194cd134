"""Liveness, readiness and Prometheus metrics.

/metrics shows post counts across every key, so it is not on the public router: it exists only
when `BACKFIRE_METRICS_TOKEN` is set (`metrics_router`, mounted by `create_app`), and answers
only to that token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.deps import Ctx, require_metrics_token
from service.problems import MEDIA_TYPE, problem

router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    # async: answered on the event loop, so it stays fast whatever the worker threads are
    # doing (a liveness probe must not fail because uploads are busy).
    return {"status": "ok"}


def _checks(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        ctx.db.ping()
        out["database"] = "ok"
    except Exception as e:
        out["database"] = f"error: {type(e).__name__}"
    try:
        ctx.redis.ping()
        out["redis"] = "ok"
    except Exception as e:
        out["redis"] = f"error: {type(e).__name__}"
    workers = 0
    if out["redis"] == "ok":
        try:
            workers = len(ctx.celery.control.ping(timeout=1.0) or [])
        except Exception:
            workers = 0
    out["workers"] = workers
    return out


@router.get(
    "/readyz",
    summary="Database, Redis and at least one worker answer",
    responses={503: {"description": "Not ready: the `checks` member says what is down"}},
)
async def readyz(ctx: Ctx) -> Response:
    checks = await run_in_threadpool(_checks, ctx)
    ready = checks["database"] == "ok" and checks["redis"] == "ok" and checks["workers"] > 0
    if ready:
        return JSONResponse({"status": "ready", **checks})
    down = [k for k in ("database", "redis") if checks[k] != "ok"]
    if checks["workers"] == 0:
        down.append("workers (none answered a ping)")
    body = problem(503, "not-ready", f"Not ready: {', '.join(down)}.", "/readyz", checks=checks)
    return JSONResponse(body, 503, headers={"Retry-After": "5"}, media_type=MEDIA_TYPE)


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics (needs the metrics token)",
    response_class=Response,
    include_in_schema=False,  # an operators' endpoint, not part of the clients' API
    dependencies=[Depends(require_metrics_token)],
)
async def metrics(ctx: Ctx) -> Response:
    from service.metrics import render

    body, ctype = await run_in_threadpool(render, ctx)
    return Response(body, media_type=ctype)
