"""Queue benchmark: Celery + Redis round trip of a no-op task vs the real scoring task, and the
worker's RSS, against a real `celery worker` subprocess (prefork, concurrency 1).

    .venv/bin/python bench/bench_queue.py [--model tiny|vit-b-32|both] [--noop 300] [--score 30]

`tiny` is the test suite's tiny open_clip architecture; `vit-b-32` is open_clip ViT-B-32 with
random weights saved to a temp safetensors checkpoint (speed and memory do not depend on the
weight values). One message in flight at a time: the round trip is send → worker runs the task →
a `task_postrun` hook in the worker pushes the task id to a Redis list → this process pops it.
Each scored post has distinct bytes (no scene-cache hit); `scoring` is the pipeline time the
task records, so `round trip - scoring` is the queue's and the task's own overhead.
Prints figures, never asserts. This file is also the worker's Celery app (`-A bench_queue`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(HERE)]

NOOP_TASK = "bench.noop"
DONE_KEY_ENV = "BENCH_DONE_KEY"

if os.environ.get(DONE_KEY_ENV):  # imported by the worker: the bench app and its hooks
    import redis
    from celery import shared_task
    from celery.signals import task_postrun

    from workers.queue.app import app  # noqa: F401  (the app `celery -A bench_queue` finds)

    _done = redis.Redis.from_url(os.environ["BACKFIRE_REDIS_URL"])

    @shared_task(name=NOOP_TASK, ignore_result=True)
    def noop(i: int) -> int:
        return i

    @task_postrun.connect
    def _report(task_id: str | None = None, **_: Any) -> None:
        _done.lpush(os.environ[DONE_KEY_ENV], task_id or "")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def model_env(kind: str, tmp: Path) -> dict[str, str]:
    if kind == "tiny":
        from tests.support.fakes import make_tiny_clip

        cfg, ckpt = make_tiny_clip(tmp / "tiny")
        return {"BACKFIRE_MODEL_CONFIG_FILE": str(cfg), "BACKFIRE_CHECKPOINT": str(ckpt)}
    from bench_engine import make_checkpoint

    return {"BACKFIRE_MODEL_NAME": "ViT-B-32", "BACKFIRE_CHECKPOINT": str(make_checkpoint(tmp))}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs))) - 1))]


def fmt(xs: list[float]) -> str:
    return (f"p50 {statistics.median(xs) * 1000:7.1f} ms  p99 {pct(xs, 0.99) * 1000:7.1f} ms  "
            f"mean {statistics.fmean(xs) * 1000:7.1f} ms  (n={len(xs)})")  # fmt: skip


def run(kind: str, n_noop: int, n_score: int) -> None:
    import redis
    from bench_api import jpeg_200kb
    from celery import Celery

    from workers.config import Settings
    from workers.queue.app import SCORE_TASK
    from workers.store import open_database
    from workers.store import posts as repo
    from workers.store.blobs import BlobStore

    tmp = Path(tempfile.mkdtemp(prefix=f"bf-bench-queue-{kind}-"))
    tag = uuid.uuid4().hex[:8]
    done_key = f"bfbench-{tag}:done"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BACKFIRE_")},
        "BACKFIRE_DATA_DIR": str(tmp / "data"), "BACKFIRE_CACHE_DIR": str(tmp / "cache"),
        "BACKFIRE_REDIS_KEY_PREFIX": f"bfbench-{tag}", "BACKFIRE_QUEUE_NAME": f"bfbench-{tag}",
        "BACKFIRE_OFFLINE": "1", "BACKFIRE_RECONCILE_EVERY_S": "0",
        "BACKFIRE_REDIS_URL": os.environ.get("BACKFIRE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), DONE_KEY_ENV: done_key,
        **model_env(kind, tmp),
    }  # fmt: skip
    settings = Settings(
        data_dir=tmp / "data", cache_dir=tmp / "cache", redis_key_prefix=env[
            "BACKFIRE_REDIS_KEY_PREFIX"], queue_name=env["BACKFIRE_QUEUE_NAME"],
        redis_url=env["BACKFIRE_REDIS_URL"],
    )  # fmt: skip
    db = open_database(settings)
    blobs = BlobStore(settings.resolved_media_dir)
    from workers.queue.app import create_app

    app: Celery = create_app(settings)
    r = redis.Redis.from_url(settings.redis_url)
    log = (tmp / "worker.log").open("wb")
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench_queue", "worker", "--pool", "prefork",
         "--concurrency", "1", "-Q", settings.queue_name, "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "WARNING"],
        cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def wait_done(task_id: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = r.brpop([done_key], timeout=1)  # short blocks: under any socket timeout
            if got is not None and got[1].decode() == task_id:
                return
        raise SystemExit(f"no answer from the worker; see {tmp / 'worker.log'}")

    try:
        # First task: waits for the child to load the model (it loads before serving).
        warm = app.send_task(NOOP_TASK, args=[0])
        wait_done(warm.id)
        ready_s = time.perf_counter() - started
        noop_lat = []
        for i in range(n_noop):
            t = time.perf_counter()
            res = app.send_task(NOOP_TASK, args=[i])
            wait_done(res.id)
            noop_lat.append(time.perf_counter() - t)

        photo = jpeg_200kb()
        score_lat: list[float] = []
        seqs: list[int] = []
        for i in range(n_score + 1):  # the first one is a warm-up
            # A JPEG comment with a counter: distinct bytes, so no scene-cache hit.
            tagged = photo[:2] + b"\xff\xfe\x00\x0a" + f"{i:08d}".encode() + photo[2:]
            row, _ = repo.create_post(
                db, repo.NewPost(owner="bench", media_sha256=blobs.put(tagged),
                                 caption="Free delivery, only at #myNYPD")
            )  # fmt: skip
            t = time.perf_counter()
            res = app.send_task(SCORE_TASK, args=[row.seq])
            wait_done(res.id)
            if i:
                score_lat.append(time.perf_counter() - t)
                seqs.append(row.seq)
        scoring = []
        statuses = set()
        for seq in seqs:
            view = repo.get_by_seq(db, seq)
            assert view is not None
            statuses.add(view.post.status)
            if view.verdict is not None:
                scoring.append(view.verdict.scoring_s)
        kids = children(worker.pid)
        parent_rss = rss_mb(worker.pid)
        child_rss = sum(rss_mb(k) for k in kids)
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        for k in r.scan_iter(f"{env['BACKFIRE_REDIS_KEY_PREFIX']}:*"):
            r.delete(k)
        r.delete(done_key)

    shutil.rmtree(tmp, ignore_errors=True)  # checkpoint, store, log (kept only on failure)
    print(f"== model {kind}: worker ready (model loaded) {ready_s:.1f} s after start")
    print(f"  no-op task round trip:    {fmt(noop_lat)}")
    print(f"  scoring task round trip:  {fmt(score_lat)}  statuses {sorted(statuses)}")
    if scoring:
        over = [a - b for a, b in zip(score_lat, scoring, strict=False)]
        print(f"    of which pipeline time: {fmt(scoring)}")
        print(f"    queue + task overhead:  p50 {statistics.median(over) * 1000:.1f} ms")
    print(f"  worker RSS: main process {parent_rss:.0f} MB + pool child {child_rss:.0f} MB "
          f"= {parent_rss + child_rss:.0f} MB")  # fmt: skip
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["tiny", "vit-b-32", "both"], default="both")
    ap.add_argument("--noop", type=int, default=300)
    ap.add_argument("--score", type=int, default=30)
    args = ap.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}; torch threads in the "
          f"worker = cores / processes = {os.cpu_count()}; this process waits on Redis (idle)")
    for kind in ("tiny", "vit-b-32") if args.model == "both" else (args.model,):
        run(kind, args.noop, args.score)


if __name__ == "__main__":
    main()
