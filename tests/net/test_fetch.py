"""The safe URL fetcher against a real HTTP server on 127.0.0.1 (no network needed)."""

from __future__ import annotations

import socket
import time

import pytest

from workers.config import Settings
from workers.errors import BlockedAddress, FetchError, FetchHTTPError, FetchTimeout, FetchTooLarge
from workers.net.fetch import fetch_url
from workers.net.guard import FetchPolicy, check_url

ALLOW = FetchPolicy(max_bytes=100_000, timeout_s=5.0, allow_private_network=True)
STRICT = FetchPolicy(max_bytes=100_000, timeout_s=5.0)
# "localhost" plays an allowed intranet host; 127.0.0.1 written as an address is not on the list.
LOCALHOST_ONLY = FetchPolicy(
    max_bytes=100_000, timeout_s=5.0, private_hosts=frozenset({"localhost"})
)


# --- allowed and refused ------------------------------------------------------------------------
def test_fetches_from_local_server_when_private_network_allowed(local_server) -> None:
    url = local_server.url("/img")
    got = fetch_url(url, ALLOW)
    assert got.data == local_server.image_body
    assert got.url == got.final_url == url
    assert got.content_type == "image/png"


def test_same_url_refused_as_private_without_the_flag(local_server) -> None:
    url = local_server.url("/img")
    with pytest.raises(BlockedAddress) as err:
        fetch_url(url, STRICT)
    assert url in err.value.message
    assert "loopback" in err.value.message
    assert err.value.code == "fetch-blocked-address"


def test_sends_original_host_user_agent_and_identity_encoding(local_server) -> None:
    headers = fetch_url(local_server.url("/echo", host="localhost"), LOCALHOST_ONLY).data.decode()
    assert f"Host: localhost:{local_server.port}" in headers
    assert "User-Agent: backfire/0.1" in headers
    assert "Accept-Encoding: identity" in headers


def test_host_resolved_once_and_connection_goes_to_vetted_address(
    local_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a second lookup could answer differently, so there must be none."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding_dns(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        lookups.append(host)
        if host == "images.test" and len(lookups) == 1:
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        raise AssertionError("second DNS lookup: the connection must use the vetted address")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    policy = FetchPolicy(max_bytes=100_000, timeout_s=5.0, private_hosts=frozenset({"images.test"}))
    got = fetch_url(f"http://images.test:{local_server.port}/echo", policy)
    assert lookups == ["images.test"]
    assert f"Host: images.test:{local_server.port}" in got.data.decode()


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal 127.0.0.1
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "017700000001",  # octal, one number
        "127.1",  # short form
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",  # the same, in hex
        "[::127.0.0.1]",  # IPv4-compatible IPv6
        "[::1]",
        "0.0.0.0",
        "0",
        "localhost",
    ],
)
def test_loopback_in_any_spelling_is_refused(local_server, host: str) -> None:
    # The real port: without the check these URLs would reach the test server.
    url = f"http://{host}:{local_server.port}/img"
    with pytest.raises(BlockedAddress, match="refused"):
        fetch_url(url, STRICT)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://172.16.0.1/a.jpg", "private"),
        ("http://192.168.1.1/a.jpg", "private"),
        ("http://[fc00::1]/a.jpg", "private"),
        ("http://100.64.0.1/a.jpg", "shared"),
        ("http://169.254.1.1/a.jpg", "link-local"),
        ("http://[fe80::1]/a.jpg", "link-local"),
        ("http://224.0.0.1/a.jpg", "multicast"),
        ("http://240.0.0.1/a.jpg", "reserved"),
    ],
)
def test_non_public_addresses_refused(url: str, reason: str) -> None:
    with pytest.raises(BlockedAddress, match=reason):
        check_url(url, STRICT)


def test_public_address_passes_check_url() -> None:
    check_url("https://93.184.216.34/photo.jpg", STRICT)  # an IP literal: no DNS needed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("//example.com/a.jpg", "only http and https"),
        ("http://user:secret@93.184.216.34/a.jpg", "user name or password"),
        ("http://93.184.216.34:99999/a.jpg", "not a valid URL"),
        ("http:///a.jpg", "no host"),
    ],
)
def test_malformed_or_unsupported_urls_refused(url: str, words: str) -> None:
    with pytest.raises(FetchError, match=words):
        check_url(url, STRICT)


def test_https_against_a_plain_http_server_fails_cleanly(local_server) -> None:
    with pytest.raises(FetchError, match="connection failed"):
        fetch_url(f"https://127.0.0.1:{local_server.port}/img", ALLOW)


def test_closed_port_is_a_fetch_error_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        url = f"http://127.0.0.1:{port}/img"
        with pytest.raises(FetchError, match="connection failed") as err:
            fetch_url(url, ALLOW)
    assert url in err.value.message


