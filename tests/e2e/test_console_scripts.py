"""`backfire serve` and `backfire worker`, started through the installed console script the way
a user starts them, score one upload end to end (tiny real CLIP, SQLite, the shared Redis)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import RED, image_bytes
from tests.support.infra import env_for, free_port, wait_for
from workers.store import open_database
from workers.store.keys import create_key

BACKFIRE = Path(sys.executable).parent / "backfire"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # uvicorn and celery both shut down cleanly on TERM
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_backfire_serve_and_worker_score_an_upload(qsettings, tmp_path):
    assert BACKFIRE.exists(), f"console script not installed at {BACKFIRE}"
    qsettings = qsettings.model_copy(update={"caption_model_file": None})  # the shipped default
    key = create_key(open_database(qsettings), "cli")  # also migrates before both start
    port = free_port()
    env = env_for(qsettings)
    procs = []
    try:
        with (tmp_path / "serve.log").open("wb") as serve_log, \
                (tmp_path / "worker.log").open("wb") as worker_log:  # fmt: skip
            procs.append(subprocess.Popen(
                [str(BACKFIRE), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                stdout=serve_log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            procs.append(subprocess.Popen(
                [str(BACKFIRE), "worker", "--concurrency", "1", "--reconcile-every", "0"],
                cwd=tmp_path, env=env, stdout=worker_log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, 60, "backfire serve")
            auth = {"Authorization": f"Bearer {key}"}
            r = httpx.post(
                f"{url}/v1/posts", headers=auth, timeout=30,
                files={"image": ("a.jpg", image_bytes(RED), "image/jpeg")},
                data={"caption": "Free delivery, only at #myNYPD", "hashtag": "myNYPD"},
            )  # fmt: skip
            assert r.status_code == 202, r.text
            status_url = f"{url}{r.json()['status_url']}"

            def scored() -> bool:
                return httpx.get(status_url, headers=auth, timeout=5).json()["status"] == "done"

            wait_for(scored, 120, "the worker to score the upload")
            got = httpx.get(status_url, headers=auth, timeout=5).json()
            assert got["verdict"] in ("backlash", "supportive", "neutral", "off_topic")
            assert got["pipeline_version"].startswith("bf1-") and got["attempts"] == 1
            assert got["caption_scores"]["model"].startswith("caption-sarcasm-v3-")
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["workers"] >= 1
    finally:
        for p in procs:
            _stop(p)
    assert all(p.returncode is not None for p in procs)
