"""The API under the faults of issue 15, against a real uvicorn process on 127.0.0.1: prints
figures and ratios measured in one run, never asserts.

    .venv/bin/python bench/bench_api_faults.py [--skip-fetch]

* /healthz latency while 45 `image_url` posts wait on a 1 byte/s server (from one key, as the
  issue's probe did, then spread over 12 keys so every download slot is taken), against the
  same server's idle latency measured first; an authenticated listing too;
* bytes an endless chunked upload gets into the server before it is cut off and closed (the
  client's count includes what the two kernels buffer; the server's log says what the app read);
* authentication time of a known key id with a wrong secret against an unknown key id
  (repeated, and a fresh one each time), interleaved so drift hits both alike;
* a post's total time at a 1 byte/s server with the batch fetcher as `backfire score` builds it
  from the default settings (per-try timeout 10 s, post deadline 15 s; 83 s before).

Uses SQLite in a temp dir and the Redis at BACKFIRE_REDIS_URL under a throwaway key prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Drip(http.server.BaseHTTPRequestHandler):
    """An image server that sends one byte a second until `release` is set."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()
    body = b"\xff\xd8\xff" + b"\0" * 5000

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            sent = 0
            while sent < len(self.body) and not self.release.wait(1.0):
                self.wfile.write(self.body[sent : sent + 1])
                self.wfile.flush()
                sent += 1
            self.wfile.write(self.body[sent:])
        except (BrokenPipeError, ConnectionResetError):
            pass


def serve(handler: type) -> tuple[http.server.ThreadingHTTPServer, str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"


async def timed_gets(client: httpx.AsyncClient, url: str, n: int, **kw) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(url, **kw)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return out


async def slow_url_phase(api: str, keys: list[str], drip: str, posts: int) -> dict:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        base_h = await timed_gets(client, f"{api}/healthz", 50)
        auth0 = {"Authorization": f"Bearer {keys[0]}"}
        base_l = await timed_gets(client, f"{api}/v1/posts?limit=5", 20, headers=auth0)

        async def post(i: int) -> httpx.Response:
            key = keys[i % len(keys)]
            return await client.post(
                f"{api}/v1/posts", headers={"Authorization": f"Bearer {key}"},
                json={"image_url": f"{drip}/{uuid.uuid4().hex}.jpg"},
            )  # fmt: skip

        tasks = [asyncio.create_task(post(i)) for i in range(posts)]
        await asyncio.sleep(2.0)  # the downloads are under way and dripping
        stalled_h = await timed_gets(client, f"{api}/healthz", 30)
        stalled_l = await timed_gets(client, f"{api}/v1/posts?limit=5", 20, headers=auth0)
        early = [t.result().status_code for t in tasks if t.done()]
        Drip.release.set()
        codes = [r.status_code for r in await asyncio.gather(*tasks)]
        Drip.release.clear()
    return {"base_h": base_h, "base_l": base_l, "stalled_h": stalled_h, "stalled_l": stalled_l,
            "early": early, "codes": codes}  # fmt: skip


def endless_chunked(port: int, key: str, limit_s: float = 30.0) -> tuple[int, float, str]:
    chunk = b"\0" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n" + f"Authorization: Bearer {key}\r\n\r\n".encode()
        )
        try:
            while time.perf_counter() - t < limit_s:
                s.sendall(frame)
                sent += len(frame)
        except OSError:
            pass
        elapsed = time.perf_counter() - t
        try:
            answer = s.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
        except OSError as e:
            answer = f"(no answer read: {e})"
    return sent, elapsed, answer


async def auth_timing(
    api: str, known_id: str, unused_ids: list[str], n: int
) -> dict[str, list[float]]:
    """`unused_ids`: n known ids this API process has not seen yet, one per round, so that their
    first (uncached) read is timed against a fresh unknown id's."""
    wrong = f"bf_{known_id}_" + "w" * 43
    unknown = f"bf_{secrets.token_hex(8)}_" + "w" * 43
    out: dict[str, list[float]] = {"known id, wrong secret": [], "unknown id (repeated)": [],
                                   "unknown id (fresh each time)": [],
                                   "known id never used before (fresh each time)": []}  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):  # warm-up: both rows read once and cached
            for k in (wrong, unknown):
                await client.get(f"{api}/v1/posts", headers={"Authorization": f"Bearer {k}"})
        for i in range(n):
            for name, k in (("known id, wrong secret", wrong), ("unknown id (repeated)", unknown),
                            ("unknown id (fresh each time)",
                             f"bf_{secrets.token_hex(8)}_" + "w" * 43),
                            ("known id never used before (fresh each time)",
                             f"bf_{unused_ids[i]}_" + "w" * 43)):  # fmt: skip
                t = time.perf_counter()
                r = await client.get(f"{api}/v1/posts", headers={"Authorization": f"Bearer {k}"})
                out[name].append(time.perf_counter() - t)
                assert r.status_code == 401, r.text
    return out


