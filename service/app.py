"""The FastAPI application: `create_app(settings)`; `uvicorn service.app:app` for the default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import openapi, problems
from service.context import ApiContext
from service.limits import BodyLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.routes import alerts, hashtags, health, labels, posts
from workers.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = ApiContext.from_settings(settings)
        ctx.metrics = metrics  # type: ignore[attr-defined]
        metrics.attach_store(ctx)
        app.state.ctx = ctx
        try:
            yield
        finally:
            await ctx.aclose()

    app = FastAPI(
        title="Backfire API",
        version="1",
        summary="Upload the photos posted under a hashtag; get backlash verdicts back.",
        lifespan=lifespan,
    )
    problems.install(app)
    openapi.install(app)
    app.include_router(posts.router)
    app.include_router(labels.router)
    app.include_router(hashtags.router)
    app.include_router(alerts.router)
    app.include_router(health.router)
    if settings.metrics_token:
        app.include_router(health.metrics_router)
    # Outermost first: the body cap applies before anything reads the body.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.app:app` builds the app on first access, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
