"""The API under faults a hostile client or a broken deployment brings, against a real uvicorn
process on 127.0.0.1 where the behaviour is the server's (connections, reading, threads):

* a full media disk (a real 1 MB tmpfs, mounted in the server's own mount namespace): 507
  `storage-full` with Retry-After, the keep-alive connection kept, nothing accepted lost;
* an endless chunked upload: cut at the cap, the server stops reading and closes;
* a client that hangs up mid-upload: logged as such and counted as 499, not a 500;
* slow image URLs: downloads on their own pool with a per-key cap, /healthz unaffected;
* /metrics only with its token; refused keys limited per client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import http.server
import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import RED, image_bytes
from tests.support.infra import Api, new_prefix, wait_for
from tests.support.quiet_http import QuietHTTPServer
from workers.config import Settings
from workers.store import open_database
from workers.store.keys import create_key

METRICS_TOKEN = "metrics-" + "t" * 32


@pytest.fixture
def uv_settings(settings: Settings) -> Settings:
    """Settings for a uvicorn subprocess (SQLite in the test's data dir, own Redis prefix)."""
    prefix = new_prefix()
    return settings.model_copy(
        update={
            "redis_key_prefix": prefix,
            "queue_name": f"q-{prefix.rsplit('-', 1)[1]}",
            "rate_limit_per_minute": 10_000,
            "allow_private_network": True,
            "reconcile_every_s": 0.0,
        }
    )


@contextlib.contextmanager
def running_api(settings: Settings, log: Path, wrap: list[str] | None = None, **env: str):
    open_database(settings)  # migrated before the server starts
    env = {"BACKFIRE_METRICS_TOKEN": METRICS_TOKEN, **env}
    api = Api(settings, log, env=env, wrap=wrap).start()
    try:
        yield api
    finally:
        api.stop()


def _metrics(api: Api) -> str:
    r = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    return r.text


def _noise_png(seed: int, side: int = 300) -> bytes:
    """A PNG that does not compress (random pixels): ~side*side*3 bytes on disk."""
    rnd = hashlib.shake_256(str(seed).encode()).digest(side * side * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), rnd).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def _multipart(image: bytes, **fields: str) -> tuple[bytes, str]:
    boundary = "backfire-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


# --- T13: a full media disk ---------------------------------------------------------------------
def _can_mount_small_fs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt && touch /mnt/x"],
        capture_output=True,
    )  # fmt: skip
    return probe.returncode == 0


