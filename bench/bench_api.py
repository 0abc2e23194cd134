"""Ingest benchmark: upload throughput and latency of `POST /v1/posts` (200 KB JPEG) against a
real uvicorn process with no worker running, so only ingest is measured (durable blob write,
committed row, publish to Redis). Also prints the API process RSS.

    .venv/bin/python bench/bench_api.py --seconds 20 --concurrency 16 [--uvicorn-workers 1]
        [--load wrk|python] [--distinct] [--profile stacks.txt]

`--load wrk` (default when /usr/bin/wrk exists; Debian package `wrk`) drives the API with
`bench/wrk_upload.lua`, one wrk thread; `--load python` uses an httpx client. Either way the
load generator runs on the same machine and shares its cores with the API. `--distinct` sends
different bytes each time (wrk only), so every upload writes and fsyncs a new blob; otherwise
the content-addressed store finds the image already stored after the first upload.
`--profile FILE` samples the API process with py-spy during the run (collapsed stacks).

Uses SQLite in a temp dir (or BACKFIRE_DATABASE_URL) and the Redis at BACKFIRE_REDIS_URL under
a throwaway key prefix. Accepted uploads are counted in the database. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import resource
import shutil
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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children so far."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


def run_wrk(url: str, key: str, image: Path, seconds: float, concurrency: int, distinct: bool):
    """(latencies as p50/p90/p99/max in seconds, requests, non-2xx, socket errors, elapsed,
    CPU seconds wrk used)."""
    script = REPO / "bench" / "wrk_upload.lua"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s", "-s",
         str(script), url, "--", str(image), key, "1" if distinct else "0"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    f = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    errors = f["connect"] + f["read"] + f["write"] + f["timeout"]
    lat = {q: f[f"{q}_us"] / 1e6 for q in ("p50", "p90", "p99", "max")}
    return lat, f["requests"], f["non2xx"], errors, f["duration_us"] / 1e6, wrk_cpu


def count_posts(settings) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from workers.store import open_database
    from workers.store.models import PostRow

    db = open_database(settings, upgrade=False)
    with db.read() as s:
        n = s.scalar(select(func.count()).select_from(PostRow))
    db.dispose()
    return int(n or 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--uvicorn-workers", type=int, default=1)
    ap.add_argument("--load", choices=["wrk", "python"], default=None)
    ap.add_argument("--distinct", action="store_true", help="different bytes per upload (wrk)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy collapsed stacks here")
    args = ap.parse_args()
    load_kind = args.load or ("wrk" if shutil.which("wrk") else "python")
    load_before = os.getloadavg()[0]

    from workers.config import Settings
    from workers.store import open_database
    from workers.store.keys import create_key

    tmp = Path(tempfile.mkdtemp(prefix="bf-bench-"))
    # The rate limit stays on (a limit nobody reaches): its Redis INCR is part of every request.
    env = {**os.environ, "BACKFIRE_DATA_DIR": str(tmp), "PYTHONPATH": str(REPO),
           "BACKFIRE_REDIS_KEY_PREFIX": f"bfbench-{uuid.uuid4().hex[:8]}",
           "BACKFIRE_RATE_LIMIT_PER_MINUTE": "1000000000"}  # fmt: skip
    settings = Settings(data_dir=tmp, database_url=os.environ.get("BACKFIRE_DATABASE_URL"))
    key = create_key(open_database(settings), "bench")
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
         "--workers", str(args.uvicorn_workers), "--no-access-log", "--log-level", "warning"],
        cwd=REPO, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    spy: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        data = jpeg_200kb()
        image = tmp / "bench.jpg"
        image.write_bytes(data)
        idle = rss_mb(proc.pid)
        asyncio.run(load(url, key, data, 2, 4))  # warm-up
        before = count_posts(settings)
        cpu_before = cpu_s(proc.pid)
        if args.profile is not None:
            target = _children(proc.pid)[0] if args.uvicorn_workers > 1 else proc.pid
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(target),
                 "-d", str(int(args.seconds)), "-r", "200", "-f", "raw", "-o", str(args.profile),
                 "--nonblocking", *os.environ.get("BENCH_PYSPY_ARGS", "").split()],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        if load_kind == "wrk":
            q, n, non2xx, errors, elapsed, gen_cpu = run_wrk(
                url, key, image, args.seconds, args.concurrency, args.distinct
            )
            codes = {"non-2xx": non2xx, "socket errors": errors, "requests": n}
            gen_note = f"; wrk itself used {gen_cpu / elapsed * 100:.0f} % of one core"
        else:
            gen_note = "; the Python client runs in this process"
            lat, codes, elapsed = asyncio.run(
                load(url, key, data, args.seconds, args.concurrency)
            )  # fmt: skip
            lat.sort()
            q = {"p50": statistics.median(lat), "p90": lat[int(len(lat) * 0.9) - 1],
                 "p99": lat[int(len(lat) * 0.99) - 1], "max": lat[-1]}  # fmt: skip
        cpu_used = cpu_s(proc.pid) - cpu_before
        accepted = count_posts(settings) - before
        busy = rss_mb(proc.pid)
        if spy is not None:
            spy.wait(args.seconds + 30)
    finally:
        proc.terminate()
        proc.wait(10)
        import redis  # drop the bench's queued messages from the shared Redis

        r = redis.Redis.from_url(settings.redis_url)
        for k in r.scan_iter(f"{env['BACKFIRE_REDIS_KEY_PREFIX']}:*"):
            r.delete(k)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load generator: {load_kind} on this machine (shares the cores with the API); "
          f"load average (1 min) before the run {load_before:.2f}")
    bytes_kind = "distinct bytes" if args.distinct and load_kind == "wrk" else "same bytes"
    print(f"image: {len(data) / 1000:.0f} KB JPEG ({bytes_kind} per upload); "
          f"concurrency {args.concurrency}; uvicorn workers {args.uvicorn_workers}; "
          f"db {settings.resolved_database_url.split(':')[0]}")
    print(f"accepted uploads/s: {accepted / elapsed:.1f}  ({accepted} posts committed in "
          f"{elapsed:.1f} s; {codes})")
    print(f"latency p50 {q['p50'] * 1000:.1f} ms, p90 {q['p90'] * 1000:.1f} ms, "
          f"p99 {q['p99'] * 1000:.1f} ms, max {q['max'] * 1000:.1f} ms")
    print(f"API CPU: {cpu_used / elapsed * 100:.0f} % of one core, "
          f"{cpu_used / max(1, accepted) * 1000:.1f} ms CPU per accepted upload{gen_note}")
    print(f"API RSS: {idle:.0f} MB idle, {busy:.0f} MB after the run (all uvicorn processes)")


if __name__ == "__main__":
    main()
