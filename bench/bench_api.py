"""Ingest benchmark: upload throughput and latency of `POST /v1/posts` (200 KB JPEG) against a
real uvicorn process with no worker running, so only ingest is measured (durable blob write,
committed row, publish to Redis). Also prints the API process RSS.

    .venv/bin/python bench/bench_api.py --seconds 20 --concurrency 16 [--uvicorn-workers 1]

Uses SQLite in a temp dir (or BACKFIRE_DATABASE_URL) and the Redis at BACKFIRE_REDIS_URL under
a throwaway key prefix. Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def jpeg_200kb() -> bytes:
    rng = np.random.default_rng(0)
    side = 360
    while True:
        arr = (rng.random((side, side, 3)) * 255).astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=85)
        if buf.tell() >= 190_000:
            return buf.getvalue()
        side += 20


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *_children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


async def load(url: str, key: str, data: bytes, seconds: float, concurrency: int):
    lat: list[float] = []
    codes: dict[int, int] = {}
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {key}"}) as c:

        async def one(worker: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                n += 1
                t = time.perf_counter()
                # Distinct post ids; the same bytes (dedup keeps the disk from filling).
                r = await c.post(
                    f"{url}/v1/posts",
                    files={"image": ("b.jpg", data, "image/jpeg")},
                    data={"caption": "bench", "post_id": f"w{worker}-{n}-{uuid.uuid4().hex[:6]}"},
                )
                lat.append(time.perf_counter() - t)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return lat, codes, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--uvicorn-workers", type=int, default=1)
    args = ap.parse_args()

    from workers.config import Settings
    from workers.store import open_database
    from workers.store.keys import create_key

    tmp = Path(tempfile.mkdtemp(prefix="bf-bench-"))
    env = {**os.environ, "BACKFIRE_DATA_DIR": str(tmp), "PYTHONPATH": str(REPO),
           "BACKFIRE_REDIS_KEY_PREFIX": f"bfbench-{uuid.uuid4().hex[:8]}",
           "BACKFIRE_RATE_LIMIT_PER_MINUTE": "0"}  # fmt: skip
    settings = Settings(data_dir=tmp, database_url=os.environ.get("BACKFIRE_DATABASE_URL"))
    key = create_key(open_database(settings), "bench")
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
         "--workers", str(args.uvicorn_workers), "--no-access-log", "--log-level", "warning"],
        cwd=REPO, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        data = jpeg_200kb()
        idle = rss_mb(proc.pid)
        asyncio.run(load(url, key, data, 2, 4))  # warm-up
        lat, codes, elapsed = asyncio.run(load(url, key, data, args.seconds, args.concurrency))
        busy = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        import redis  # drop the bench's queued messages from the shared Redis

        r = redis.Redis.from_url(settings.redis_url)
        for k in r.scan_iter(f"{env['BACKFIRE_REDIS_KEY_PREFIX']}:*"):
            r.delete(k)
    lat.sort()
    ok = codes.get(202, 0)
    print(f"image: {len(data) / 1000:.0f} KB JPEG; concurrency {args.concurrency}; "
          f"uvicorn workers {args.uvicorn_workers}; db {settings.resolved_database_url[:30]}")
    print(f"accepted uploads/s: {ok / elapsed:.1f}  (status counts {codes})")
    print(f"latency p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")
    print(f"API RSS: {idle:.0f} MB idle, {busy:.0f} MB after the run (all uvicorn processes)")


if __name__ == "__main__":
    main()
