"""`backfire score --resume` after `kill -9` at random points of a run whose media come from a
local HTTP server: the final output holds every input post exactly once, and media already in
the run's cache are never downloaded again. `make test` kills a 300-post run three times;
`make reproduce` a 2,000-post run five times.

Real subprocesses, the tiny open_clip model with random weights, the real fetcher and writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.support.quiet_http import QuietHTTPServer

N_IMAGES = 1500


class _Media:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        for i in range(N_IMAGES):
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (i % 256, (i // 256) * 40, 7)).save(buf, "JPEG")
            self.bodies[f"/img/{i}.jpg"] = buf.getvalue()
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()


def _handler(media: _Media) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            with media.lock:
                media.hits[self.path] += 1
            time.sleep(0.002)  # a little latency, so kills also land mid-download
            body = media.bodies.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The client may be killed mid-body: that is the point of the test.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler


@pytest.fixture
def media_server() -> Iterator[tuple[int, _Media]]:
    media = _Media()
    httpd = QuietHTTPServer(("127.0.0.1", 0), _handler(media))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1], media
    finally:
        httpd.shutdown()
        httpd.server_close()


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _cached_urls(cache: Path, urls: list[str]) -> set[str]:
    """URLs the run's media cache holds an index entry for (what a resume must not refetch)."""
    found = set()
    for url in urls:
        h = hashlib.sha256(url.encode()).hexdigest()
        if any(cache.glob(f"media-runs/*/urls/{h[:2]}/{h}")):
            found.add(url)
    return found


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "n_posts,rounds",
    [(300, 3), pytest.param(2000, 5, marks=pytest.mark.reproduce)],
    ids=["300-posts", "2000-posts"],
)
def test_kill_at_random_points_then_resume_scores_every_post_once(
    tmp_path: Path, tiny_clip: tuple[Path, Path], media_server: tuple[int, _Media],
    n_posts: int, rounds: int, fast_caption_env: dict[str, str],
) -> None:  # fmt: skip
    port, media = media_server
    rng = random.Random(os.environ.get("BACKFIRE_TEST_SEED", "5"))
    posts = tmp_path / "posts.jsonl"
    urls = [f"http://127.0.0.1:{port}/img/{i % N_IMAGES}.jpg" for i in range(n_posts)]
    with open(posts, "w") as f:
        for i, url in enumerate(urls):
            f.write(json.dumps({"post_id": f"p{i:04d}", "image": url, "caption": "#myNYPD"}) + "\n")
    cfg, ckpt = tiny_clip
    env = {
        **os.environ, "BACKFIRE_MODEL_CONFIG_FILE": str(cfg), "BACKFIRE_CHECKPOINT": str(ckpt),
        "BACKFIRE_OFFLINE": "1", "BACKFIRE_CACHE_DIR": str(tmp_path / "cache"),
        "BACKFIRE_DATA_DIR": str(tmp_path / "data"), "BACKFIRE_THREADS": "1",
        **fast_caption_env,
    }  # fmt: skip
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable, "-m", "workers.cli", "score", str(posts), "--out", str(out),
        "--resume", "--allow-private-network", "--no-progress",
    ]  # fmt: skip

    kills = 0
    for round_ in range(rounds):
        cached = _cached_urls(tmp_path / "cache", urls)
        with media.lock:
            media.hits.clear()
        before = _lines(out)
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # Round 0 dies while starting up (reading, loading the model); the others after a
        # random number of new rows, i.e. mid-download, mid-batch or mid-write.
        target = None if round_ == 0 else before + rng.randint(1, 300)
        deadline = time.monotonic() + (rng.uniform(0.5, 3.0) if target is None else 120)
        while proc.poll() is None and time.monotonic() < deadline:
            if target is not None and _lines(out) >= target:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        with media.lock:
            refetched = cached & {u for u in urls if media.hits[u.split(str(port), 1)[1]]}
        assert not refetched, f"round {round_}: {len(refetched)} cached media fetched again"

    assert kills >= rounds - 1  # the run must not have finished before we could kill it
    cached = _cached_urls(tmp_path / "cache", urls)
    with media.lock:
        media.hits.clear()
    final = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert final.returncode == 0, final.stderr[-2000:]
    with media.lock:
        refetched = cached & {u for u in urls if media.hits[u.split(str(port), 1)[1]]}
    assert not refetched

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["post_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a post appears twice"
    assert set(ids) == {f"p{i:04d}" for i in range(n_posts)}
    assert all(r["status"] == "ok" for r in rows)
    # The per-run cache is removed once the run completes.
    assert not any((tmp_path / "cache").glob("media-runs/*/urls"))
