"""Prometheus metrics: request counts and latencies (measured here), and queue depth, posts by
status and scoring time (read from Redis and the database at scrape time, so every API process
reports the same truth without a shared metrics store)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.store import posts as repo
from workers.store.models import STATUSES

#: kombu's Redis transport keeps one list per priority step besides the plain queue name.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class StoreCollector:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def collect(self) -> Any:
        s = self.ctx.settings
        depth = GaugeMetricFamily("backfire_queue_depth", "Messages waiting in the score queue.")
        try:
            keys = [f"{s.redis_key_prefix}:{s.queue_name}{x}" for x in _PRIORITY_SUFFIXES]
            pipe = self.ctx.redis.pipeline()
            for k in keys:
                pipe.llen(k)
            depth.add_metric([], float(sum(pipe.execute())))
        except Exception:
            depth.add_metric([], float("nan"))
        yield depth
        posts = GaugeMetricFamily("backfire_posts", "Posts by status.", labels=["status"])
        counts = repo.status_counts(self.ctx.db)
        for status in STATUSES:
            posts.add_metric([status], float(counts.get(status, 0)))
        yield posts
        n, total = repo.scoring_totals(self.ctx.db)
        yield SummaryMetricFamily(
            "backfire_scoring_seconds", "Time workers spent scoring a post (verdict rows).",
            count_value=n, sum_value=total,
        )  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "backfire_http_requests", "HTTP requests.", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "backfire_http_request_seconds", "HTTP request latency.", ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )  # fmt: skip

    def attach_store(self, ctx: Any) -> None:
        self.registry.register(StoreCollector(ctx))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # Route templates, not raw paths: ids must not explode label cardinality.
            name = getattr(route, "path", None) or "unmatched"
            m = scope["method"]
            self.metrics.requests.labels(m, name, str(status)).inc()
            self.metrics.latency.labels(m, name).observe(time.perf_counter() - start)


def render(ctx: Any) -> tuple[bytes, str]:
    return generate_latest(ctx.metrics.registry), CONTENT_TYPE_LATEST
