"""Publishing post ids to the workers (the outbox's send side). Light: no pipeline, no torch.

The post row is committed before anything is published; a failed publish is logged and left to
the reconciler, so the caller never loses an accepted post and never waits on a dead broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from celery import Celery

from workers.queue.app import SCORE_TASK
from workers.store import Database
from workers.store.posts import mark_enqueued

log = logging.getLogger("backfire.queue")


class Publisher:
    """Sends score messages; after a broker failure it stops trying for `cooldown_s` seconds so
    uploads during a Redis outage answer fast (the reconciler sends those posts later)."""

    def __init__(self, app: Celery, db: Database, cooldown_s: float = 5.0) -> None:
        self.app = app
        self.db = db
        self.cooldown_s = cooldown_s
        self._down_until = 0.0

    @property
    def broker_down(self) -> bool:
        return time.monotonic() < self._down_until

    def publish(
        self, seqs: Iterable[int], *, force: bool = False, premarked: bool = False
    ) -> list[int]:
        """Publish what can be published; returns the ids sent (and marks them enqueued).
        `premarked`: the posts were stamped enqueued when inserted (`create_post(enqueued=
        True)`), so only a failure writes (to clear the stamp of those not sent)."""
        seqs = list(seqs)
        sent: list[int] = []
        if self.broker_down and not force:
            if premarked:
                mark_enqueued(self.db, seqs, sent=False)
            return sent
        try:
            for seq in seqs:
                self.app.send_task(SCORE_TASK, args=[seq], retry=False)
                sent.append(seq)
        except Exception as e:  # kombu raises many types for a dead broker
            self._down_until = time.monotonic() + self.cooldown_s
            log.warning("broker unavailable, %s left for the reconciler: %s", "posts", e)
        if premarked:
            if len(sent) < len(seqs):
                mark_enqueued(self.db, seqs[len(sent) :], sent=False)
        elif sent:
            mark_enqueued(self.db, sent)
        return sent
