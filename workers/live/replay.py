"""`backfire replay EXPORT`: when would the watcher have warned?

The export's posts are put in `created_at` order and scored by the same runner and pipeline as
`backfire score`; each verdict "arrives" at its post's own time (the simulated clock), and the
alert rules are evaluated on those arrivals exactly as the watcher evaluates them (the same
`_evaluate_rule`: rolling window, `min_posts`, once per crossing, re-armed below the line). Rules
are evaluated in memory: a replay never fires, stores or sends anything. With `speed`, the
clock runs `speed` times faster than the posts' own (a demo); without, as fast as the model.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.domain import Post, ResultRow, format_duration, iso_utc, parse_time
from workers.notify.rules import AlertRule, _evaluate_rule
from workers.sources import ReadProblem, open_reader

if TYPE_CHECKING:
    from workers.config import Settings
    from workers.scoring.pipeline import Pipeline


@dataclass
class Crossing:
    rule: AlertRule
    at: datetime
    payload: dict[str, Any]


@dataclass
class ReplayResult:
    posts: int = 0
    ok: int = 0
    undated: int = 0
    problems: int = 0
    first_post: datetime | None = None
    last_post: datetime | None = None
    seconds: float = 0.0
    crossings: list[Crossing] = field(default_factory=list)
    rows: list[ResultRow] = field(default_factory=list)

    def offset(self, t: datetime) -> str:
        """'+2h12' after the first post."""
        if self.first_post is None:
            return ""
        s = int((t - self.first_post).total_seconds())
        return f"+{s // 3600}h{(s % 3600) // 60:02d}" if s >= 3600 else f"+{s // 60}m{s % 60:02d}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts, "scored": self.ok, "undated": self.undated,
            "unreadable": self.problems, "first_post": iso_utc(self.first_post),
            "last_post": iso_utc(self.last_post), "seconds": round(self.seconds, 3),
            "posts_per_s": round(self.posts / self.seconds, 2) if self.seconds else None,
            "crossings": [
                {"rule": c.rule.model_dump(exclude={"deliveries"}), "at": iso_utc(c.at),
                 "after_first_post": self.offset(c.at), "share": c.payload["share"],
                 "posts": c.payload["posts"], "message": c.payload["text"],
                 "top_posts": c.payload["top_posts"]}
                for c in self.crossings
            ],
        }  # fmt: skip


def replay_rule(
    hashtag: str, threshold: float, window_s: int, min_posts: int, rule_id: str = "replay"
) -> AlertRule:
    return AlertRule(
        id=rule_id, hashtag=hashtag, threshold=threshold, window_s=window_s,
        min_posts=min_posts, webhook="", created_at=iso_utc(datetime.now(UTC)) or "",
    )  # fmt: skip


def timed_posts(path: Path, fmt: str, hashtag: str | None, result: ReplayResult) -> list[Post]:
    """The export's posts in created_at order; undated posts cannot be placed on the clock."""
    dated: list[tuple[datetime, int, Post]] = []
    for i, rec in enumerate(open_reader(path, fmt, hashtag)):
        if isinstance(rec, ReadProblem):
            result.problems += 1
            continue
        t = parse_time(rec.created_at)
        if t is None:
            result.undated += 1
            continue
        dated.append((t, i, rec))
    dated.sort(key=lambda x: (x[0], x[1]))
    if dated:
        result.first_post, result.last_post = dated[0][0], dated[-1][0]
    return [p for _, _, p in dated]


class _Clock:
    """The alert rules on the simulated clock: each row counts at its post's time."""

    def __init__(self, rules: list[AlertRule], on_cross: Callable[[Crossing], None]) -> None:
        self.rules = rules
        self.on_cross = on_cross
        self.times: list[float] = []
        self.rows: list[tuple[datetime, ResultRow]] = []
        self.crossings: list[Crossing] = []

    def add(self, t: datetime, row: ResultRow) -> None:
        self.times.append(t.timestamp())
        self.rows.append((t, row))

    def evaluate(self, since: datetime, final: bool = False) -> bool:
        """Evaluate the rows from one window before `since` (what the new rows can move).
        Rows at the newest instant wait for a later one (or the end): a rule never looks at
        an instant again once evaluated, and more posts of that same instant may follow.
        Returns False when everything pending had to wait."""
        end = len(self.rows) if final else bisect.bisect_left(self.times, self.times[-1])
        if end == 0:
            return False
        for rule in self.rules:
            done = parse_time(rule.evaluated_until) or since
            start = min(done, since).timestamp() - rule.window_s
            i = bisect.bisect_left(self.times, start)
            for payload in _evaluate_rule(rule, self.rows[i:end]):
                c = Crossing(rule.model_copy(), parse_time(payload["window_end"]) or since, payload)
                self.crossings.append(c)
                self.on_cross(c)
        return True


