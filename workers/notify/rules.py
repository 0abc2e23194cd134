"""Early warning: a rolling-window backlash share per hashtag, and a webhook when it crosses.

A rule (`backfire alert add --hashtag myNYPD --backlash-share 0.3 --window 30m --min-posts 20
--webhook URL`) watches the posts of one hashtag in time order. At each post, the window is the
posts created in the `window` before it; when that window holds at least `min_posts` scored posts
and the backlash share reaches the threshold, the rule fires ONCE and disarms. It re-arms when
the share falls back below the threshold, so a campaign that recovers and relapses alerts again.

Rules, their armed/fired state and their deliveries live in the SQL store (tables
`alert_rules`, `alert_deliveries`), shared by the CLI, the API and the workers. Rules added with
`backfire alert add` have no owner and watch every post of their hashtag; rules added through the
API belong to that key and watch only its posts. An evaluation runs in one write transaction with
the rules locked, so two workers never fire the same crossing. Each rule remembers the last post
time it evaluated, so re-reading the same rows (a `--resume`, a re-run, a verdict re-delivered)
never fires twice for the same crossing; a verdict that arrives after newer posts were evaluated
only fills the windows of later posts.

Two callers: `backfire score` evaluates its run's rows at the end and delivers inline
(`evaluate_rows`); the workers evaluate after each stored verdict, reading the window from the
store, and deliver with a separate task (`workers/notify/watch.py`).

The webhook body is Slack-compatible (`text`) plus structured fields (share, window, top posts).
The URL passes the SSRF checks when the rule is added and again before every attempt, and the
POST goes to the vetted address itself (no second DNS lookup). Failed attempts are retried with
exponential backoff, then the delivery is recorded as failed on the rule.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from workers.config import Settings
from workers.errors import BackfireError, UsageError
from workers.net import post as http_post
from workers.net.guard import FetchPolicy, check_url
from workers.net.post import PostOutcome
from workers.store import Database, open_database
from workers.store import alerts as store
from workers.store.models import AlertDeliveryRow, AlertRuleRow

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
    #: pending (a worker will send it) | sent | failed
    state: str = "sent"
    attempts: int
    share: float
    posts: int
    status: int | None = None
    error: str | None = None


class AlertRule(BaseModel):
    id: str
    #: API key id that created the rule; None for `backfire alert add` (watches every owner).
    owner: str | None = None
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


# --- the rules in the store --------------------------------------------------------------------
def _dt(iso: str | None) -> datetime | None:
    from workers.report.data import parse_time

    return parse_time(iso) if iso else None


def _rule(row: AlertRuleRow, deliveries: Sequence[AlertDeliveryRow] = ()) -> AlertRule:
    return AlertRule(
        id=row.id, owner=row.owner, hashtag=row.hashtag, threshold=row.threshold,
        window_s=row.window_s, min_posts=row.min_posts, webhook=row.webhook,
        created_at=_iso(row.created_at), armed=row.armed, fired=row.fired,
        evaluated_until=_iso(row.evaluated_until) if row.evaluated_until else None,
        deliveries=[_delivery(d) for d in deliveries],
    )  # fmt: skip


def _delivery(d: AlertDeliveryRow) -> Delivery:
    return Delivery(
        at=_iso(d.finished_at or d.created_at), ok=d.state == "sent", state=d.state,
        attempts=d.attempts, share=d.share, posts=d.posts, status=d.status, error=d.error,
    )  # fmt: skip


def _open_existing(settings: Settings) -> Database | None:
    """The store, or None when the embedded SQLite file does not exist yet (so no rule does):
    `backfire score` must not create a database just to learn that."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
        return None
    return open_database(settings)


class RuleStore:
    """Read access to the rules for the CLI and tests; `owner=None` lists every rule."""

    def __init__(self, db: Database | None) -> None:
        self.db = db

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleStore:
        return cls(_open_existing(settings))

    def load(self, owner: str | None = None) -> list[AlertRule]:
        if self.db is None:
            return []
        return [_rule(r, ds) for r, ds in store.list_rules(self.db, owner)]

    def close(self) -> None:
        if self.db is not None:
            self.db.dispose()


