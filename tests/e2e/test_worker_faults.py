"""The whole `backfire worker` under faults (issue 15, row 2; reliability plan T16 and T2): a
model that does not load, a worker that answers pings before any process holds a model, and
kill -9 of the worker's main process mid-batch. Real `backfire worker` processes, real Redis,
real API app, SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import image_bytes
from tests.support.infra import REPO, Worker, env_for, wait_for
from workers.config import Settings
from workers.store import open_database
from workers.store.keys import create_key
from workers.store.models import TERMINAL, PostRow, VerdictRow

EX_CONFIG = 78


def _client(settings: Settings) -> TestClient:
    from service.app import create_app

    return TestClient(create_app(settings))


def _upload(client: TestClient, auth: dict[str, str], i: int) -> str:
    colour = (i * 7 % 256, 255 - i * 5 % 256, (i * 13) % 256)  # distinct: no cache hits
    files = {"image": (f"{i}.png", image_bytes(colour, (64, 48), "PNG"), "image/png")}
    r = client.post("/v1/posts", files=files, data={"post_id": f"p{i}"}, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _rows(db) -> list[PostRow]:
    with db.read() as s:
        return list(s.scalars(select(PostRow).order_by(PostRow.seq)))


class BackfireWorker:
    """`backfire worker` as a subprocess (with the hooks of tests.support.crashy_app)."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.backfire_worker", "worker",
             "--concurrency", "1", "--loglevel", "INFO"],
            cwd=REPO, env=env_for(settings, **env), stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in self.children():
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def _truncated_checkpoint(settings: Settings, tmp_path: Path) -> Path:
    assert settings.checkpoint is not None
    data = settings.checkpoint.read_bytes()
    broken = tmp_path / f"truncated{settings.checkpoint.suffix}"
    broken.write_bytes(data[: len(data) // 3])  # a download cut short
    return broken


def test_worker_whose_model_does_not_load_refuses_work_and_exits_78(qsettings, tmp_path):
    """T16 / row 2. Before: it logged the load error, said "ready", acked 144 messages in 100 s
    without scoring any, and /readyz said 200."""
    broken = qsettings.model_copy(update={"checkpoint": _truncated_checkpoint(qsettings, tmp_path)})
    with _client(qsettings) as client:
        db = open_database(qsettings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
        for i in range(4):
            _upload(client, auth, i)

        bad = BackfireWorker(broken, tmp_path / "bad.log")
        try:
            code = bad.proc.wait(180)
        finally:
            bad.stop()
        log = bad.text()
        assert code == EX_CONFIG, log[-4000:]
        assert "CRITICAL" in log and "could not load the scoring model" in log, log[-4000:]
        # Nothing was taken: every post is still queued, with no attempt counted.
        assert [(r.status, r.attempts) for r in _rows(db)] == [("queued", 0)] * 4
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["workers"] == 0

        # The messages it held went back to the queue: a good worker (no reconciler: reconcile
        # is off in these settings) finishes every post, each at its first attempt.
        good = BackfireWorker(qsettings, tmp_path / "good.log")
        try:
            wait_for(lambda: all(r.status in TERMINAL for r in _rows(db)), 180,
                     "the good worker to finish the 4 posts")  # fmt: skip
        finally:
            good.stop()
        assert [(r.status, r.attempts) for r in _rows(db)] == [("done", 1)] * 4


def test_readyz_counts_only_workers_whose_model_is_loaded(qsettings, tmp_path):
    """A worker that answers pings while its process is still loading (or failing to load) its
    model does not make the service ready."""
    with _client(qsettings) as client:
        worker = Worker(qsettings, tmp_path / "w.log", app="tests.support.crashy_app",
                        BACKFIRE_TEST_LOAD_DELAY="15").start()  # fmt: skip
        try:
            r = client.get("/readyz")  # "ready." is logged before the pool child has loaded
            assert r.status_code == 503, r.text
            checks = r.json()["checks"]
            assert checks["workers"] == 0 and checks["workers_without_model"] == 1
            assert "none has its model loaded" in r.json()["detail"]
            wait_for(lambda: client.get("/readyz").status_code == 200, 120, "model loaded")
            assert client.get("/readyz").json()["workers"] == 1
        finally:
            worker.stop()


def test_kill_9_of_the_whole_worker_mid_batch_loses_nothing(qsettings, tmp_path):
    """T2: SIGKILL to `backfire worker`'s main process (its pool child dies with it) while a
    post is being scored. Redis keeps the unacked messages invisible for the visibility
    timeout (an hour); the restarted worker's reconciler sends the stale posts again."""
    settings = qsettings.model_copy(update={"reconcile_every_s": 1.0, "reconcile_after_s": 3.0})
    with _client(settings) as client:
        db = open_database(settings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
        for i in range(20):
            _upload(client, auth, i)

        first = BackfireWorker(settings, tmp_path / "first.log", BACKFIRE_TEST_TASK_DELAY="0.4")

        def scoring_after_some_done() -> bool:
            rows = _rows(db)
            done = sum(r.status == "done" for r in rows)
            return done >= 3 and any(r.status == "running" for r in rows)

        try:
            wait_for(scoring_after_some_done, 180, "3 posts done and one being scored",
                     every=0.05)  # fmt: skip
            children = first.children()
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            # The pool child dies with its parent (Celery sets PDEATHSIG): no orphan finishes
            # the post behind our back.
            wait_for(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 10,
                     "the pool child to die with its parent")  # fmt: skip
        finally:
            first.stop()
        interrupted = [r.seq for r in _rows(db) if r.status == "running"]
        left = [r.seq for r in _rows(db) if r.status not in TERMINAL]
        assert interrupted and len(left) > 1, "the kill did not land mid-batch"

        second = BackfireWorker(settings, tmp_path / "second.log")
        try:
            wait_for(lambda: all(r.status in TERMINAL for r in _rows(db)), 240,
                     "the restarted worker to finish the batch")  # fmt: skip
        finally:
            second.stop()
        rows = _rows(db)
        assert [r.status for r in rows] == ["done"] * 20
        with db.read() as s:
            per_post = s.execute(
                select(VerdictRow.post_seq, func.count()).group_by(VerdictRow.post_seq)
            ).all()
        assert len(per_post) == 20 and all(n == 1 for _, n in per_post)  # exactly once
        attempts = {r.seq: r.attempts for r in rows}
        assert all(attempts[q] == 2 for q in interrupted)  # counted: the killed try, the redo
        assert sum(attempts.values()) == 20 + len(interrupted)
