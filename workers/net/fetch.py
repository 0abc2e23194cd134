"""GET an image URL as hostile input, through the SSRF guard (`workers.net.guard`).

Every hop of a redirect is vetted again by the guard and connected to its vetted address;
bytes are capped while streaming and the whole download has one deadline. Standard library
only, like the guard.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from workers.errors import FetchError, FetchHTTPError, FetchTimeout, FetchTooLarge
from workers.net.guard import FetchPolicy, Target, Watchdog, pinned_connection, vet

__all__ = ["Fetched", "fetch_url"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    url: str
    #: Where the bytes came from after redirects.
    final_url: str
    data: bytes
    content_type: str | None


def fetch_url(url: str, policy: FetchPolicy) -> Fetched:
    """Download `url` under `policy`, or raise a FetchError subclass that says why not."""
    deadline = time.monotonic() + policy.timeout_s
    current = url
    for hop in range(policy.max_redirects + 1):
        try:
            target = vet(current, policy)
        except FetchError as exc:
            if hop == 0:
                raise
            # The hop's own message already names the hop URL and the reason.
            raise type(exc)(f"{url}: redirect to {exc.message}") from exc
        result = _fetch_once(url, target, policy, deadline)
        if isinstance(result, Fetched):
            return result
        current = result
    raise FetchError(
        f"{url}: too many redirects (more than {policy.max_redirects}); last one pointed to "
        f"{current}"
    )


def _timeout(url: str, policy: FetchPolicy) -> FetchTimeout:
    return FetchTimeout(f"{url}: timed out: not downloaded within {policy.timeout_s:g} s")


def _fetch_once(url: str, target: Target, policy: FetchPolicy, deadline: float) -> Fetched | str:
    """One request: the Fetched result, or the absolute URL a redirect points to."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timeout(url, policy)
    conn = pinned_connection(target, remaining)
    dog: Watchdog | None = None
    try:
        conn.connect()
        # Keep our own reference: http.client drops conn.sock once a response will close.
        sock = conn.sock
        assert sock is not None
        with Watchdog(sock, deadline) as dog:
            conn.putrequest("GET", target.request_target, skip_accept_encoding=True)
            conn.putheader("User-Agent", policy.user_agent)
            conn.putheader("Accept", "image/*, */*;q=0.5")
            # Compressed bodies would make the byte cap meaningless and defeat format sniffing.
            conn.putheader("Accept-Encoding", "identity")
            conn.endheaders()
            response = conn.getresponse()
            try:
                return _read_response(url, target, response, sock, dog, policy, deadline)
            finally:
                response.close()
    except FetchError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(
            f"{url}: TLS certificate of {target.host} is not valid ({exc.verify_message})"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        # A socket timeout, or a socket shut by the watchdog, both surface here.
        if isinstance(exc, TimeoutError) or (dog is not None and dog.fired):
            raise _timeout(url, policy) from exc
        if time.monotonic() >= deadline:
            raise _timeout(url, policy) from exc
        what = "connection failed" if isinstance(exc, OSError) else "bad HTTP response"
        raise FetchError(
            f"{url}: {what} from {target.host}:{target.port} ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        conn.close()


def _read_response(
    url: str,
    target: Target,
    response: http.client.HTTPResponse,
    sock: socket.socket,
    dog: Watchdog,
    policy: FetchPolicy,
    deadline: float,
) -> Fetched | str:
    status = response.status
    if status in _REDIRECT_STATUSES:
        location = response.getheader("Location")
        if not location:
            raise FetchHTTPError(
                f"{url}: HTTP {status} redirect from {target.url} without a Location header",
                status=status,
            )
        return urljoin(target.url, location.strip()).split("#", 1)[0]
    if not 200 <= status < 300:
        hop = "" if target.url == url else f" (at {target.url})"
        error = FetchHTTPError(
            f"{url}: the server answered HTTP {status} {response.reason}{hop}".rstrip(),
            status=status,
        )
        # Kept for callers that retry (workers.media.fetcher honours it on 429 and 503).
        error.retry_after = response.getheader("Retry-After")  # type: ignore[attr-defined]
        raise error

    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchTooLarge(
            f"{url}: refused: the server announced {int(declared)} bytes, over the limit of "
            f"{policy.max_bytes} bytes"
        )

    chunks: list[bytes] = []
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(url, policy)
        sock.settimeout(remaining)
        # read1 returns what has arrived instead of waiting for a full chunk, so a drip-fed body
        # comes back here for the deadline check. Never ask for more than one byte past the cap.
        chunk = response.read1(min(_CHUNK, policy.max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > policy.max_bytes:
            raise FetchTooLarge(
                f"{url}: refused: the body is larger than the limit of {policy.max_bytes} bytes"
            )
    if dog.fired:
        # The watchdog's shutdown looks like end-of-body to the reader.
        raise _timeout(url, policy)
    if declared.isdigit() and total < int(declared):
        # read1 reports an early close as end-of-body; a truncated image must not pass as whole.
        raise FetchError(
            f"{url}: bad HTTP response: the connection closed after {total} of the "
            f"{int(declared)} bytes announced"
        )
    return Fetched(
        url=url,
        final_url=target.url,
        data=b"".join(chunks),
        content_type=response.getheader("Content-Type"),
    )