def fetch_total_time() -> tuple[float, str]:
    """One post's download at a 1 byte/s server, with the fetcher `backfire score` builds."""
    from workers.config import Settings
    from workers.errors import FetchError
    from workers.media.fetcher import FetcherConfig, MediaFetcher
    from workers.net.guard import FetchPolicy

    settings = Settings()
    policy = FetchPolicy.from_settings(settings)
    policy = FetchPolicy(policy.max_bytes, policy.timeout_s, private_hosts=frozenset({"127.0.0.1"}))
    httpd, url = serve(type("Drip2", (Drip,), {"release": threading.Event()}))
    try:
        with MediaFetcher(policy, FetcherConfig.from_settings(settings)) as f:
            t = time.perf_counter()
            try:
                f.get(f"{url}/slow.jpg")
                what = "downloaded (unexpected)"
            except FetchError as e:
                what = e.message
            return time.perf_counter() - t, what
    finally:
        httpd.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-fetch", action="store_true", help="skip the 15 s fetcher figure")
    ap.add_argument("--auth-requests", type=int, default=300)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared: compare ratios)")

    from workers.config import Settings
    from workers.store import open_database
    from workers.store.keys import create_key

    tmp = Path(tempfile.mkdtemp(prefix="bf-faults-"))
    env = {**os.environ, "BACKFIRE_DATA_DIR": str(tmp), "PYTHONPATH": str(REPO),
           "BACKFIRE_REDIS_KEY_PREFIX": f"bfbench-{uuid.uuid4().hex[:8]}",
           "BACKFIRE_RATE_LIMIT_PER_MINUTE": "1000000000",
           "BACKFIRE_AUTH_FAILURES_PER_MINUTE": "0",  # timing many refusals needs it off
           "BACKFIRE_ALLOW_PRIVATE_NETWORK": "1",
           "BACKFIRE_FETCH_TIMEOUT_S": "60"}  # the drip outlasts the measurement  # fmt: skip
    settings = Settings(data_dir=tmp)
    db = open_database(settings)
    keys = [create_key(db, f"bench{i}") for i in range(12)]
    unused = [create_key(db, f"unused{i}").split("_")[1] for i in range(args.auth_requests)]
    port = 18000 + os.getpid() % 1000
    log = tmp / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
             "--no-access-log"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    api = f"http://127.0.0.1:{port}"
    httpd, drip = serve(Drip)
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{api}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        print("\n/healthz while 45 image_url posts wait on a 1 byte/s server (was 18.7 s):")
        for label, ks in (("one key", keys[:1]), ("12 keys", keys)):
            r = asyncio.run(slow_url_phase(api, ks, drip, 45))
            ratio = statistics.median(r["stalled_h"]) / statistics.median(r["base_h"])
            print(f"  {label}: idle {ms(r['base_h'])}; stalled {ms(r['stalled_h'])}; "
                  f"ratio of medians {ratio:.2f}")  # fmt: skip
            ratio_l = statistics.median(r["stalled_l"]) / statistics.median(r["base_l"])
            print(f"    GET /v1/posts: idle {ms(r['base_l'])}; stalled {ms(r['stalled_l'])}; "
                  f"ratio {ratio_l:.2f}")  # fmt: skip
            early = {c: r["early"].count(c) for c in sorted(set(r["early"]))}
            final = {c: r["codes"].count(c) for c in sorted(set(r["codes"]))}
            print(f"    answered during the stall: {early}; all answers: {final}")

        cap = settings.api_max_body_bytes
        sent, elapsed, answer = endless_chunked(port, keys[0])
        read = re.findall(r"after (\d+) bytes; closing", log.read_text())
        print(f"\nendless chunked upload (cap {cap / 2**20:g} MiB): server answered {answer!r}; "
              f"the client sent {sent / 1e6:.1f} MB in {elapsed:.2f} s before the connection "
              f"closed (was: 419 MB in 0.6 s and on); the app read "
              f"{int(read[-1]) / 1e6 if read else float('nan'):.2f} MB")  # fmt: skip

        t = asyncio.run(auth_timing(api, keys[0].split("_")[1], unused, args.auth_requests))
        known = statistics.median(t["known id, wrong secret"])
        print(f"\nauthentication, {args.auth_requests} refused requests each (interleaved):")
        for name, xs in t.items():
            print(f"  {name}: {ms(xs)}; median / known's {statistics.median(xs) / known:.2f}")
    finally:
        Drip.release.set()
        proc.terminate()
        proc.wait(10)
        httpd.shutdown()
    if not args.skip_fetch:
        total, what = fetch_total_time()
        print(f"\na post at a 1 byte/s server, batch fetcher with the default settings: "
              f"{total:.1f} s (was 83 s)\n  {what}")  # fmt: skip


if __name__ == "__main__":
    main()
