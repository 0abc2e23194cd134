"""Alerts as verdicts arrive: the workers' side of the alert rules. Light: no torch.

After the score task stores a verdict it calls `evaluate_for`: the rules of that post's
hashtag (the operator's, and those of the key that posted it) are locked and evaluated on the
window read from the store; each firing becomes a pending delivery row, and its id goes to the
small `deliver_alert` task, so retries with backoff never hold up scoring. `send_delivery` is
that task's body: one attempt per message, the next attempt re-published with a countdown.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from workers.config import Settings
from workers.domain import hashtag_key
from workers.notify.backoff import Ladder
from workers.notify.rules import Timed, fire_rules, post_json
from workers.store import Database
from workers.store import alerts as store
from workers.store.models import AlertRuleRow, PostRow

log = logging.getLogger("backfire.alerts")


def evaluate_after_verdict(db: Database, seq: int) -> list[int]:
    """Evaluate the rules post `seq` can move; returns the ids of the deliveries to send."""
    with db.read() as s:
        post = s.scalar(select(PostRow).where(PostRow.seq == seq))
    if post is None or post.status != "done":
        return []
    return evaluate_for(db, post)


def evaluate_for(db: Database, post: PostRow) -> list[int]:
    """The same for a post the caller holds, just scored ok (the score task's own copy of the
    row: no second read)."""
    key = hashtag_key(post.hashtag)
    if not key or not store.has_rules(db, key):  # the usual case: no write transaction at all
        return []
    posted_at = post.posted_at

    def rows_for(s: Any, rule: AlertRuleRow) -> list[Timed]:
        # From one window before the older of "last evaluated" and this post: enough to fill
        # the window of every post this evaluation can fire on.
        start = min(rule.evaluated_until or posted_at, posted_at)
        since = start - timedelta(seconds=rule.window_s)
        return store.window_rows(s, key, since, rule.owner)

    with db.write() as s:
        rules = store.rules_to_evaluate(s, hashtag_key=key, post_owner=post.owner)
        if not rules:
            return []
        firings = fire_rules(s, rules, lambda r: rows_for(s, r))
    return [delivery_id for _f, delivery_id in firings]


def send_delivery(
    settings: Settings, db: Database, delivery_id: int, attempt: int
) -> tuple[str, float | None]:
    """One attempt at a pending delivery. Returns the outcome and, when another attempt could
    help and is allowed, the delay before it (else None)."""
    got = store.get_delivery(db, delivery_id)
    if got is None or got[0].state != "pending":
        return "skip", None  # sent already (a re-delivered message), failed, or rule removed
    delivery, rule = got
    result = post_json(rule.webhook, delivery.payload, settings)  # vets the URL again
    if result.ok:
        store.set_delivery_state(db, delivery_id, "sent", attempt, result.status)
        return "sent", None
    delay = Ladder.for_alerts(settings).next_delay(attempt, result.retry)
    state = "failed" if delay is None else "pending"
    store.set_delivery_state(db, delivery_id, state, attempt, result.status, result.error)
    return ("failed" if delay is None else "retrying"), delay


def record_unqueued(db: Database, delivery_id: int, exc: BaseException) -> None:
    """The delivery's message could not be published (broker down): record it as failed."""
    try:
        error = f"not queued: {type(exc).__name__}: {exc}"
        store.set_delivery_state(db, delivery_id, "failed", 0, error=error[:500])
    except Exception:  # the store is down too: the log is all there is
        log.exception("alert delivery %s not recorded as failed", delivery_id)
