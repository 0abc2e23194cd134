"""Live pollers: each follows a hashtag (or a search) on one platform and yields the new posts in
the same `Post` shape the export readers produce (they parse with the readers' own functions:
one parser per platform).

A poller is asked `poll(cursor)` once per poll interval and yields `Batch`es, oldest first; each
batch carries the cursor to save once its posts are stored. Catch-up after a gap pages through
the backlog, at most `max_pages` requests per poll: a backlog larger than that is continued at
the next poll from the saved cursor (the watcher is behind, and says so), never skipped.

`ApiClient` is the polite part: every request goes through the SSRF guard, 429 and 5xx answers
are retried after the wait the platform asks for (`Retry-After`, or its rate-limit reset header)
or an exponential backoff, and a request is never sent before that wait is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from workers.domain import Post, parse_time
from workers.errors import FetchError, SourceError, SourceUnavailable
from workers.net.api import ApiAnswer, api_request, with_query
from workers.net.guard import FetchPolicy
from workers.sources import ReadProblem

PLATFORMS = ("mastodon", "bluesky", "twitter")


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """The watcher was asked to stop while a poll waited (backoff or rate limit)."""


@dataclass
class Batch:
    """New posts of one page, oldest first, and the cursor to save once they are stored."""

    posts: list[Post]
    cursor: dict[str, Any]
    #: time.time() when the page arrived: "first seen" for the lag figures.
    seen_at: float = field(default_factory=time.time)


class LiveSource(Protocol):
    platform: str
    #: The (source, query) the cursor is stored under.
    source_key: str
    query_key: str
    hashtag: str | None
    #: True when the last poll stopped at `max_pages` with more posts waiting.
    behind: bool
    #: Records of the pages it could not read (the watcher prints and clears them).
    problems: list[ReadProblem]

    def poll(self, cursor: dict[str, Any] | None) -> Iterator[Batch]: ...


def base_url(given: str, default: str) -> str:
    """An instance given as a host (`mastodon.social`) or a base URL (`http://127.0.0.1:8080`)."""
    text = (given or default).strip().rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    return text


# --- waits the platform asks for ------------------------------------------------------------------
def _seconds_until(value: str, now: float) -> float | None:
    """A reset header as the platforms write it: delta seconds, epoch seconds (X, Bluesky),
    an ISO 8601 time (Mastodon) or an HTTP date (Retry-After)."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        # Epoch seconds are ~1.7e9; no server asks for a 30-year wait in delta seconds.
        return max(0.0, number - now) if number > 1e9 else max(0.0, number)
    when = parse_time(value)
    if when is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return max(0.0, when.timestamp() - now)


def asked_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the platform asked us to wait: `Retry-After` first, else a rate-limit reset."""
    now = time.time() if now is None else now
    for name in ("retry-after", "x-rate-limit-reset", "ratelimit-reset", "x-ratelimit-reset"):
        if headers.get(name):
            wait = _seconds_until(headers[name], now)
            if wait is not None:
                return wait
    return None


def _exhausted(headers: Mapping[str, str]) -> bool:
    for name in ("x-rate-limit-remaining", "ratelimit-remaining", "x-ratelimit-remaining"):
        value = headers.get(name, "").strip()
        if value.isdigit():
            return int(value) == 0
    return False


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class ApiClient:
    """GETs (and the odd POST) to one platform, retried politely. `wait(seconds)` sleeps and
    returns True when the watcher is stopping (an interrupted wait ends the poll)."""

    RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

    def __init__(
        self,
        policy: FetchPolicy,
        platform: str,
        *,
        wait: Callable[[float], bool] | None = None,
        retries: int = 5,
        backoff_s: float = 1.0,
        max_wait_s: float = 900.0,
        timeout_s: float = 20.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.policy = policy
        self.platform = platform
        self._wait = wait or _sleep
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.on_wait = on_wait or (lambda msg: None)
        #: time.time() before which no request may go (a 429's Retry-After, an empty quota).
        self.not_before = 0.0
        self.requests = 0
        self.retried = 0

    def _sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0 and self._wait(delay):
            raise Stopped

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        refuse: Callable[[ApiAnswer], str | None] | None = None,
    ) -> ApiAnswer:
        """The 2xx answer to the request, after retries. `refuse(answer)` may turn a non-2xx
        answer into the message of a `SourceError` (the platform's own words)."""
        full = with_query(url, params)
        attempt = 0
        while True:
            self._sleep_until(self.not_before)
            attempt += 1
            self.requests += 1
            try:
                answer = api_request(
                    method, full, self.policy, headers=headers, body=body,
                    timeout_s=self.timeout_s,
                )  # fmt: skip
            except FetchError as e:
                why, asked = e.message, None
            else:
                if _exhausted(answer.headers):
                    reset = asked_wait(answer.headers)
                    if reset is not None:  # the quota is spent: the next request waits for it
                        self.not_before = time.time() + min(reset, self.max_wait_s)
                if 200 <= answer.status < 300:
                    return answer
                if answer.status not in self.RETRY_STATUSES:
                    message = (refuse(answer) if refuse else None) or _refusal(
                        self.platform, full, answer
                    )
                    raise SourceError(message)
                why = f"HTTP {answer.status}"
                asked = asked_wait(answer.headers)
            if attempt > self.retries:
                raise SourceUnavailable(
                    f"{self.platform}: {full}: gave up after {attempt} attempts ({why})"
                )
            self.retried += 1
            delay = asked if asked is not None else self.backoff_s * 2 ** (attempt - 1)
            delay = min(delay, self.max_wait_s)
            self.not_before = max(self.not_before, time.time() + delay)
            self.on_wait(f"{self.platform}: {why}; retrying in {delay:.1f} s")

    def get_json(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, ApiAnswer]:
        answer = self.request("GET", url, params, headers)
        try:
            return answer.json(), answer
        except (ValueError, UnicodeDecodeError) as e:
            raise SourceUnavailable(f"{self.platform}: {url}: the answer is not JSON ({e})") from e


def _refusal(platform: str, url: str, answer: ApiAnswer) -> str:
    detail = ""
    try:
        doc = answer.json()
        if isinstance(doc, dict):
            detail = str(
                doc.get("error_description") or doc.get("message") or doc.get("error")
                or doc.get("detail") or doc.get("title") or ""
            )  # fmt: skip
    except (ValueError, UnicodeDecodeError):
        detail = answer.body[:200].decode("utf-8", "replace")
    hint = {
        401: " (the platform wants a valid token or session)",
        403: " (the token is not allowed to read this)",
        404: " (check the instance URL and the hashtag)",
    }.get(answer.status, "")
    return f"{platform} refused {url}: HTTP {answer.status}{hint}" + (
        f": {detail}" if detail else ""
    )


def in_time_order(posts: list[Post], newest_first: bool = True) -> list[Post]:
    """Posts oldest first by created_at (posts without one at the end). Search pages list the
    newest first: reversed before the (stable) sort, so posts of the same instant keep the
    platform's order too."""
    ordered = list(reversed(posts)) if newest_first else list(posts)
    keyed = [(parse_time(p.created_at), i, p) for i, p in enumerate(ordered)]
    dated = sorted((t, i, p) for t, i, p in keyed if t is not None)
    return [p for _, _, p in dated] + [p for t, _, p in keyed if t is None]
