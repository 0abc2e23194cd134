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
(`workers/notify/alerts.py`); the workers evaluate after each stored verdict, reading the window
from the store, and deliver with a separate task (`workers/notify/watch.py`). Both evaluate
typed rows (`ResultRow`), each with the time it counts at.

The webhook body is Slack-compatible (`text`) plus structured fields (share, window, top posts).
The URL passes the SSRF checks when the rule is added and again before every attempt, and the
POST goes to the vetted address itself (no second DNS lookup). Failed attempts are retried with
the one backoff ladder (`workers/notify/backoff.py`), then the delivery is recorded as failed
on the rule.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from workers.config import Settings
from workers.domain import (
    MAX_WINDOW_S,
    ResultRow,
    clean_hashtag,
    format_duration,
    hashtag_key,
    iso_utc,
    parse_duration,
    parse_time,
)
from workers.errors import UsageError
from workers.net import post as http_post
from workers.net.guard import FetchPolicy, check_url
from workers.net.post import PostOutcome
from workers.store import Database, open_database
from workers.store import alerts as store
from workers.store.models import AlertDeliveryRow, AlertRuleRow

TOP_POSTS = 3
#: A row of a rule's window and the time it counts at (its created_at; in the store, the
#: acceptance time of a post that has none).
Timed = tuple[datetime, ResultRow]


def parse_window(text: str | int) -> int:
    """'30m', '2h', '1d', '90s' or plain seconds -> whole seconds, above zero, at most 30 days."""
    seconds = int(parse_duration(text, "window"))
    if seconds <= 0:
        raise UsageError(f"Cannot read the window {text!r}; write it like 30m, 2h, 1d or 90s.")
    if seconds > MAX_WINDOW_S:
        raise UsageError(f"The window {text!r} is longer than 30 days (30d), the longest a rule "
                         "can watch.")
    return seconds


# --- the rules in the store --------------------------------------------------------------------
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
def _rule(row: AlertRuleRow, deliveries: Sequence[AlertDeliveryRow] = ()) -> AlertRule:
    return AlertRule(
        id=row.id, owner=row.owner, hashtag=row.hashtag, threshold=row.threshold,
        window_s=row.window_s, min_posts=row.min_posts, webhook=row.webhook,
        created_at=iso_utc(row.created_at), armed=row.armed, fired=row.fired,
        evaluated_until=iso_utc(row.evaluated_until),
        deliveries=[_delivery(d) for d in deliveries],
    )  # fmt: skip


def _delivery(d: AlertDeliveryRow) -> Delivery:
    return Delivery(
        at=iso_utc(d.finished_at or d.created_at), ok=d.state == "sent", state=d.state,
        attempts=d.attempts, share=d.share, posts=d.posts, status=d.status, error=d.error,
    )  # fmt: skip


def open_existing(settings: Settings) -> Database | None:
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
        return cls(open_existing(settings))

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
    tag = clean_hashtag(hashtag)  # shown as given; matched case-insensitively
    if tag is None:
        raise UsageError("--hashtag is empty.")
    window_s = parse_window(str(window))
    check_url(webhook, FetchPolicy.from_settings(settings))  # SSRF: refuse before storing
    row = AlertRuleRow(
        id=secrets.token_hex(4), owner=owner, hashtag=tag, hashtag_key=hashtag_key(tag),
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
    mine = db or open_existing(settings)
    if mine is None:
        return False
    try:
        return store.remove_rule(mine, rule_id, owner)
    finally:
        if db is None:
            mine.dispose()


# --- evaluation ---------------------------------------------------------------------------------
def _evaluate_rule(rule: AlertRule, rows: list[Timed]) -> list[dict[str, Any]]:
    """Walk the rule's posts in time order; update its state; return the payloads it fires."""
    key = hashtag_key(rule.hashtag)
    mine = sorted(
        ((t, r) for t, r in rows if hashtag_key(r.hashtag) == key and r.ok and r.verdict),
        key=lambda tr: tr[0],
    )
    if not mine:
        return []
    done = parse_time(rule.evaluated_until) or datetime.min.replace(tzinfo=UTC)
    span = timedelta(seconds=rule.window_s)
    window: deque[Timed] = deque()
    backlash = 0
    fired: list[dict[str, Any]] = []
    for t, r in mine:
        window.append((t, r))
        backlash += r.verdict == "backlash"
        while window and window[0][0] <= t - span:
            backlash -= window.popleft()[1].verdict == "backlash"
        if rule.evaluated_until is not None and t <= done:
            continue  # seen by an earlier evaluation: it only fills the window
        share = backlash / len(window)
        if rule.armed and len(window) >= rule.min_posts and share >= rule.threshold:
            rule.armed = False
            rule.fired += 1
            fired.append(_payload(rule, [w for _, w in window], share, backlash, t - span, t))
        elif not rule.armed and share < rule.threshold:
            rule.armed = True
    rule.evaluated_until = iso_utc(max(mine[-1][0], done))
    return fired


def _payload(
    rule: AlertRule,
    window: list[ResultRow],
    share: float,
    backlash: int,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    top = sorted(
        (r for r in window if r.verdict == "backlash"), key=lambda r: -(r.confidence or 0.0)
    )[:TOP_POSTS]
    top_posts = [
        {
            "post_id": r.post_id,
            "created_at": r.created_at,
            "author": r.author,
            "caption": r.caption_text,
            "confidence": r.confidence,
            "reasons": list(r.reasons),
            "image": r.image,
        }
        for r in top
    ]
    win = format_duration(rule.window_s)
    lines = [
        f":rotating_light: Backlash alert for #{rule.hashtag}: {share:.0%} of the {len(window)} "
        f"posts in the last {win} are backlash (threshold {rule.threshold:.0%})."
    ]
    lines += [f"• {r.post_id} ({r.confidence or 0:.2f}): {r.caption_text[:140]}" for r in top]
    return {
        "text": "\n".join(lines),
        "event": "backlash.threshold_crossed",
        "rule_id": rule.id,
        "hashtag": rule.hashtag,
        "share": round(share, 4),
        "threshold": rule.threshold,
        "window": win,
        "window_seconds": rule.window_s,
        "window_start": iso_utc(start),
        "window_end": iso_utc(end),
        "posts": len(window),
        "backlash_posts": backlash,
        "min_posts": rule.min_posts,
        "top_posts": top_posts,
    }


def fire_rules(
    s: Any,
    rules: Sequence[AlertRuleRow],
    rows_for: Callable[[AlertRuleRow], list[Timed]],
) -> list[tuple[Firing, int]]:
    """Evaluate locked `rules` inside the caller's write transaction `s`; save their state and a
    pending delivery per firing. Returns each firing with its delivery id."""
    out: list[tuple[Firing, int]] = []
    for row in rules:
        rule = _rule(row)
        payloads = _evaluate_rule(rule, rows_for(row))
        row.armed, row.fired = rule.armed, rule.fired
        row.evaluated_until = parse_time(rule.evaluated_until)
        for p in payloads:
            out.append((Firing(rule.model_copy(), p), store.add_delivery(s, row.id, p).id))
    return out


# --- delivery -----------------------------------------------------------------------------------
def post_json(url: str, body: dict[str, Any], settings: Settings) -> PostOutcome:
    """One POST to the vetted address of `url` (no second DNS lookup); redirects not followed."""
    return http_post.post_json(
        url, json.dumps(body).encode(), {}, FetchPolicy.from_settings(settings),
        timeout_s=settings.alert_timeout_s,
    )  # fmt: skip
