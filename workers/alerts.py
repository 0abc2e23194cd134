"""Early warning: a rolling-window backlash share per hashtag, and a webhook when it crosses.

A rule (`backfire alert add --hashtag myNYPD --backlash-share 0.3 --window 30m --min-posts 20
--webhook URL`) watches the posts of one hashtag in time order. At each post, the window is the
posts created in the `window` before it; when that window holds at least `min_posts` scored posts
and the backlash share reaches the threshold, the rule fires ONCE and disarms. It re-arms when
the share falls back below the threshold, so a campaign that recovers and relapses alerts again.

Rules and their armed/fired state live in a small JSON file (`data_dir/alerts.json`), written
atomically under a file lock: the SQL store (issue 3) was not committed when this was written.
Each rule remembers the last post time it evaluated, so re-reading the same rows (a `--resume`,
a re-run) never fires twice for the same crossing.

The webhook body is Slack-compatible (`text`) plus structured fields (share, window, top posts).
The URL passes the SSRF checks when the rule is added and again before every attempt, and the
POST goes to the vetted address itself (no second DNS lookup). Failed attempts are retried with
exponential backoff, then the delivery is recorded as failed on the rule.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from workers.config import Settings
from workers.errors import BackfireError, UsageError
from workers.media import http_post
from workers.media.fetch import FetchPolicy, check_url
from workers.media.http_post import PostOutcome

MAX_DELIVERIES_KEPT = 20
TOP_POSTS = 3
_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> int:
    """'30m', '2h', '1d', '90s' or plain seconds → seconds."""
    m = _WINDOW_RE.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"Cannot read the window {text!r}; write it like 30m, 2h, 1d or 90s.")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_window(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def norm_tag(tag: str | None) -> str:
    return (tag or "").strip().lstrip("#").lower()


class Delivery(BaseModel):
    at: str
    ok: bool
    attempts: int
    share: float
    posts: int
    status: int | None = None
    error: str | None = None


class AlertRule(BaseModel):
    id: str
    hashtag: str
    threshold: float = Field(gt=0, le=1)
    window_s: int = Field(gt=0)
    min_posts: int = Field(ge=1)
    webhook: str
    created_at: str
    armed: bool = True
    fired: int = 0
    #: Newest post time evaluated (ISO): posts at or before it never fire this rule again.
    evaluated_until: str | None = None
    deliveries: list[Delivery] = Field(default_factory=list)


@dataclass
class Firing:
    rule: AlertRule
    payload: dict[str, Any]


# --- the rule file ----------------------------------------------------------------------------
class RuleStore:
    """Rules in `data_dir/alerts.json`; every change is a locked read-modify-write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleStore:
        return cls(settings.data_dir / "alerts.json")

    def load(self) -> list[AlertRule]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"The alert rules file {self.path} cannot be read ({e}).") from e
        return [AlertRule.model_validate(r) for r in data.get("rules", [])]

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[AlertRule]]:
        """Yield the rules under an exclusive lock; what the block leaves is saved atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rules = self.load()
            yield rules
            self._save(rules)

    def _save(self, rules: list[AlertRule]) -> None:
        body = json.dumps({"rules": [r.model_dump() for r in rules]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".alerts-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def add_rule(
    settings: Settings,
    *,
    hashtag: str,
    threshold: float,
    window: str,
    min_posts: int,
    webhook: str,
) -> AlertRule:
    if not 0 < threshold <= 1:
        raise UsageError("--backlash-share is a share between 0 and 1, e.g. 0.3 for 30 %.")
    if min_posts < 1:
        raise UsageError("--min-posts must be at least 1.")
    tag = hashtag.strip().lstrip("#")  # shown as given; matched case-insensitively
    if not tag:
        raise UsageError("--hashtag is empty.")
    check_url(webhook, FetchPolicy.from_settings(settings))  # SSRF: refuse before storing
    rule = AlertRule(
        id=secrets.token_hex(4), hashtag=tag, threshold=threshold, window_s=parse_window(window),
        min_posts=min_posts, webhook=webhook, created_at=_iso(datetime.now(UTC)),
    )  # fmt: skip
    with RuleStore.from_settings(settings).edit() as rules:
        rules.append(rule)
    return rule


def remove_rule(settings: Settings, rule_id: str) -> bool:
    with RuleStore.from_settings(settings).edit() as rules:
        keep = [r for r in rules if r.id != rule_id]
        gone = len(keep) != len(rules)
        rules[:] = keep
    return gone


# --- evaluation ---------------------------------------------------------------------------------
def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(row: dict[str, Any], now: datetime) -> datetime:
    from workers.report.data import parse_time

    return parse_time(row.get("created_at")) or now


def _evaluate_rule(
    rule: AlertRule, rows: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Walk the rule's posts in time order; update its state; return the payloads it fires."""
    mine = sorted(
        (
            (_time(r, now), r)
            for r in rows
            if norm_tag(r.get("hashtag")) == norm_tag(rule.hashtag)
            and r.get("status", "ok") == "ok"
            and r.get("verdict")
        ),
        key=lambda tr: tr[0],
    )
    if not mine:
        return []
    done = _time({"created_at": rule.evaluated_until}, datetime.min.replace(tzinfo=UTC))
    span = timedelta(seconds=rule.window_s)
    window: deque[tuple[datetime, dict[str, Any]]] = deque()
    backlash = 0
    fired: list[dict[str, Any]] = []
    for t, r in mine:
        window.append((t, r))
        backlash += r["verdict"] == "backlash"
        while window and window[0][0] <= t - span:
            backlash -= window.popleft()[1]["verdict"] == "backlash"
        if rule.evaluated_until is not None and t <= done:
            continue  # seen by an earlier evaluation: it only fills the window
        share = backlash / len(window)
        if rule.armed and len(window) >= rule.min_posts and share >= rule.threshold:
            rule.armed = False
            rule.fired += 1
            fired.append(_payload(rule, [w for _, w in window], share, backlash, t - span, t))
        elif not rule.armed and share < rule.threshold:
            rule.armed = True
    rule.evaluated_until = _iso(max(mine[-1][0], done))
    return fired


