"""Alert rules and deliveries in the store: the queries, no alert logic (that is workers/notify/).

Scope: a rule's `owner` is the API key that created it, or NULL for `backfire alert add`. Callers
pass `owner=None` for the operator's view (every rule, every post) and a key id for a tenant's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from workers.domain import ResultRow
from workers.store.db import Database
from workers.store.models import AlertDeliveryRow, AlertRuleRow, PostRow, VerdictRow, utcnow
from workers.store.views import result_row

#: Deliveries kept per rule (the newest); older ones are history nobody reads.
KEEP_DELIVERIES = 20


def add_rule(db: Database, row: AlertRuleRow) -> AlertRuleRow:
    with db.write() as s:
        s.add(row)
    return row


def list_rules(
    db: Database, owner: str | None = None
) -> list[tuple[AlertRuleRow, list[AlertDeliveryRow]]]:
    """Rules (all of them, or one key's) in creation order, each with its deliveries, oldest
    first."""
    with db.read() as s:
        q = select(AlertRuleRow).order_by(AlertRuleRow.created_at, AlertRuleRow.id)
        if owner is not None:
            q = q.where(AlertRuleRow.owner == owner)
        rules = list(s.scalars(q))
        ids = [r.id for r in rules]
        by_rule: dict[str, list[AlertDeliveryRow]] = {i: [] for i in ids}
        if ids:
            q2 = (
                select(AlertDeliveryRow)
                .where(AlertDeliveryRow.rule_id.in_(ids))
                .order_by(AlertDeliveryRow.id)
            )
            for d in s.scalars(q2):
                by_rule[d.rule_id].append(d)
    return [(r, by_rule[r.id]) for r in rules]


def remove_rule(db: Database, rule_id: str, owner: str | None = None) -> bool:
    """Delete a rule (and its deliveries); with `owner`, only if that key owns it."""
    with db.write() as s:
        q = delete(AlertRuleRow).where(AlertRuleRow.id == rule_id)
        if owner is not None:
            q = q.where(AlertRuleRow.owner == owner)
        return bool(cast(CursorResult[Any], s.execute(q)).rowcount)


def has_rules(db: Database, hashtag_key: str | None = None, cli_only: bool = False) -> bool:
    with db.read() as s:
        q = select(AlertRuleRow.id).limit(1)
        if hashtag_key is not None:
            q = q.where(AlertRuleRow.hashtag_key == hashtag_key)
        if cli_only:
            q = q.where(AlertRuleRow.owner.is_(None))
        return s.scalar(q) is not None


def rules_to_evaluate(
    s: Session, *, hashtag_key: str | None, post_owner: str | None
) -> Sequence[AlertRuleRow]:
    """The rules a verdict can move, locked for this transaction so two workers never evaluate
    (and fire) the same rule at once. SQLite needs no row lock: its write transactions are
    serial (BEGIN IMMEDIATE). `post_owner=None`: rows without an owner (a `backfire score` run),
    which only the operator's (CLI) rules watch."""
    q = select(AlertRuleRow).order_by(AlertRuleRow.id).with_for_update()
    if hashtag_key is not None:
        q = q.where(AlertRuleRow.hashtag_key == hashtag_key)
    if post_owner is None:
        q = q.where(AlertRuleRow.owner.is_(None))
    else:
        q = q.where(AlertRuleRow.owner.is_(None) | (AlertRuleRow.owner == post_owner))
    return s.scalars(q).all()


def window_rows(
    s: Session, hashtag_key: str, since: datetime, owner: str | None
) -> list[tuple[datetime, ResultRow]]:
    """Finished posts of a hashtag posted after `since` (one owner's, or everyone's), each with
    the time alert windows count it at: `posted_at` (created_at, else acceptance time), so posts
    without a created_at still land in a window."""
    q = (
        select(PostRow, VerdictRow)
        .join(
            VerdictRow,
            (VerdictRow.post_seq == PostRow.seq)
            & (VerdictRow.pipeline_version == PostRow.pipeline_version),
        )
        .where(
            func.lower(PostRow.hashtag) == hashtag_key,
            PostRow.posted_at > since,
            PostRow.status == "done",
            VerdictRow.verdict.is_not(None),
        )
        .order_by(PostRow.posted_at, PostRow.seq)
    )
    if owner is not None:
        q = q.where(PostRow.owner == owner)
    out = []
    for p, v in s.execute(q).all():
        row = result_row(p, v)
        if row is not None:
            out.append((p.posted_at, row.slim()))
    return out


def add_delivery(s: Session, rule_id: str, payload: dict[str, Any]) -> AlertDeliveryRow:
    """A pending delivery of `payload`; the oldest beyond `KEEP_DELIVERIES` are dropped."""
    row = AlertDeliveryRow(
        rule_id=rule_id, state="pending", payload=payload, share=payload["share"],
        posts=payload["posts"], attempts=0,
    )  # fmt: skip
    s.add(row)
    s.flush()
    old = select(AlertDeliveryRow.id).where(AlertDeliveryRow.rule_id == rule_id)
    old = old.order_by(AlertDeliveryRow.id.desc()).offset(KEEP_DELIVERIES)
    stale = list(s.scalars(old))
    if stale:
        s.execute(delete(AlertDeliveryRow).where(AlertDeliveryRow.id.in_(stale)))
    return row


def get_delivery(db: Database, delivery_id: int) -> tuple[AlertDeliveryRow, AlertRuleRow] | None:
    with db.read() as s:
        d = s.get(AlertDeliveryRow, delivery_id)
        if d is None:
            return None
        rule = s.get(AlertRuleRow, d.rule_id)
        return (d, rule) if rule is not None else None


def set_delivery_state(
    db: Database,
    delivery_id: int,
    state: str,
    attempts: int,
    status: int | None = None,
    error: str | None = None,
) -> None:
    with db.write() as s:
        d = s.get(AlertDeliveryRow, delivery_id)
        if d is None:  # the rule was removed meanwhile
            return
        d.state, d.attempts, d.status, d.error = state, attempts, status, error
        if state != "pending":
            d.finished_at = utcnow()
