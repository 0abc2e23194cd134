"""Fetching at scale against a real HTTP server on 127.0.0.1 that misbehaves on purpose: slow
bodies, 500s then success, 429 with Retry-After, a redirect to a private address, an oversized
body, the wrong content type. The right posts succeed, the rest carry the right error, nothing
hangs, and cached media are never fetched twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import GREEN, RED, image_bytes
from tests.support.fakes import ColourSceneEncoder
from tests.support.quiet_http import QuietHTTPServer
from workers.config import Settings
from workers.domain import Post
from workers.errors import FetchHTTPError
from workers.media.fetcher import FetcherConfig, MediaCache, MediaFetcher, parse_retry_after
from workers.net.guard import FetchPolicy
from workers.scoring.pipeline import Pipeline
from workers.scoring.runner import Runner

PHOTO = image_bytes(RED, (64, 48))
OTHER = image_bytes(GREEN, (64, 48))


@dataclass
class Faults:
    """What the server saw: requests per path, request times, the most concurrent requests."""

    hits: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)
    active: int = 0
    peak: int = 0
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    faults: Faults

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/jpeg", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        f = self.faults
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with f.lock:
            f.hits[self.path] += 1
            n = f.hits[self.path]
            f.times.setdefault(self.path, []).append(time.monotonic())
            f.active += 1
            f.peak = max(f.peak, f.active)
        try:
            if f.delay_s:
                time.sleep(f.delay_s)
        finally:
            # Counted out before the answer is written: once the client has the last byte it
            # may free its slot and send the next request while this thread is still unwinding,
            # and a loaded machine would then see one request too many "at once".
            with f.lock:
                f.active -= 1
        with suppress(BrokenPipeError, ConnectionResetError):
            self._route(parts.path, q, n)

    def _route(self, path: str, q: dict[str, str], n: int) -> None:
        if path.startswith("/ok/"):
            self._send(200, OTHER if "other" in path else PHOTO)
        elif path.startswith("/flaky/"):  # 500 `fail` times, then the picture
            if n <= int(q.get("fail", "2")):
                self._send(500, b"oops", "text/plain")
            else:
                self._send(200, PHOTO)
        elif path.startswith("/limited/"):  # 429 + Retry-After once, then the picture
            if n == 1:
                self._send(429, b"slow down", "text/plain", Retry_After=q.get("after", "1"))
            else:
                self._send(200, PHOTO)
        elif path == "/slow":  # headers, then a body dripping far slower than the deadline
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/to-private":
            self._send(302, b"", Location="http://10.0.0.7/photo.jpg")
        elif path == "/to-metadata":
            self._send(302, b"", Location="http://169.254.169.254/latest/meta-data/")
        elif path == "/huge":
            self._send(200, b"\xff\xd8" + b"x" * 300_000)
        elif path == "/html":
            self._send(200, b"<html><body>Sign in to see this photo</body></html>", "text/html")
        else:
            self._send(404, b"no such picture", "text/plain")


@dataclass
class Server:
    port: int
    faults: Faults

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    faults = Faults()
    handler = type("Handler", (_Handler,), {"faults": faults})
    httpd = QuietHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield Server(httpd.server_address[1], faults)
    finally:
        httpd.shutdown()
        httpd.server_close()


# 127.0.0.1 is allowed by name only: any redirect elsewhere private is still refused.
POLICY = FetchPolicy(max_bytes=200_000, timeout_s=1.0, private_hosts=frozenset({"127.0.0.1"}))
# A post's whole download may take 2.5 s: the slow body gets two or three 1 s tries, never four.
FAST = FetcherConfig(
    concurrency=8, per_host=4, retries=3, backoff_s=0.05, retry_after_max_s=5, post_deadline_s=2.5
)


@pytest.fixture
def fake_pipeline(settings: Settings) -> Pipeline:
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(settings.scenes_file)
    encoder = ColourSceneEncoder(prompts, {RED: "restraint", GREEN: "friendly"})
    return Pipeline(
        encoder, prompts, CueCaptionScorer(), load_policy(settings.policy_file), settings
    )


@pytest.mark.timeout(60)
def test_faulty_server_right_posts_succeed_rest_carry_the_right_error(
    server: Server, fake_pipeline: Pipeline, tmp_path: Path
) -> None:
    routes = {
        "ok": ("/ok/a.jpg", None),
        "flaky": ("/flaky/b.jpg?fail=2", None),
        "limited": ("/limited/c.jpg?after=1", None),
        "slow": ("/slow", "fetch-timeout"),
        "private": ("/to-private", "fetch-blocked-address"),
        "metadata": ("/to-metadata", "fetch-blocked-address"),
        "huge": ("/huge", "fetch-too-large"),
        "html": ("/html", "fetch-not-an-image"),
        "missing": ("/missing.jpg", "fetch-http-error"),
    }
    posts = [Post(name, server.url(path), "Free delivery #myNYPD")
             for name, (path, _) in routes.items()]
    rows: list[dict] = []
    fetcher = MediaFetcher(POLICY, FAST, MediaCache(tmp_path / "cache"))
    runner = Runner(fake_pipeline, POLICY, 2, fetcher=fetcher, fetch_ahead=16)
    started = time.monotonic()
    with fetcher:
        stats = runner.run(posts, rows.append)
    elapsed = time.monotonic() - started

    by_id = {r["post_id"]: r for r in rows}
    assert len(rows) == len(routes)
    for name, (path, code) in routes.items():
        row = by_id[name]
        if code is None:
            assert row["status"] == "ok", row
        else:
            assert row["status"] == "error", row
            assert row["error"]["type"] == code, row["error"]
            assert server.url(path) in row["error"]["message"]  # the row names the URL
    assert stats.ok == 3 and stats.failed == 6
    # Retries: 500 twice then success; 429 once. The slow body is retried only while the post's
    # deadline lasts (it used to get all 4 tries, 4 x the per-try timeout): no try starts after
    # the deadline, and the error names it.
    hits = server.faults.hits
    assert hits["/flaky/b.jpg?fail=2"] == 3
    assert hits["/limited/c.jpg?after=1"] == 2
    assert 2 <= hits["/slow"] <= 3, hits["/slow"]
    assert "within the post's deadline of 2.5 s" in by_id["slow"]["error"]["message"]
    slow = server.faults.times["/slow"]
    assert slow[-1] - slow[0] < 2.5 + 0.5  # (server-side times: 0.5 s for the loopback trip)
    assert hits["/missing.jpg"] == 1 and hits["/huge"] == 1 and hits["/to-private"] == 1
    t = server.faults.times["/limited/c.jpg?after=1"]
    assert t[1] - t[0] >= 0.95  # Retry-After: 1 honoured, not just the 50 ms backoff
    assert elapsed < 30  # nothing hangs: the slow body is cut at its deadline


@pytest.mark.timeout(60)
def test_cached_media_are_not_fetched_again(server: Server, tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache")
    urls = [server.url(f"/ok/{i}.jpg") for i in range(5)]
    with MediaFetcher(POLICY, FAST, cache) as f:
        first = [f.submit(u).result() for u in urls]
    hits_before = sum(server.faults.hits.values())
    with MediaFetcher(POLICY, FAST, MediaCache(tmp_path / "cache")) as f:
        again = [f.submit(u).result() for u in urls]
        assert f.stats.cache_hits == 5 and f.stats.downloaded == 0
    assert again == first
    assert sum(server.faults.hits.values()) == hits_before
    # Content-addressed: five URLs with identical bytes are one blob on disk.
    assert len(list((tmp_path / "cache" / "blobs").rglob("*"))) == 2  # one folder, one blob


def test_damaged_cache_blob_is_a_miss_not_wrong_bytes(server: Server, tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache")
    url = server.url("/ok/a.jpg")
    sha = cache.put(url, PHOTO)
    (tmp_path / "cache" / "blobs" / sha[:2] / sha).write_bytes(b"garbage")
    assert cache.get(url) is None


@pytest.mark.timeout(60)
def test_same_url_in_flight_is_downloaded_once_and_per_host_limit_holds(
    server: Server,
) -> None:
    server.faults.delay_s = 0.1
    config = FetcherConfig(concurrency=12, per_host=3, retries=0)
    with MediaFetcher(POLICY, config) as f:
        shared = [f.submit(server.url("/ok/same.jpg")) for _ in range(5)]
        many = [f.submit(server.url(f"/ok/{i}.jpg")) for i in range(12)]
        assert all(x.result() == PHOTO for x in shared + many)
        assert f.stats.shared_in_flight == 4
    assert server.faults.hits["/ok/same.jpg"] == 1
    assert server.faults.peak <= 3


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    f = MediaFetcher(POLICY, FetcherConfig(backoff_s=1.0, backoff_max_s=8.0))
    try:
        err = FetchHTTPError("x: HTTP 500", status=500)
        for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 8.0)]:
            delays = [f._delay(err, attempt) for _ in range(50)]
            assert all(base / 2 <= d <= base for d in delays)
            assert len(set(delays)) > 1  # jittered
        limited = FetchHTTPError("x: HTTP 429", status=429)
        limited.retry_after = "7"  # type: ignore[attr-defined]
        assert f._delay(limited, 1) == 7.0
        limited.retry_after = "3600"  # type: ignore[attr-defined]
        assert f._delay(limited, 1) == 60.0  # capped by retry_after_max_s
    finally:
        f.close()


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0


@pytest.mark.timeout(60)
def test_a_wait_past_the_posts_deadline_is_not_waited(server: Server) -> None:
    """A 429 asking for 30 s (capped at 5 s) when 2.5 s is all the post has: no sleep that
    cannot end in time, the server's answer in the error, and the deadline named."""
    url = server.url("/limited/d.jpg?after=30")
    started = time.monotonic()
    with MediaFetcher(POLICY, FAST) as f, pytest.raises(FetchHTTPError) as caught:
        f.get(url)
    assert time.monotonic() - started < 2.5
    assert server.faults.hits["/limited/d.jpg?after=30"] == 1
    message = caught.value.message
    assert "HTTP 429" in message and "within the post's deadline of 2.5 s" in message
    assert caught.value.status == 429
