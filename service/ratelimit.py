"""Per-API-key rate limit, and failed authentications per client address, shared by every API
process. The key's limit: a fixed one-minute window counted in
Redis (INCR + EXPIRE in one round trip), with the asyncio client: it runs on the event loop,
not in a worker thread. If Redis is down the limit fails open: ingest matters
more than metering, and uploads must keep working while the broker recovers."""

from __future__ import annotations

import ipaddress
import logging
import math
import time

import redis
import redis.asyncio

from workers.errors import RateLimited, TooManyAuthFailures

log = logging.getLogger("backfire.api")
WINDOW_S = 60


async def _count_in_window(
    client: redis.asyncio.Redis, key_base: str, what: str
) -> tuple[int, float] | None:
    """Count one more in this minute's fixed window of `key_base` (INCR + EXPIRE in one round
    trip): (the window's count, when it ends), or None while Redis is down: the caller then
    fails open."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"{key_base}:{window}"
    try:
        pipe = client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
        count = int((await pipe.execute())[0])
    except redis.RedisError as e:
        log.warning("%s unavailable (failing open): %s", what, e)
        return None
    return count, float((window + 1) * WINDOW_S)


class RateLimiter:
    def __init__(self, client: redis.asyncio.Redis, prefix: str, per_minute: int) -> None:
        self.client = client
        self.prefix = prefix
        self.per_minute = per_minute

    async def hit(self, key_id: str) -> None:
        """Count one request for `key_id`; raises `RateLimited` past the limit."""
        if self.per_minute <= 0:
            return
        counted = await _count_in_window(self.client, f"{self.prefix}:rl:{key_id}",
                                         "rate limiter")  # fmt: skip
        if counted is None:
            return
        count, ends = counted
        if count > self.per_minute:
            retry_after = max(1, math.ceil(ends - time.time()))
            raise RateLimited(
                f"This API key made more than {self.per_minute} requests this minute; "
                f"retry in {retry_after} s.",
                retry_after,
            )


class AuthFailureLimiter:
    """Refused keys counted per client address (a fixed one-minute window in Redis, shared by
    every API process). Past `per_minute` failures the address is answered 429 for the rest of
    the window, before any key is parsed or looked up: guessing keys costs the guesser a minute
    per `per_minute` tries, and the database no reads. The block is remembered in this process
    (no Redis call on the way in); another process learns it at that address's next failure.
    Like the request limit, it fails open while Redis is down."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str, per_minute: int) -> None:
        self.client = client
        self.prefix = prefix
        self.per_minute = per_minute
        #: address -> end of the window it is blocked for (time.time()).
        self._blocked: dict[str, float] = {}

    def _refuse(self, until: float, now: float) -> TooManyAuthFailures:
        retry_after = max(1, math.ceil(until - now))
        return TooManyAuthFailures(
            f"Too many refused API keys from this address (more than {self.per_minute} a "
            f"minute); retry in {retry_after} s.",
            retry_after,
        )

    @staticmethod
    def client_of(host: str | None) -> str:
        """What is counted for a client: its IPv4 address, or its IPv6 /64 (one host usually
        holds a whole /64, so counting single IPv6 addresses would count nothing)."""
        if not host:
            return "unknown"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)

    def check(self, address: str) -> None:
        """Raise `TooManyAuthFailures` while `address` is blocked."""
        until = self._blocked.get(address)
        if until is None:
            return
        now = time.time()
        if now < until:
            raise self._refuse(until, now)
        del self._blocked[address]

    async def failed(self, address: str) -> None:
        """Count one refused key from `address`; raises `TooManyAuthFailures` past the limit."""
        if self.per_minute <= 0:
            return
        counted = await _count_in_window(self.client, f"{self.prefix}:af:{address}",
                                         "auth-failure limiter")  # fmt: skip
        if counted is None:
            return
        count, until = counted
        if count > self.per_minute:
            now = time.time()
            if len(self._blocked) > 100_000:  # bounded memory: drop the ended blocks first
                self._blocked = {a: t for a, t in self._blocked.items() if t > now}
                if len(self._blocked) > 100_000:
                    self._blocked.clear()
            self._blocked[address] = until
            log.warning("auth failures: %s blocked until the minute ends (%d refused)", address,
                        count)  # fmt: skip
            raise self._refuse(until, now)
