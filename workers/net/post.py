"""POST a JSON body to a URL someone else chose (webhooks, alert rules), as hostile as a fetch.

Through the SSRF guard (`workers.net.guard`), like a fetch: the host is resolved once, every
address is vetted, and the socket connects to a vetted address itself, so DNS rebinding cannot
swap in a private address between the check and the request (an HTTP client that resolves
again, like httpx, would allow that). Redirects are not followed; the whole exchange has one
deadline. Standard library only, like the guard.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from dataclasses import dataclass

from workers.errors import FetchError
from workers.net.guard import FetchPolicy, Watchdog, pinned_connection, vet

__all__ = ["PostOutcome", "post_json"]

#: A receiver's answer body is read only to free the connection; nobody needs more of it.
_MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class PostOutcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    #: False when sending again cannot help: a refused URL, a redirect, a 4xx other than 408/429.
    retry: bool = True


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: FetchPolicy,
    timeout_s: float | None = None,
) -> PostOutcome:
    """One POST of `body` (already-encoded JSON, so a signature over it stays valid) to `url`."""
    try:
        target = vet(url, policy)
    except FetchError as e:
        return PostOutcome(False, error=e.message, retry=False)
    timeout = policy.timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    conn = pinned_connection(target, timeout)
    sent = {"Content-Type": "application/json", "User-Agent": policy.user_agent, **headers}
    dog: Watchdog | None = None
    try:
        conn.connect()
        assert conn.sock is not None
        with Watchdog(conn.sock, deadline) as dog:
            conn.request("POST", target.request_target, body=body, headers=sent)
            answer = conn.getresponse()
            answer.read(_MAX_ANSWER_BYTES)
            status = answer.status
    except (OSError, http.client.HTTPException, ValueError) as e:
        if dog is not None and dog.fired:
            return PostOutcome(False, error=f"no answer within {timeout:g} s")
        return PostOutcome(False, error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()
    if 200 <= status < 300:
        return PostOutcome(True, status)
    # Server errors, rate limits and timeouts may pass later; other answers will not.
    retry = status >= 500 or status in (408, 429)
    return PostOutcome(False, status, f"HTTP {status}", retry=retry)