def test_full_media_disk_is_507_with_retry_after_keeps_the_connection_loses_nothing(
    uv_settings: Settings, tmp_path: Path
) -> None:
    if not _can_mount_small_fs():
        pytest.skip("needs `unshare --mount` and tmpfs to make a small real filesystem")
    media = tmp_path / "media"
    media.mkdir()
    settings = uv_settings.model_copy(update={"media_dir": media})
    # The server runs in its own mount namespace where BACKFIRE_MEDIA_DIR is a 1 MB tmpfs,
    # 40 % of it taken by a filler file: a real ENOSPC from the kernel, and gone with the
    # server. The test frees room by deleting the filler through /proc/<pid>/root.
    script = (
        'mount -t tmpfs -o size=1m tmpfs "$0" && head -c 409600 /dev/zero > "$0/.filler" '
        '&& exec "$@"'
    )
    wrap = ["unshare", "--mount", "--map-root-user", "sh", "-c", script, str(media)]
    key = create_key(open_database(settings), "disk")
    auth = {"Authorization": f"Bearer {key}"}
    images = [_noise_png(i) for i in range(4)]  # ~270 KB each: two fit, the third does not
    with running_api(settings, tmp_path / "api.log", wrap=wrap) as api:
        assert api.proc is not None
        inside = Path(f"/proc/{api.proc.pid}/root") / media.relative_to("/")
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        accepted: list[str] = []
        for i, image in enumerate(images):
            body, ctype = _multipart(image, post_id=f"p{i}", caption="Free delivery")
            conn.request("POST", "/v1/posts", body, {**auth, "Content-Type": ctype})
            r = conn.getresponse()
            data = r.read()
            if r.status != 202:
                break
            accepted.append(json.loads(data)["id"])
        assert len(accepted) == 2, (r.status, data)
        # What the client gets: a problem document it can act on, on a connection it keeps.
        assert r.status == 507, data
        assert r.getheader("Content-Type", "").startswith("application/problem+json")
        assert r.getheader("Retry-After") == str(settings.storage_full_retry_after_s)
        problem = json.loads(data)
        assert (
            problem["code"] == "storage-full"
            and "send the same request again" in (problem["detail"])
        )
        assert not r.will_close, r.getheaders()
        sock = conn.sock
        conn.request("GET", "/v1/posts?limit=500", headers=auth)
        listed = conn.getresponse()
        items = json.loads(listed.read())["items"]
        assert listed.status == 200 and conn.sock is sock  # the same connection served it
        assert [p["id"] for p in items] == accepted  # the refused upload left no row
        assert not list(inside.rglob(".tmp-*"))  # nor a half-written file

        (inside / ".filler").unlink()  # the operator makes room; no restart
        body, ctype = _multipart(images[2], post_id="p2", caption="Free delivery")
        conn.request("POST", "/v1/posts", body, {**auth, "Content-Type": ctype})
        again = conn.getresponse()
        assert again.status == 202, again.read()
        accepted.append(json.loads(again.read())["id"])
        conn.close()
        # Nothing accepted was lost: every post is listed and its bytes are whole.
        items = httpx.get(f"{api.url}/v1/posts", headers=auth).json()["items"]
        assert [p["id"] for p in items] == accepted
        for item, image in zip(items, images, strict=False):
            sha = item["media_sha256"]
            assert hashlib.sha256(image).hexdigest() == sha
            assert (inside / sha[:2] / sha[2:4] / sha).read_bytes() == image
        assert 'status="507"' in _metrics(api)
    log = (tmp_path / "api.log").read_text()
    assert "storage full" in log and "Traceback" not in log


# --- the body cap on an endless chunked body -------------------------------------------------
def _endless_chunked(port: int, head: bytes, limit_s: float = 20.0) -> tuple[int, bytes]:
    """Send a chunked body that never ends until the server stops taking it; returns the
    bytes the client managed to send and what the server answered."""
    chunk = b"\0" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline:
                s.sendall(frame)
                sent += len(frame)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        answer = b""
        with contextlib.suppress(OSError):
            while len(answer) < 65536:
                got = s.recv(65536)
                if not got:
                    break
                answer += got
    return sent, answer


def test_endless_chunked_upload_is_cut_at_the_cap_and_the_server_stops_reading(
    uv_settings: Settings, tmp_path: Path
) -> None:
    cap = 1024 * 1024
    settings = uv_settings.model_copy(update={"api_max_body_bytes": cap})
    key = create_key(open_database(settings), "chunks")
    log = tmp_path / "api.log"
    with running_api(settings, log, BACKFIRE_API_MAX_BODY_BYTES=str(cap)) as api:
        for who, auth in (
            ("a valid key", key),
            ("a refused key", "bf_0000000000000000_" + "x" * 43),
        ):
            head = (
                b"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n" + f"Authorization: Bearer {auth}\r\n\r\n".encode()
            )
            sent, answer = _endless_chunked(api.port, head)
            status = answer.split(b"\r\n", 1)[0]
            # The server answered and hung up: the client could send its cap plus what the two
            # kernels buffer, not the 20 s of 700 MB/s the server used to swallow.
            expected = b"HTTP/1.1 413" if who == "a valid key" else b"HTTP/1.1 401"
            assert status.startswith(expected), (
                who, answer[:300],
            )  # fmt: skip
            assert b"connection: close" in answer.lower(), answer[:300]
            assert sent < cap + 32 * 1024 * 1024, (who, sent)
            print(f"{who}: client sent {sent / 1e6:.1f} MB before the server closed")
    read = [
        int(n)
        for n in re.findall(r"cut off at the \d+-byte cap after (\d+) bytes", log.read_text())
    ]
    # The app stops at the first body message past the cap (one socket read: up to 256 KiB).
    assert read and all(n <= cap + 512 * 1024 for n in read), read


