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
from workers.queue.app import READY_COMMAND

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
    # A worker counts once one of its processes holds a loaded model: a worker that answers
    # but cannot load its model must not make the service look ready (it refuses work).
    workers = answered = 0
    if out["redis"] == "ok":
        try:
            replies = ctx.celery.control.broadcast(READY_COMMAND, reply=True, timeout=1.0)
        except Exception:
            replies = []
        for reply in replies or []:
            for body in reply.values():
                answered += 1
                workers += isinstance(body, dict) and body.get("models_loaded", 0) > 0
    out["workers"] = workers
    out["workers_without_model"] = answered - workers
    return out


@router.get(
    "/readyz",
    summary="Database, Redis and at least one worker with its model answer",
    responses={503: {"description": "Not ready: the `checks` member says what is down"}},
)
async def readyz(ctx: Ctx) -> Response:
    checks = await run_in_threadpool(_checks, ctx)
    ready = checks["database"] == "ok" and checks["redis"] == "ok" and checks["workers"] > 0
    if ready:
        return JSONResponse({"status": "ready", **checks})
    down = [k for k in ("database", "redis") if checks[k] != "ok"]
    if checks["workers"] == 0:
        starting = checks["workers_without_model"]
        down.append(
            f"workers ({starting} answered, none has its model loaded yet or could load it)"
            if starting
            else "workers (none answered)"
        )
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
