"""The one retry ladder of deliveries: webhooks, alert POSTs (inline and by the workers) and
scoring tasks that raised. A failed attempt is followed by another after `first_s`, doubling
each time, until `attempts` are spent or a retry cannot help.

(The media fetcher keeps its own jittered, capped schedule that honours `Retry-After`: many
threads there retry one CDN at once, which no delivery does.)
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.config import Settings


@dataclass(frozen=True)
class Ladder:
    attempts: int
    first_s: float

    @classmethod
    def for_webhooks(cls, settings: Settings) -> Ladder:
        return cls(settings.webhook_max_attempts, settings.webhook_backoff_s)

    @classmethod
    def for_alerts(cls, settings: Settings) -> Ladder:
        return cls(settings.alert_attempts, settings.alert_backoff_s)

    @classmethod
    def for_tasks(cls, settings: Settings) -> Ladder:
        return cls(settings.max_attempts, settings.task_retry_backoff_s)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (counted from 1)."""
        return self.first_s * 2 ** max(0, attempt - 1)

    def next_delay(self, attempt: int, retryable: bool = True) -> float | None:
        """After attempt `attempt` failed: the wait before the next one, or None to give up."""
        if not retryable or attempt >= self.attempts:
            return None
        return self.delay(attempt)
