"""Fetching media at scale: many URLs at once, politely, with retries and an on-disk cache.

`fetch_url` (workers.net.fetch) fetches one URL safely. A 100,000-post export needs more:
* bounded concurrency (a thread pool sized for a laptop) so downloads hide behind the model;
* a per-host limit, because one export usually points at one or two CDNs;
* retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring `Retry-After` (seconds or an HTTP date);
* one deadline for a post's whole download (`post_deadline_s`, retries and waits included): a
  server that drips a byte a second held a post for 4 tries x 20 s = 83 s; now each try gets
  what is left of the deadline, no wait runs past it, and the error says so;
* a cache keyed by URL whose entries point at content-addressed blobs (sha256), written
  atomically (temp file + rename), so a run killed at any instant and resumed re-downloads
  nothing it already has, and identical bytes behind different URLs are stored once;
* identical URLs in flight at the same time are downloaded once.

Decoding stays elsewhere (the runner's loader threads): these threads only wait on sockets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workers.errors import FetchError, FetchHTTPError, FetchTimeout, MediaError
from workers.media.source import is_url, read_media
from workers.net.fetch import Fetched, fetch_url
from workers.net.guard import FetchPolicy

if TYPE_CHECKING:
    from workers.config import Settings

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Declared types that are certainly not a picture (an error page, a login wall, JSON).
_NOT_IMAGE_PREFIXES = ("text/", "application/json", "application/xml", "application/xhtml")


class NotAnImage(FetchError):
    """The server answered 200 with something that is not an image (HTML, JSON...)."""

    code = "fetch-not-an-image"


@dataclass(frozen=True)
class FetcherConfig:
    concurrency: int = 16
    per_host: int = 8
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0
    #: A post's whole download, every try and wait included (each try is also bounded by the
    #: policy's own per-try timeout).
    post_deadline_s: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetcherConfig:
        return cls(
            concurrency=settings.fetch_concurrency,
            per_host=settings.fetch_per_host,
            retries=settings.fetch_retries,
            backoff_s=settings.fetch_backoff_s,
            retry_after_max_s=settings.fetch_retry_after_max_s,
            post_deadline_s=settings.fetch_post_deadline_s,
        )


@dataclass
class FetcherStats:
    downloaded: int = 0
    cache_hits: int = 0
    shared_in_flight: int = 0
    retries: int = 0
    failed: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class MediaCache:
    """`root/urls/ab/<sha256(url)>` holds the content sha256; `root/blobs/cd/<sha>` the bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "urls").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def _url_path(self, url: str) -> Path:
        h = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
        return self.root / "urls" / h[:2] / h

    def _blob_path(self, sha: str) -> Path:
        return self.root / "blobs" / sha[:2] / sha

    def has(self, url: str) -> bool:
        return self._url_path(url).exists()

    def get(self, url: str) -> bytes | None:
        try:
            sha = self._url_path(url).read_text().strip()
            data = self._blob_path(sha).read_bytes()
        except (OSError, ValueError):
            return None
        # A damaged blob (disk trouble, a hand edit) is a miss, never wrong bytes.
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def put(self, url: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        blob = self._blob_path(sha)
        if not blob.exists():
            _atomic_write(blob, data)
        # The index entry goes last: whoever sees it can read the blob.
        _atomic_write(self._url_path(url), sha.encode())
        return sha


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: a kill leaves the old state or the new, never half
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _retryable(exc: FetchError) -> bool:
    if isinstance(exc, FetchHTTPError):
        return exc.status in RETRY_STATUSES
    if isinstance(exc, FetchTimeout):
        return True
    # Plain FetchError: a dropped or refused connection is worth another try; a bad URL,
    # a blocked address or an oversized body is not (those are subclasses or other wording).
    return type(exc) is FetchError and (
        "connection failed" in exc.message or "bad HTTP response" in exc.message
    )


class MediaFetcher:
    """Downloads post media on a bounded thread pool. `submit(ref)` returns a Future of the bytes
    (or of a MediaError); local paths are read on the same pool, without cache or retries."""

    def __init__(
        self,
        policy: FetchPolicy,
        config: FetcherConfig | None = None,
        cache: MediaCache | None = None,
        *,
        fetch: Callable[[str, FetchPolicy], Fetched] = fetch_url,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy
        self.config = config or FetcherConfig()
        self.cache = cache
        self.stats = FetcherStats()
        self._fetch = fetch
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="fetch")
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._in_flight: dict[str, Future[bytes]] = {}

    # --- public --------------------------------------------------------------------------------
    def submit(self, ref: str | None) -> Future[bytes]:
        if not ref or not is_url(ref):
            return self._pool.submit(read_media, ref, self.policy)
        with self._lock:
            fut = self._in_flight.get(ref)
            if fut is not None:
                self.stats.add(shared_in_flight=1)
                return fut
            fut = self._pool.submit(self.get, ref)
            self._in_flight[ref] = fut
        fut.add_done_callback(functools.partial(self._forget_done, ref))
        return fut

    def get(self, url: str) -> bytes:
        """The bytes behind `url`: from the cache, else downloaded (with retries) and cached."""
        if self.cache is not None:
            data = self.cache.get(url)
            if data is not None:
                self.stats.add(cache_hits=1)
                return data
        try:
            data = self._download(url)
        except MediaError:
            self.stats.add(failed=1)
            raise
        except Exception as e:  # noqa: BLE001 - a fetcher bug fails the post, not the run
            self.stats.add(failed=1)
            raise FetchError(f"{url}: download failed ({e!r})") from e
        if self.cache is not None:
            # A full disk costs a re-download on resume, never the post.
            with contextlib.suppress(OSError):
                self.cache.put(url, data)
        return data

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MediaFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------
    def _forget_done(self, url: str, _future: Future[bytes]) -> None:
        with self._lock:
            self._in_flight.pop(url, None)

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            sem = self._hosts.get(host)
            if sem is None:
                sem = self._hosts[host] = threading.BoundedSemaphore(self.config.per_host)
            return sem

    def _download(self, url: str) -> bytes:
        cfg = self.config
        slot = self._host_slot(url)
        attempt = 0
        deadline: float | None = None
        last: FetchError | None = None
        while True:
            with slot:  # the wait below happens outside the slot: others may use the host
                # The clock starts with the first request (not while queued for the host).
                if deadline is None:
                    deadline = time.monotonic() + cfg.post_deadline_s
                left = deadline - time.monotonic()
                if left <= 0:  # waiting for the host's slot took the rest of the time
                    raise self._out_of_time(url, attempt, last)
                # Each try gets its own timeout, or what is left of the post's deadline.
                policy = self.policy
                if left < policy.timeout_s:
                    policy = dataclasses.replace(policy, timeout_s=left)
                try:
                    got = self._fetch(url, policy)
                except FetchError as e:
                    last = e
                else:
                    last = None
            if last is None:
                _check_type(url, got)
                self.stats.add(downloaded=1, bytes=len(got.data))
                return got.data
            if attempt >= cfg.retries or not _retryable(last):
                if attempt:
                    raise _with_attempts(last, attempt + 1) from last
                raise last
            delay = self._delay(last, attempt + 1)
            if time.monotonic() + delay >= deadline:
                # Another try could not start (or not get anywhere) before the deadline.
                raise self._out_of_time(url, attempt + 1, last) from last
            attempt += 1
            self.stats.add(retries=1)
            self._sleep(delay)

    def _out_of_time(self, url: str, attempts: int, last: FetchError | None = None) -> FetchError:
        limit = f"the post's deadline of {self.config.post_deadline_s:g} s"
        plural = "s" * (attempts != 1)
        if last is None or isinstance(last, FetchTimeout):
            return FetchTimeout(
                f"{url}: timed out: not downloaded within {limit} ({attempts} attempt{plural})"
            )
        # The server's own answer says more than "timed out" (a 503 asking for a long wait).
        return _with_attempts(last, attempts, f"; no time left for another within {limit}")

    def _delay(self, exc: FetchError, attempt: int) -> float:
        cfg = self.config
        # Exponential backoff with "equal jitter": half fixed, half random, so many threads
        # retrying the same CDN do not come back in lock-step.
        base = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1))
        delay = base / 2 + random.uniform(0, base / 2)
        if isinstance(exc, FetchHTTPError) and exc.status in (429, 503):
            asked = parse_retry_after(getattr(exc, "retry_after", None))
            if asked is not None:
                delay = max(delay, min(asked, cfg.retry_after_max_s))
        return delay


def _check_type(url: str, got: Fetched) -> None:
    ctype = (got.content_type or "").split(";", 1)[0].strip().lower()
    if ctype.startswith(_NOT_IMAGE_PREFIXES):
        raise NotAnImage(f"{url}: refused: the server sent {ctype}, not an image")


def _with_attempts(exc: FetchError, attempts: int, why: str = "") -> FetchError:
    message = f"{exc.message} (gave up after {attempts} attempts{why})"
    if isinstance(exc, FetchHTTPError):
        return FetchHTTPError(message, status=exc.status)
    return type(exc)(message)