def _payload(
    rule: AlertRule,
    window: list[dict[str, Any]],
    share: float,
    backlash: int,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    top = sorted(
        (r for r in window if r["verdict"] == "backlash"),
        key=lambda r: -float(r.get("confidence") or 0),
    )[:TOP_POSTS]
    top_posts = [
        {
            "post_id": r.get("post_id"),
            "created_at": r.get("created_at"),
            "author": r.get("author"),
            "caption": r.get("caption_text"),
            "confidence": r.get("confidence"),
            "reasons": r.get("reasons") or [],
            "image": r.get("image"),
        }
        for r in top
    ]
    win = format_window(rule.window_s)
    lines = [
        f":rotating_light: Backlash alert for #{rule.hashtag}: {share:.0%} of the {len(window)} "
        f"posts in the last {win} are backlash (threshold {rule.threshold:.0%})."
    ]
    lines += [
        f"• {p['post_id']} ({float(p['confidence'] or 0):.2f}): {(p['caption'] or '')[:140]}"
        for p in top_posts
    ]
    return {
        "text": "\n".join(lines),
        "event": "backlash.threshold_crossed",
        "rule_id": rule.id,
        "hashtag": rule.hashtag,
        "share": round(share, 4),
        "threshold": rule.threshold,
        "window": win,
        "window_seconds": rule.window_s,
        "window_start": _iso(start),
        "window_end": _iso(end),
        "posts": len(window),
        "backlash_posts": backlash,
        "min_posts": rule.min_posts,
        "top_posts": top_posts,
    }


Sender = Callable[[str, dict[str, Any]], "DeliveryResult"]


def evaluate_rows(
    settings: Settings,
    rows: Iterable[dict[str, Any]],
    *,
    now: datetime | None = None,
    send: Sender | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[Firing, Delivery]]:
    """Evaluate every rule on `rows` (verdict rows), deliver what fires, record the outcome.

    For `backfire score` at the end of a run and for the workers as verdicts arrive (pass the
    new rows together with the recent ones of the window). Returns the deliveries made.
    """
    store = RuleStore.from_settings(settings)
    if not store.path.exists():
        return []
    now = now or datetime.now(UTC)
    rows = list(rows)
    firings: list[Firing] = []
    with store.edit() as rules:
        for rule in rules:
            firings += [Firing(rule.model_copy(), p) for p in _evaluate_rule(rule, rows, now)]
    # Deliver outside the lock: retries with backoff may take seconds.
    send = send or (lambda url, body: post_json(url, body, settings))
    results = [(f, deliver(f, settings, send, sleep)) for f in firings]
    if results:
        with store.edit() as rules:
            by_id = {r.id: r for r in rules}
            for f, d in results:
                if (rule := by_id.get(f.rule.id)) is not None:
                    rule.deliveries = (rule.deliveries + [d])[-MAX_DELIVERIES_KEPT:]
    return results


# --- delivery -----------------------------------------------------------------------------------
#: One attempt's outcome (the shared SSRF-safe POST's result type).
DeliveryResult = PostOutcome


def deliver(
    f: Firing, settings: Settings, send: Sender, sleep: Callable[[float], None]
) -> Delivery:
    attempts, result = 0, DeliveryResult(False, error="not attempted")
    for attempt in range(settings.alert_attempts):
        if attempt:
            sleep(settings.alert_backoff_s * 2 ** (attempt - 1))
        attempts += 1
        result = send(f.rule.webhook, f.payload)
        if result.ok or not result.retry:
            break
    return Delivery(
        at=_iso(datetime.now(UTC)), ok=result.ok, attempts=attempts, share=f.payload["share"],
        posts=f.payload["posts"], status=result.status, error=result.error,
    )  # fmt: skip


def post_json(url: str, body: dict[str, Any], settings: Settings) -> DeliveryResult:
    """One POST to the vetted address of `url` (no second DNS lookup); redirects not followed."""
    return http_post.post_json(
        url, json.dumps(body).encode(), {}, FetchPolicy.from_settings(settings),
        timeout_s=settings.alert_timeout_s,
    )  # fmt: skip


# --- `backfire score` hook ------------------------------------------------------------------------
_SLIM = ("post_id", "status", "hashtag", "created_at", "author", "image", "caption_text",
         "verdict", "confidence", "reasons")  # fmt: skip


class AlertTee:
    """Collects the slim fields alerts need from each written row, only if any rule exists."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active = RuleStore.from_settings(settings).path.exists()
        self.rows: list[dict[str, Any]] = []

    def wrap(self, write: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        if not self.active:
            return write

        def tee(row: dict[str, Any]) -> None:
            write(row)
            self.rows.append({k: row.get(k) for k in _SLIM})

        return tee

    def finish(self, console: Any) -> None:
        """Evaluate the rules; an alert problem is reported, never fails the scoring run."""
        if not self.active or not self.rows:
            return
        try:
            results = evaluate_rows(self.settings, self.rows)
        except BackfireError as e:
            console.print(f"[yellow]alerts not evaluated[/]: {e.message}", soft_wrap=True)
            return
        for f, d in results:
            state = "sent" if d.ok else f"FAILED after {d.attempts} tries ({d.error})"
            console.print(
                f"Alert {f.rule.id} #{f.rule.hashtag}: backlash {f.payload['share']:.0%} over "
                f"{f.payload['window']} → {state}",
                soft_wrap=True,
            )