def replay(
    settings: Settings,
    path: Path,
    rules: list[AlertRule],
    *,
    fmt: str = "auto",
    hashtag: str | None = None,
    speed: float | None = None,
    pipeline: Pipeline | None = None,
    on_cross: Callable[[Crossing], None] | None = None,
    write: Callable[[dict[str, Any]], None] | None = None,
    keep_rows: bool = False,
) -> ReplayResult:
    from workers.media.fetcher import FetcherConfig, MediaFetcher
    from workers.net.guard import FetchPolicy
    from workers.scoring.pipeline import Pipeline
    from workers.scoring.runner import Runner

    result = ReplayResult()
    posts = timed_posts(path, fmt, hashtag, result)
    pipeline = pipeline or Pipeline.from_settings(settings)
    policy = FetchPolicy.from_settings(settings)
    clock = _Clock(rules, on_cross or (lambda c: None))
    pending: list[datetime] = []
    started = time.perf_counter()
    wall0 = time.monotonic()

    def arrive(rec: dict[str, Any]) -> None:
        row = ResultRow.from_record(rec)
        t = parse_time(row.created_at)
        assert t is not None and result.first_post is not None  # only dated posts are replayed
        if speed:  # the demo clock: wait until this post's moment, `speed` times faster
            due = wall0 + (t - result.first_post).total_seconds() / speed
            time.sleep(max(0.0, due - time.monotonic()))
        result.posts += 1
        if write is not None:
            write(rec)
        if keep_rows:
            result.rows.append(row)
        if row.ok:
            result.ok += 1
            clock.add(t, row.slim())
            pending.append(t)
            if speed:
                flush()

    def flush(_stats: Any = None, final: bool = False) -> None:
        if pending and clock.evaluate(min(pending), final):
            latest = clock.times[-1]
            # What waits (the newest instant) stays pending for the next evaluation.
            pending[:] = [t for t in pending if not final and t.timestamp() >= latest]

    with MediaFetcher(policy, FetcherConfig.from_settings(settings)) as fetcher:
        runner = Runner(
            pipeline, policy, settings.loader_threads, fetcher=fetcher, on_progress=flush,
            fetch_ahead=settings.fetch_ahead,
        )  # fmt: skip
        runner.run(posts, arrive)
    flush(final=True)
    result.seconds = time.perf_counter() - started
    result.crossings = clock.crossings
    return result


def describe(result: ReplayResult, rules: list[AlertRule]) -> list[str]:
    """The timeline as a person reads it."""
    lines = []
    if result.first_post is None:
        return ["No dated post in the export: nothing to replay."]
    span = int((result.last_post - result.first_post).total_seconds()) if result.last_post else 0
    rate = result.posts / result.seconds if result.seconds else 0.0
    lines.append(
        f"Replayed {result.posts:,} posts ({result.ok:,} scored) from "
        f"{_t(result.first_post)} to {_t(result.last_post)} "
        f"({format_duration(max(span, 1))} of posts) in {result.seconds:.1f} s ({rate:.1f} posts/s)"
        + (f"; {result.undated} undated posts left out" if result.undated else "")
    )
    for rule in rules:
        mine = [c for c in result.crossings if c.rule.id == rule.id]
        what = (
            f"backlash ≥ {rule.threshold:.0%} over {format_duration(rule.window_s)} "
            f"(≥ {rule.min_posts} posts)"
        )
        if not mine:
            lines.append(f"Rule {what}: would not have warned.")
            continue
        first = mine[0]
        lines.append(
            f"Rule {what}: would have warned at {_t(first.at)} ({result.offset(first.at)} after "
            f"the first post): {first.payload['share']:.0%} of the {first.payload['posts']} posts "
            f"in the last {first.payload['window']} were backlash"
            + (f"; {len(mine) - 1} more crossings later" if len(mine) > 1 else "")
        )
        lines.append("Alert message:")
        lines += [f"  {x}" for x in first.payload["text"].splitlines()]
        lines.append("Posts that drove it:")
        for p in first.payload["top_posts"]:
            lines.append(
                f"  {p['created_at']}  {p['post_id']}  ({(p['confidence'] or 0):.2f}) "
                f"{(p['caption'] or '')[:100]}"
            )
    return lines


def _t(dt: datetime | None) -> str:
    return dt.strftime("%-d %b %Y %H:%M:%S UTC") if dt else "–"
