"""Lag, the watcher's first-class figure: from a post's `created_at` (and from when the watcher
first saw it) to its stored verdict. Kept as recent samples for the progress line and the
report, and as Prometheus metrics for dashboards (`--metrics-port`)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: Samples the percentiles are taken over: the most recent posts, not the whole run, so a
#: watcher falling behind shows it at once.
RECENT = 500
_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Lag:
    from_created: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    from_seen: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    #: p50 from created_at after each poll that scored something: the trend.
    history: deque[float] = field(default_factory=lambda: deque(maxlen=10))

    def add(self, created: float | None, seen: float) -> None:
        if created is not None:
            self.from_created.append(max(0.0, created))
        self.from_seen.append(max(0.0, seen))

    def figures(self) -> dict[str, float | None]:
        c, s = list(self.from_created), list(self.from_seen)
        return {
            "created_p50": percentile(c, 0.5), "created_p95": percentile(c, 0.95),
            "seen_p50": percentile(s, 0.5), "seen_p95": percentile(s, 0.95),
        }  # fmt: skip

    def growing(self) -> bool:
        """Lag rose at each of the last 4 polls that scored posts: the watcher is falling
        behind (the platform publishes faster than it scores)."""
        h = list(self.history)[-4:]
        return len(h) == 4 and all(b > a * 1.05 for a, b in zip(h, h[1:], strict=False))

    def close_poll(self) -> None:
        p50 = percentile(list(self.from_created)[-100:], 0.5)
        if p50 is not None:
            self.history.append(p50)


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


class Metrics:
    """Prometheus metrics of one watcher, on their own registry (served by `serve`)."""

    def __init__(self, platform: str, query: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = {"platform": platform, "query": query}
        names = list(labels)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, [*names, *extra], registry=self.registry)

        self.labels = labels
        self.posts = counter("backfire_watch_posts", "Posts stored, by outcome.", ("outcome",))
        self.polls = counter("backfire_watch_polls", "Polls of the platform.")
        self.poll_errors = counter("backfire_watch_poll_errors", "Polls given up after retries.")
        self.alerts = counter("backfire_watch_alerts", "Alert firings.", ("state",))
        self.lag = Histogram(
            "backfire_watch_lag_seconds", "Seconds from a post's created_at (since=created) or "
            "from when the watcher first saw it (since=seen) to its stored verdict.",
            [*names, "since"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.behind = Gauge(
            "backfire_watch_behind", "1 while the last poll stopped at --max-pages with more "
            "posts waiting.", names, registry=self.registry,
        )  # fmt: skip
        self.pending = Gauge(
            "backfire_watch_queue_depth", "Posts handed to the workers and not finished yet "
            "(--queue).", names, registry=self.registry,
        )  # fmt: skip
        self.last_poll = Gauge(
            "backfire_watch_last_poll_timestamp_seconds", "When the last poll ended.", names,
            registry=self.registry,
        )  # fmt: skip

    def observe(self, outcome: str, created: float | None, seen: float) -> None:
        self.posts.labels(**self.labels, outcome=outcome).inc()
        if created is not None:
            self.lag.labels(**self.labels, since="created").observe(max(0.0, created))
        self.lag.labels(**self.labels, since="seen").observe(max(0.0, seen))

    def polled(self, behind: bool, error: bool = False) -> None:
        self.polls.labels(**self.labels).inc()
        if error:
            self.poll_errors.labels(**self.labels).inc()
        self.behind.labels(**self.labels).set(1 if behind else 0)
        self.last_poll.labels(**self.labels).set(time.time())

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