# --- redirects ----------------------------------------------------------------------------------
def test_redirect_from_allowed_host_to_private_address_refused(local_server) -> None:
    start = local_server.url(
        f"/redirect?to=http://127.0.0.1:{local_server.port}/img", host="localhost"
    )
    with pytest.raises(BlockedAddress) as err:
        fetch_url(start, LOCALHOST_ONLY)
    assert start in err.value.message
    assert "redirect to http://127.0.0.1" in err.value.message
    assert "loopback" in err.value.message


def test_redirect_to_metadata_refused(local_server) -> None:
    start = local_server.url("/redirect?to=http://169.254.169.254/latest/", host="localhost")
    with pytest.raises(BlockedAddress, match="cloud metadata"):
        fetch_url(start, LOCALHOST_ONLY)


def test_redirect_to_other_scheme_refused(local_server) -> None:
    start = local_server.url("/redirect?to=file:///etc/passwd")
    with pytest.raises(FetchError, match="only http and https"):
        fetch_url(start, ALLOW)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_followed_within_allowed_hosts(local_server, code: int) -> None:
    start = local_server.url(f"/redirect?to=/img&code={code}", host="localhost")
    got = fetch_url(start, LOCALHOST_ONLY)
    assert got.data == local_server.image_body
    assert got.final_url == local_server.url("/img", host="localhost")


def test_redirect_limit(local_server) -> None:
    policy = FetchPolicy(
        max_bytes=100_000, timeout_s=5.0, max_redirects=3, allow_private_network=True
    )
    assert fetch_url(local_server.url("/chain/3"), policy).data == local_server.image_body
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_url(local_server.url("/chain/4"), policy)


def test_redirect_loop_stops(local_server) -> None:
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_url(local_server.url("/loop"), ALLOW)


# --- size cap -----------------------------------------------------------------------------------
def capped(max_bytes: int) -> FetchPolicy:
    return FetchPolicy(max_bytes=max_bytes, timeout_s=5.0, allow_private_network=True)


def test_body_at_the_cap_is_accepted(local_server) -> None:
    assert len(fetch_url(local_server.url("/bytes?n=5000"), capped(5000)).data) == 5000


def test_announced_size_over_cap_refused_before_reading(local_server) -> None:
    with pytest.raises(FetchTooLarge, match="announced 5001 bytes"):
        fetch_url(local_server.url("/bytes?n=5001"), capped(5000))


@pytest.mark.parametrize("route", ["/nolength?n=200000", "/chunked?n=200000"])
def test_body_without_length_cut_at_cap(local_server, route: str) -> None:
    with pytest.raises(FetchTooLarge, match="larger than the limit of 5000 bytes") as err:
        fetch_url(local_server.url(route), capped(5000))
    assert err.value.http_status == 413


def test_endless_body_stops_at_cap_quickly(local_server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchTooLarge):
        fetch_url(local_server.url("/nolength?n=0"), capped(100_000))
    assert time.monotonic() - started < 2  # the server would send 650 MB


def test_lying_content_length_never_reads_past_it(local_server) -> None:
    # Announces 500 (under the cap), sends 50,000: only the announced bytes are taken.
    got = fetch_url(local_server.url("/lying?declared=500&n=50000"), capped(5000))
    assert len(got.data) == 500


def test_short_body_for_announced_length_is_an_error(local_server) -> None:
    with pytest.raises(FetchError, match="closed after 10 of the 4000 bytes"):
        fetch_url(local_server.url("/lying?declared=4000&n=10"), capped(5000))


# --- time cap -----------------------------------------------------------------------------------
def timed(timeout_s: float) -> FetchPolicy:
    return FetchPolicy(max_bytes=100_000, timeout_s=timeout_s, allow_private_network=True)


@pytest.mark.parametrize("route", ["/drip?every=0.05", "/stall", "/drip-headers"])
def test_slow_server_times_out_at_the_deadline(local_server, route: str) -> None:
    url = local_server.url(route)
    started = time.monotonic()
    with pytest.raises(FetchTimeout) as err:
        fetch_url(url, timed(0.5))
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert url in err.value.message


# --- HTTP errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [404, 500, 403])
def test_non_2xx_is_http_error_with_status(local_server, status: int) -> None:
    url = local_server.url(f"/status/{status}")
    with pytest.raises(FetchHTTPError) as err:
        fetch_url(url, ALLOW)
    assert err.value.status == status
    assert url in err.value.message and str(status) in err.value.message


def test_redirect_without_location_is_http_error(local_server) -> None:
    with pytest.raises(FetchHTTPError) as err:
        fetch_url(local_server.url("/status/302"), ALLOW)
    assert err.value.status == 302


# --- settings -----------------------------------------------------------------------------------
def test_policy_from_settings() -> None:
    settings = Settings(
        max_image_bytes=1234, fetch_timeout_s=2.5, fetch_max_redirects=2, allow_private_network=True
    )
    policy = FetchPolicy.from_settings(settings)
    assert (policy.max_bytes, policy.timeout_s, policy.max_redirects) == (1234, 2.5, 2)
    assert policy.allow_private_network is True