def add_rule(
    settings: Settings,
    *,
    hashtag: str,
    threshold: float,
    window: str | int,
    min_posts: int,
    webhook: str,
    owner: str | None = None,
    db: Database | None = None,
) -> AlertRule:
    """Validate (the webhook URL passes the SSRF checks) and store a rule. `db`: the caller's
    open store (the API's); else the settings' store is opened for this call."""
    if not 0 < threshold <= 1:
        raise UsageError("--backlash-share is a share between 0 and 1, e.g. 0.3 for 30 %.")
    if min_posts < 1:
        raise UsageError("--min-posts must be at least 1.")
    tag = hashtag.strip().lstrip("#")  # shown as given; matched case-insensitively
    if not tag:
        raise UsageError("--hashtag is empty.")
    window_s = parse_window(str(window))
    check_url(webhook, FetchPolicy.from_settings(settings))  # SSRF: refuse before storing
    row = AlertRuleRow(
        id=secrets.token_hex(4), owner=owner, hashtag=tag, hashtag_key=norm_tag(tag),
        threshold=threshold, window_s=window_s, min_posts=min_posts, webhook=webhook,
        created_at=datetime.now(UTC), armed=True, fired=0,
    )  # fmt: skip
    mine = db or open_database(settings)
    try:
        store.add_rule(mine, row)
    finally:
        if db is None:
            mine.dispose()
    return _rule(row)


def remove_rule(
    settings: Settings, rule_id: str, owner: str | None = None, db: Database | None = None
) -> bool:
    """Remove a rule; with `owner`, only that key's (another key's rule is "not found")."""
    mine = db or _open_existing(settings)
    if mine is None:
        return False
    try:
        return store.remove_rule(mine, rule_id, owner)
    finally:
        if db is None:
            mine.dispose()


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


def fire_rules(
    s: Any,
    rules: Sequence[AlertRuleRow],
    rows_for: Callable[[AlertRuleRow], list[dict[str, Any]]],
    now: datetime,
) -> list[tuple[Firing, int]]:
    """Evaluate locked `rules` inside the caller's write transaction `s`; save their state and a
    pending delivery per firing. Returns each firing with its delivery id."""
    out: list[tuple[Firing, int]] = []
    for row in rules:
        rule = _rule(row)
        payloads = _evaluate_rule(rule, rows_for(row), now)
        row.armed, row.fired = rule.armed, rule.fired
        row.evaluated_until = _dt(rule.evaluated_until)
        for p in payloads:
            out.append((Firing(rule.model_copy(), p), store.add_delivery(s, row.id, p).id))
    return out


def evaluate_rows(
    settings: Settings,
    rows: Iterable[dict[str, Any]],
    *,
    now: datetime | None = None,
    send: Sender | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[Firing, Delivery]]:
    """Evaluate the operator's rules (`backfire alert add`) on the rows of a `backfire score`
    run, deliver what fires (inline, with retries) and record the outcome. Returns the
    deliveries made. API keys' rules watch only their own posts, never a CLI run's."""
    db = _open_existing(settings)
    if db is None:
        return []
    try:
        now = now or datetime.now(UTC)
        rows = list(rows)
        with db.write() as s:
            rules = store.rules_to_evaluate(s, hashtag_key=None, post_owner=None)
            firings = fire_rules(s, rules, lambda _r: rows, now)
        # Deliver outside the transaction: retries with backoff may take seconds.
        send = send or (lambda url, body: post_json(url, body, settings))
        results = []
        for f, delivery_id in firings:
            d = deliver(f, settings, send, sleep)
            state = "sent" if d.ok else "failed"
            store.set_delivery_state(db, delivery_id, state, d.attempts, d.status, d.error)
            results.append((f, d.model_copy(update={"state": state})))
        return results
    finally:
        db.dispose()


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


def _has_cli_rules(settings: Settings) -> bool:
    db = _open_existing(settings)
    if db is None:
        return False
    try:
        return store.has_rules(db, cli_only=True)
    finally:
        db.dispose()


class AlertTee:
    """Collects the slim fields alerts need from each written row, only if any rule exists."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active = _has_cli_rules(settings)
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
        except SQLAlchemyError as e:  # the store is unreachable: the scores are written anyway
            console.print(f"[yellow]alerts not evaluated[/]: store: {e}", soft_wrap=True)
            return
        for f, d in results:
            state = "sent" if d.ok else f"FAILED after {d.attempts} tries ({d.error})"
            console.print(
                f"Alert {f.rule.id} #{f.rule.hashtag}: backlash {f.payload['share']:.0%} over "
                f"{f.payload['window']} → {state}",
                soft_wrap=True,
            )
