"""Alerts of a `backfire score` run: its rows are evaluated against the operator's rules
(`backfire alert add`) at the end of the run, and what fires is delivered inline, retried on the
one backoff ladder. API keys' rules watch only their own posts, never a CLI run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from workers.config import Settings
from workers.domain import ResultRow, iso_utc, parse_time
from workers.errors import BackfireError
from workers.net.post import PostOutcome
from workers.notify.backoff import Ladder
from workers.notify.rules import Delivery, Firing, fire_rules, open_existing, post_json
from workers.store import alerts as store

Sender = Callable[[str, dict[str, Any]], PostOutcome]
Row = ResultRow | Mapping[str, Any]


def evaluate_rows(
    settings: Settings,
    rows: Iterable[Row],
    *,
    now: datetime | None = None,
    send: Sender | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[Firing, Delivery]]:
    """Evaluate the operator's rules on the rows of a `backfire score` run, deliver what fires
    and record the outcome. Returns the deliveries made. A row without a time counts at `now`."""
    db = open_existing(settings)
    if db is None:
        return []
    try:
        now = now or datetime.now(UTC)
        timed = [(parse_time(r.created_at) or now, r) for r in map(ResultRow.of, rows)]
        with db.write() as s:
            rules = store.rules_to_evaluate(s, hashtag_key=None, post_owner=None)
            firings = fire_rules(s, rules, lambda _r: timed)
        # Deliver outside the transaction: retries with backoff may take seconds.
        send = send or (lambda url, body: post_json(url, body, settings))
        results = []
        for f, delivery_id in firings:
            d = deliver(f, Ladder.for_alerts(settings), send, sleep)
            state = "sent" if d.ok else "failed"
            store.set_delivery_state(db, delivery_id, state, d.attempts, d.status, d.error)
            results.append((f, d.model_copy(update={"state": state})))
        return results
    finally:
        db.dispose()


def deliver(
    f: Firing, ladder: Ladder, send: Sender, sleep: Callable[[float], None]
) -> Delivery:
    """POST the firing, retrying on the ladder while a retry can help."""
    attempt, result = 0, PostOutcome(False, error="not attempted")
    while True:
        attempt += 1
        result = send(f.rule.webhook, f.payload)
        if result.ok:
            break
        delay = ladder.next_delay(attempt, result.retry)
        if delay is None:
            break
        sleep(delay)
    return Delivery(
        at=iso_utc(datetime.now(UTC)), ok=result.ok, attempts=attempt, share=f.payload["share"],
        posts=f.payload["posts"], status=result.status, error=result.error,
    )  # fmt: skip


def _has_cli_rules(settings: Settings) -> bool:
    db = open_existing(settings)
    if db is None:
        return False
    try:
        return store.has_rules(db, cli_only=True)
    finally:
        db.dispose()


class AlertTee:
    """Keeps the slim rows alerts need from each written record, only if any rule exists."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active = _has_cli_rules(settings)
        self.rows: list[ResultRow] = []

    def wrap(self, write: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        if not self.active:
            return write

        def tee(record: dict[str, Any]) -> None:
            write(record)
            self.rows.append(ResultRow.from_record(record).slim())

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
