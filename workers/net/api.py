"""One request to a platform's JSON API (Mastodon, Bluesky, X) for the live pollers.

Through the SSRF guard like every other request (`workers.net.guard`): the instance is given by
the user, but a host name can still resolve to an internal address, and loopback is refused
unless `allow_private_network` is set (tests run their fake platforms on 127.0.0.1). Returns
the status, headers and body whatever the status: retrying and rate limits are the caller's
(`workers.sources.live`). Redirects are not followed. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from workers.errors import FetchError, FetchTimeout
from workers.net.guard import FetchPolicy, Watchdog, pinned_connection, vet

__all__ = ["ApiAnswer", "api_request"]

#: A page of 100 hydrated posts is a few hundred kB; anything far larger is not an API answer.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    #: Header names lower-cased (HTTP names are case-insensitive).
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def with_query(url: str, params: Mapping[str, Any] | None) -> str:
    given = {k: v for k, v in (params or {}).items() if v is not None}
    if not given:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(given, doseq=True)


def api_request(
    method: str,
    url: str,
    policy: FetchPolicy,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout_s: float = 20.0,
) -> ApiAnswer:
    """One exchange with `url`. Raises `FetchError` (or `FetchTimeout`) when no answer came."""
    target = vet(url, policy)
    deadline = time.monotonic() + timeout_s
    conn = pinned_connection(target, timeout_s)
    sent = {"User-Agent": policy.user_agent, "Accept": "application/json", **(headers or {})}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    dog: Watchdog | None = None
    try:
        conn.connect()
        assert conn.sock is not None
        with Watchdog(conn.sock, deadline) as dog:
            conn.request(method, target.request_target, body=body, headers=sent)
            answer = conn.getresponse()
            data = answer.read(MAX_ANSWER_BYTES + 1)
            if len(data) > MAX_ANSWER_BYTES:
                raise FetchError(f"{url}: answer larger than {MAX_ANSWER_BYTES} bytes")
            got = {k.lower(): v for k, v in answer.getheaders()}
            return ApiAnswer(answer.status, got, data)
    except FetchError:
        raise
    except (OSError, http.client.HTTPException) as e:
        if (dog is not None and dog.fired) or isinstance(e, TimeoutError):
            raise FetchTimeout(f"{url}: no answer within {timeout_s:g} s") from e
        raise FetchError(
            f"{url}: connection failed to {target.host}:{target.port} ({type(e).__name__}: {e})"
        ) from e
    finally:
        conn.close()