# --- a client that hangs up mid-upload ---------------------------------------------------------
def test_client_gone_mid_upload_is_a_499_not_a_500(uv_settings: Settings, tmp_path: Path) -> None:
    key = create_key(open_database(uv_settings), "gone")
    log = tmp_path / "api.log"
    with running_api(uv_settings, log) as api:
        body, ctype = _multipart(_noise_png(1), caption="half")
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
            s.sendall(
                f"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            time.sleep(0.3)  # the server is reading the body
        wait_for(lambda: 'status="499"' in _metrics(api), 20, "the 499 to be counted")
        metrics = _metrics(api)
        assert re.search(r'backfire_http_requests_total\{method="POST",route="/v1/posts",'
                         r'status="499"\} 1\.0', metrics), metrics  # fmt: skip
        assert 'status="500"' not in metrics
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api.url}/v1/posts", headers=auth).json()["items"] == []
    text = log.read_text()
    assert "client disconnected mid-request: POST /v1/posts" in text
    assert "Traceback" not in text and "unhandled error" not in text


# --- slow image URLs ---------------------------------------------------------------------------
class _Drip(http.server.BaseHTTPRequestHandler):
    """A 1 byte/s image server; `release` makes every request send the rest at once."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()
    active = 0
    lock = threading.Lock()
    photo = image_bytes(RED)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        cls = type(self)
        with cls.lock:
            cls.active += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(cls.photo)))
            self.end_headers()
            sent = 0
            while sent < len(cls.photo) and not cls.release.wait(1.0):
                self.wfile.write(cls.photo[sent : sent + 1])
                self.wfile.flush()
                sent += 1
            self.wfile.write(cls.photo[sent:])
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with cls.lock:
                cls.active -= 1


@pytest.fixture
def drip_server() -> Iterator[tuple[str, type[_Drip]]]:
    handler = type("Drip", (_Drip,), {"release": threading.Event(), "active": 0,
                                      "lock": threading.Lock()})  # fmt: skip
    httpd = QuietHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()


def test_slow_image_urls_get_their_own_pool_and_a_per_key_cap(
    uv_settings: Settings, tmp_path: Path, drip_server
) -> None:
    base, drip = drip_server
    db = open_database(uv_settings)
    keys = [create_key(db, f"k{i}") for i in range(3)]
    env = {
        "BACKFIRE_API_DOWNLOAD_THREADS": "8",
        "BACKFIRE_API_DOWNLOADS_PER_KEY": "4",
        "BACKFIRE_FETCH_TIMEOUT_S": "60",  # the drip must outlast the test, not time out
    }
    with running_api(uv_settings, tmp_path / "api.log", **env) as api:

        async def post(client: httpx.AsyncClient, key: str, i: int) -> httpx.Response:
            return await client.post(
                f"{api.url}/v1/posts", headers={"Authorization": f"Bearer {key}"},
                json={"image_url": f"{base}/p{i}.jpg", "post_id": f"u{i}"},
            )  # fmt: skip

        async def scenario() -> dict:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=90, limits=limits) as client:
                first = [asyncio.create_task(post(client, keys[0], i)) for i in range(45)]
                await _until(lambda: sum(t.done() for t in first) >= 41 and drip.active == 4)
                done = [t for t in first if t.done()]
                # Meanwhile the rest of the API answers as usual, on every key.
                health = await client.get(f"{api.url}/healthz", timeout=5)
                listing = await client.get(
                    f"{api.url}/v1/posts", headers={"Authorization": f"Bearer {keys[1]}"},
                    timeout=5,
                )  # fmt: skip
                more = [asyncio.create_task(post(client, keys[1], 100 + i)) for i in range(4)]
                await _until(lambda: drip.active == 8)
                full = await post(client, keys[2], 200)  # the pool's 8 slots are taken
                still_stuck = drip.active
                drip.release.set()
                results = await asyncio.gather(*first, *more)
                return {"done_early": [t.result() for t in done], "health": health,
                        "listing": listing, "full": full, "stuck": still_stuck,
                        "results": results}  # fmt: skip

        out = asyncio.run(scenario())
    refused = out["done_early"]
    assert len(refused) == 41  # answered at once, while the 4 downloads were still dripping
    for r in refused:
        assert r.status_code == 429 and r.json()["code"] == "too-many-downloads"
        assert int(r.headers["Retry-After"]) >= 1
    assert out["health"].status_code == 200 and out["listing"].status_code == 200
    assert out["stuck"] == 8  # healthz and the listing did not wait for any download
    full = out["full"]
    assert full.status_code == 503 and "download slots" in full.json()["detail"]
    assert "Retry-After" in full.headers
    codes = [r.status_code for r in out["results"]]
    assert codes.count(202) == 8 and codes.count(429) == 41, codes  # the accepted ones got in


async def _until(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- /metrics behind its token -----------------------------------------------------------------
def test_metrics_are_off_without_a_token_and_need_it_when_set(api_settings: Settings) -> None:
    from service.app import create_app

    with TestClient(create_app(api_settings)) as c:
        assert c.get("/metrics").status_code == 404
        assert "/metrics" not in c.get("/openapi.json").json()["paths"]
    with TestClient(
        create_app(api_settings.model_copy(update={"metrics_token": METRICS_TOKEN}))
    ) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated", headers
            assert r.headers["content-type"].startswith("application/problem+json")
        r = c.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert r.status_code == 200 and "backfire_posts" in r.text
        assert "/metrics" not in c.get("/openapi.json").json()["paths"]


# --- refused keys per client address ----------------------------------------------------------
def test_refused_keys_are_limited_per_address_and_unknown_ids_cost_what_known_ones_do(
    api_settings: Settings,
) -> None:
    import time

    from service.app import create_app

    # The limit counts refusals per calendar minute: start early in one, so a loaded machine
    # does not carry the block over a minute boundary (a new minute starts a new count).
    if time.time() % 60 > 30:
        time.sleep(60 - time.time() % 60 + 0.1)
    settings = api_settings.model_copy(update={"auth_failures_per_minute": 5})
    db = open_database(settings)
    good = create_key(db, "good")
    key_id = good.split("_")[1]
    app = create_app(settings)
    reads: list[str | None] = []
    with TestClient(app, client=("203.0.113.7", 4000)) as c:
        keys = app.state.ctx.keys
        real = keys.authenticate

        def counted(key: str | None):
            reads.append(key)
            return real(key)

        keys.authenticate = counted
        unknown = "bf_0123456789abcdef_" + "x" * 43
        wrong_secret = f"bf_{key_id}_" + "y" * 43
        assert c.get("/v1/posts", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        reads.clear()
        # A known id with a wrong secret and an unknown id: the same answer, the same path
        # (one database read each, then the cache, for both).
        for bogus in (unknown, wrong_secret, unknown, wrong_secret):
            r = c.get("/v1/posts", headers={"Authorization": f"Bearer {bogus}"})
            assert r.status_code == 401 and r.json()["detail"] == "The API key is not valid."
        assert reads == [unknown]  # the known id's row was cached by the good request
        # Five refusals a minute per address; the sixth and everything after get 429, the
        # valid key too (a guesser must not learn that a guess was right), without a lookup.
        assert c.get("/v1/posts", headers={"X-API-Key": "nonsense"}).status_code == 401
        r = c.get("/v1/posts", headers={"Authorization": "Bearer bf_00000000000000aa_" + "z" * 43})
        assert r.status_code == 429 and r.json()["code"] == "too-many-auth-failures"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        reads.clear()
        for _ in range(20):
            r = c.get(
                "/v1/posts", headers={"Authorization": "Bearer bf_00000000000000bb_" + "z" * 43}
            )
            assert r.status_code == 429
        assert c.get("/v1/posts", headers={"Authorization": f"Bearer {good}"}).status_code == 429
        assert reads == []  # a blocked address costs the database nothing
        assert c.get("/healthz").status_code == 200  # no key, no limit
    # Another API process (a new app: its own memory) learns the block from Redis at once;
    # another address is not affected.
    other = create_app(settings)
    with TestClient(other, client=("203.0.113.7", 4001)) as c:
        r = c.get("/v1/posts", headers={"Authorization": f"Bearer {unknown}"})
        assert r.status_code == 429
    with TestClient(other, client=("198.51.100.9", 4002)) as c:
        assert c.get("/v1/posts", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        assert c.get("/v1/posts", headers={"Authorization": f"Bearer {unknown}"}).status_code == 401
