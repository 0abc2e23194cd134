"""The SSRF guard: where a request to a URL someone else chose may go (design decision 8).

A URL in a post, a webhook or an alert rule is chosen by whoever sent it, so a naive request is
a server-side request forgery: `http://169.254.169.254/...` reads cloud credentials,
`http://127.0.0.1:6379/` talks to Redis, a public host can redirect to either, and a DNS name
can resolve to a public address when checked and a private one when connected to (DNS
rebinding). Hence, for every request made here (`net.fetch` GETs, `net.post` POSTs):

* only http and https, no credentials in the URL;
* the host is resolved once, every resolved address is vetted (`vet`), and the connection goes
  to a vetted address itself (`pinned_connection`, never a second lookup), with the original
  Host header and, for https, SNI and certificate verification for the original host name;
* one deadline for the whole exchange (`Watchdog`), not one per socket read.

Only the standard library is used so the API process can import this without heavy deps.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, urlsplit

from workers.errors import BlockedAddress, FetchError

if TYPE_CHECKING:
    from workers.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services answer on these without authentication.
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# Carrier-grade NAT space: not "private" to the ipaddress module, yet not the public internet.
_SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")
# NAT64 well-known prefix: 64:ff9b::a.b.c.d is a.b.c.d to a NAT64 gateway.
_NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")
# IPv4-compatible IPv6 (deprecated, but some stacks still route ::a.b.c.d to a.b.c.d).
_IPV4_COMPAT_NETWORK = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class FetchPolicy:
    """How far a fetch may go: bytes, seconds, redirects, and which networks it may reach."""

    max_bytes: int
    timeout_s: float
    max_redirects: int = 5
    #: Allow every address, private ones included (tests, intranets). Off by default.
    allow_private_network: bool = False
    user_agent: str = "backfire/0.1 (+https://github.com/backfire)"
    #: Host names (exact, case-insensitive) that may resolve to private addresses while every
    #: other host stays public-only: e.g. an intranet media server. Matched per hop, so a listed
    #: host redirecting to an unlisted private address is still refused.
    private_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            allow_private_network=settings.allow_private_network,
        )

    def allows_private(self, host: str) -> bool:
        return self.allow_private_network or _normalise_host(host) in {
            _normalise_host(h) for h in self.private_hosts
        }



# --- address vetting -------------------------------------------------------------------------
def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (mapped, compat, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_NETWORK or (ip in _IPV4_COMPAT_NETWORK and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be reached from a fetch of untrusted URLs, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} ({inner} in IPv6 form)" if reason else None
    # Order matters only for the wording: the most specific reason first.
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_NETWORK:
        return "a shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        # Documentation ranges, benchmarking nets, etc.: nothing an image host lives on.
        return "a non-public address"
    return None


def _normalise_host(host: str) -> str:
    return host.lower().rstrip(".")


@dataclass(frozen=True)
class Target:
    """One vetted hop: where to connect and what to say to the server."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    request_target: str  # path + query, as sent on the request line
    addresses: tuple[tuple[int, Any], ...]  # (family, sockaddr) pairs, already vetted


def _parse(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{url}: not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"'{scheme}'" if scheme else "no scheme"
        raise FetchError(f"{url}: refused: only http and https URLs are fetched, not {shown}")
    if parts.username is not None or parts.password is not None:
        raise FetchError(f"{url}: refused: URLs with a user name or password are not fetched")
    host = parts.hostname
    if not host:
        raise FetchError(f"{url}: not a valid URL (no host name)")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise FetchError(f"{url}: not a valid URL (host name {host!r} cannot be encoded)") from exc
    return parts, host, port or _DEFAULT_PORTS[scheme]


def _resolve(url: str, host: str, port: int) -> list[tuple[int, Any]]:
    # getaddrinfo also turns decimal/octal/hex IPv4 forms ("2130706433", "0177.0.0.1", "0x7f.1")
    # into the dotted address they stand for, so those are vetted like any other address.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{url}: could not resolve host {host!r} ({exc})") from exc
    addresses: list[tuple[int, Any]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise FetchError(f"{url}: host {host!r} has no IPv4 or IPv6 address")
    return addresses


def vet(url: str, policy: FetchPolicy) -> Target:
    parts, host, port = _parse(url)
    addresses = _resolve(url, host, port)
    if not policy.allows_private(host):
        # ANY bad address refuses the URL: the connection could land on any of them.
        for _family, sockaddr in addresses:
            ip = ipaddress.ip_address(sockaddr[0])
            reason = blocked_reason(ip)
            if reason is not None:
                raise BlockedAddress(
                    f"{url}: refused: host {host!r} resolves to {ip}, {reason}; "
                    "private networks are not fetched unless allow_private_network is set"
                )
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    # Spaces and control characters are not allowed on the request line; keep existing escapes.
    target = quote(target, safe="/%?&=:@!$'()*+,;~-._")
    return Target(url, parts.scheme.lower(), host, port, target, tuple(addresses))


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse `url` unless its scheme is http(s) and every address it resolves to is allowed.

    For validating URLs given to us before anything is fetched from them (e.g. webhook callbacks).
    Connection-time checks still apply when the URL is actually used: call `fetch_url` for that.
    """
    vet(url, policy)


# --- connections pinned to the vetted addresses -------------------------------------------------
def _connect_pinned(addresses: tuple[tuple[int, Any], ...], timeout: float | None) -> socket.socket:
    """Connect to the first vetted address that answers (like socket.create_connection)."""
    last: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None  # addresses is never empty
    raise last


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection that connects to vetted addresses instead of resolving `host` again."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = target.addresses

    def connect(self) -> None:
        self.sock = _connect_pinned(self._addresses, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted address, with SNI and certificate checks for the original host name."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._addresses = target.addresses
        self._ssl_context = context

    def connect(self) -> None:
        sock = _connect_pinned(self._addresses, self.timeout)
        try:
            self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class Watchdog:
    """Shut the socket down at the deadline.

    Socket timeouts bound each recv, not the whole response: a server dripping one header byte at
    a time would otherwise hold `getresponse()` far past the deadline. After a shutdown the reader
    sees end-of-file, so `fired` tells a cut-off download from a complete one.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.fired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        with suppress(OSError):
            # The base-class method works on TLS sockets too, without touching the TLS state
            # another thread is reading through.
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    # Loading the CA store costs milliseconds; one verifying context serves every thread.
    return ssl.create_default_context()



def pinned_connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `target`'s vetted addresses, not yet connected."""
    if target.scheme == "https":
        return PinnedHTTPSConnection(target, timeout, ssl_context())
    return PinnedHTTPConnection(target, timeout)
