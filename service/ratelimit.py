"""Per-API-key rate limit shared by every API process: a fixed one-minute window counted in
Redis (INCR + EXPIRE in one round trip), with the asyncio client: it runs on the event loop,
not in a worker thread. If Redis is down the limit fails open: ingest matters
more than metering, and uploads must keep working while the broker recovers."""

from __future__ import annotations

import logging
import math
import time

import redis
import redis.asyncio

from workers.errors import RateLimited

log = logging.getLogger("backfire.api")
WINDOW_S = 60


class RateLimiter:
    def __init__(self, client: redis.asyncio.Redis, prefix: str, per_minute: int) -> None:
        self.client = client
        self.prefix = prefix
        self.per_minute = per_minute

    async def hit(self, key_id: str) -> None:
        """Count one request for `key_id`; raises `RateLimited` past the limit."""
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        key = f"{self.prefix}:rl:{key_id}:{window}"
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, WINDOW_S * 2)
            count = int((await pipe.execute())[0])
        except redis.RedisError as e:
            log.warning("rate limiter unavailable (failing open): %s", e)
            return
        if count > self.per_minute:
            retry_after = max(1, math.ceil((window + 1) * WINDOW_S - now))
            raise RateLimited(
                f"This API key made more than {self.per_minute} requests this minute; "
                f"retry in {retry_after} s.",
                retry_after,
            )
