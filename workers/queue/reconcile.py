"""The reconciler: re-enqueues posts left `queued`/`running` past a threshold, so a Redis outage,
a flushed queue or a lost message never loses an accepted post (transactional outbox).

Re-sending is safe: verdicts are unique per (post, pipeline_version) and a task that finds its
post finished returns at once. Several reconcilers may run; a Redis lock lets one act per round.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery

from workers.config import Settings
from workers.queue.publish import Publisher
from workers.store import Database
from workers.store.posts import due_for_reconcile

log = logging.getLogger("backfire.reconcile")


class Reconciler:
    def __init__(self, settings: Settings, db: Database, app: Celery | None = None) -> None:
        if app is None:
            from workers.queue.app import create_app

            app = create_app(settings)
        self.settings = settings
        self.db = db
        self.publisher = Publisher(app, db, cooldown_s=0.0)
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
        )
        self.lock_key = f"{settings.redis_key_prefix}:reconcile-lock"

    def _take_turn(self, every_s: float) -> bool:
        # Expires before the next round, so whoever runs next may take it.
        ttl_ms = max(100, int(every_s * 900))
        return bool(self.redis.set(self.lock_key, "1", nx=True, px=ttl_ms))

    def run_once(self, every_s: float = 0.0) -> int:
        """One round; returns how many posts were re-enqueued."""
        try:
            if every_s > 0 and not self._take_turn(every_s):
                return 0
        except redis.RedisError as e:
            log.info("Redis unavailable, reconciler waits: %s", e)
            return 0
        due = due_for_reconcile(self.db, self.settings.reconcile_after_s)
        if not due:
            return 0
        sent = self.publisher.publish(due, force=True)
        log.info("re-enqueued %d of %d stale posts", len(sent), len(due))
        return len(sent)

    def run_forever(self, every_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once(every_s)
            except Exception:
                log.exception("reconcile round failed")
            stop.wait(every_s)
