"""`image_url` downloads of the API, on a thread pool of their own with a cap per API key.

A download waits on someone else's server for up to `fetch_timeout_s`. Run in the API's shared
worker threads (which also serve every sync route and database call), 45 slow URLs from one key
held all of them and `/healthz` took 18.7 s. Here they have their own `api_download_threads`
threads, awaited from the event loop, and a key may have only `api_downloads_per_key` in flight
per process (429 `too-many-downloads` past it); past the pool's size the answer is 503, so no
request waits in a queue that only grows.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from workers.config import Settings
from workers.errors import TooManyDownloads, Unavailable
from workers.net.fetch import fetch_url
from workers.net.guard import FetchPolicy


class Downloads:
    def __init__(self, policy: FetchPolicy, threads: int, per_key: int) -> None:
        self.policy = policy
        self.threads = threads
        self.per_key = per_key
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="api-download")
        # Touched only on the event loop's thread (every caller awaits): no lock needed.
        self._by_key: Counter[str] = Counter()
        self._total = 0
        # A slot frees within one download deadline at the latest.
        self.retry_after = max(1, math.ceil(policy.timeout_s))

    @classmethod
    def from_settings(cls, settings: Settings, policy: FetchPolicy) -> Downloads:
        return cls(policy, settings.api_download_threads, settings.api_downloads_per_key)

    @property
    def in_flight(self) -> int:
        return self._total

    async def fetch(self, key_id: str, url: str) -> bytes:
        """The bytes at `url` (a FetchError says why not), downloaded on the pool."""
        if self._by_key[key_id] >= self.per_key:
            raise TooManyDownloads(
                f"This API key already has {self.per_key} image downloads in progress; retry "
                f"in {self.retry_after} s, or upload the image itself.",
                self.retry_after,
            )
        if self._total >= self.threads:
            raise Unavailable(
                f"All {self.threads} image download slots are busy; retry in "
                f"{self.retry_after} s, or upload the image itself.",
                self.retry_after,
            )
        self._by_key[key_id] += 1
        self._total += 1
        try:
            future = self._pool.submit(fetch_url, url, self.policy)
            return (await asyncio.wrap_future(future)).data
        finally:
            self._total -= 1
            self._by_key[key_id] -= 1
            if self._by_key[key_id] <= 0:
                del self._by_key[key_id]

    def close(self) -> None:
        # Downloads in flight end at their own deadline; nobody waits for them at shutdown.
        self._pool.shutdown(wait=False, cancel_futures=True)
