"""Losing nothing: worker children killed mid-task, a post that kills its worker every time,
and Redis stopped while uploads keep coming. Real Celery worker, real Redis, SQLite store."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import image_bytes
from tests.support.infra import RedisServer, wait_for
from workers.store import open_database
from workers.store.keys import create_key
from workers.store.models import TERMINAL, PostRow, VerdictRow

CRASHY = "tests.support.crashy_app"


def _client(settings):
    from service.app import create_app

    return TestClient(create_app(settings))


def _upload(client, auth, i: int, caption: str = "a day out") -> str:
    colour = (i * 5 % 256, 255 - i * 3 % 256, (i * 11) % 256)  # distinct images: no cache hits
    files = {"image": (f"{i}.png", image_bytes(colour, (64, 48), "PNG"), "image/png")}
    r = client.post(
        "/v1/posts", files=files, data={"caption": caption, "post_id": f"p{i}"}, headers=auth
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _rows(db) -> list[PostRow]:
    with db.read() as s:
        return list(s.scalars(select(PostRow).order_by(PostRow.seq)))


@pytest.mark.reproduce
def test_kill_worker_child_five_times_in_a_50_post_batch(qsettings, worker_factory):
    """A long kill run (about a minute): `make reproduce`. `make test` kills a child through
    the quarantine test below and the whole worker in tests/e2e/test_worker_faults.py."""
    with _client(qsettings) as client:
        db = open_database(qsettings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
        worker = worker_factory(qsettings, app=CRASHY, BACKFIRE_TEST_TASK_DELAY="0.3")
        for i in range(50):
            _upload(client, auth, i)

        killed: set[int] = set()
        for _ in range(5):
            victim: list[int] = []

            def running_fresh_post() -> bool:
                with db.read() as s:
                    q = select(PostRow.seq).where(
                        PostRow.status == "running", PostRow.attempts == 1
                    )
                    seqs = s.scalars(q).all()
                fresh = [q for q in seqs if q not in killed]
                victim[:] = fresh[:1]
                return bool(fresh) and bool(worker.children())

            wait_for(running_fresh_post, 90, "a post being scored", every=0.05)
            worker.kill_child()  # SIGKILL mid-task (the task sleeps 0.3 s before scoring)
            killed.add(victim[0])

        wait_for(lambda: all(r.status in TERMINAL for r in _rows(db)), 240, "50 posts finished")
        rows = _rows(db)
        assert [r.status for r in rows] == ["done"] * 50
        with db.read() as s:
            per_post = s.execute(
                select(VerdictRow.post_seq, func.count()).group_by(VerdictRow.post_seq)
            ).all()
        assert len(per_post) == 50 and all(n == 1 for _, n in per_post)  # exactly once
        attempts = {r.seq: r.attempts for r in rows}
        assert len(killed) == 5 and all(attempts[q] == 2 for q in killed)
        assert sum(attempts.values()) == 55


def test_post_that_kills_its_worker_is_quarantined(qsettings, worker_factory):
    with _client(qsettings) as client:
        db = open_database(qsettings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
        worker_factory(qsettings, app=CRASHY)
        ids = [_upload(client, auth, i) for i in range(2)]
        poison = _upload(client, auth, 2, caption="KILL-WORKER: segfaults the decoder")
        ids += [_upload(client, auth, i) for i in range(3, 5)]

        def finished() -> bool:
            return all(r.status in TERMINAL for r in _rows(db))

        wait_for(finished, 180, "all posts finished or quarantined")
        bad = client.get(f"/v1/posts/{poison}", headers=auth).json()
        assert bad["status"] == "quarantined" and bad["attempts"] == 3
        assert bad["error"]["type"] == "worker-crashed" and "3 times" in bad["error"]["message"]
        assert bad["verdict"] is None
        for i in ids:
            assert client.get(f"/v1/posts/{i}", headers=auth).json()["status"] == "done"


def test_redis_outage_loses_no_accepted_post(qsettings, worker_factory):
    redis = RedisServer()
    redis.start()
    settings = qsettings.model_copy(
        update={"redis_url": redis.url, "reconcile_every_s": 1.0, "reconcile_after_s": 2.0}
    )
    try:
        with _client(settings) as client:
            db = open_database(settings, upgrade=False)
            auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
            worker_factory(settings)
            first = _upload(client, auth, 0)
            wait_for(
                lambda: client.get(f"/v1/posts/{first}", headers=auth).json()["status"] == "done",
                90, "first post",
            )  # fmt: skip

            redis.stop()
            accepted = []
            for i in range(1, 6):
                t = time.monotonic()
                files = {"image": ("x.png", image_bytes((i, 2 * i, 3 * i), (64, 48), "PNG"))}
                r = client.post("/v1/posts", files=files, data={"post_id": f"o{i}"}, headers=auth)
                assert time.monotonic() - t < 5, "an upload hung on the dead broker"
                assert r.status_code in (202, 503), r.text
                if r.status_code == 503:
                    assert "Retry-After" in r.headers
                else:
                    accepted.append(r.json()["id"])
            assert accepted, "no upload accepted while Redis was down"
            for i in accepted:  # reads still work from the database
                assert client.get(f"/v1/posts/{i}", headers=auth).json()["status"] == "queued"

            redis.start()  # same port, empty: every message sent before the outage is gone
            wait_for(
                lambda: all(
                    client.get(f"/v1/posts/{i}", headers=auth).json()["status"] == "done"
                    for i in accepted
                ),
                120, "reconciler to complete the accepted posts",
            )  # fmt: skip
    finally:
        redis.stop()


def _truncated_bmp() -> bytes:
    # The upload check reads JPEG and PNG pixels (422 when damaged) but only the header of other
    # formats: a truncated BMP is accepted, and its post fails in the worker.
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    noise = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(buf, "BMP")
    return buf.getvalue()[: buf.tell() // 2]


def test_exceptions_in_the_task_fail_retry_or_quarantine(qsettings, worker_factory, tmp_path):
    # No reconciler: every outcome below comes from the task itself, within seconds.
    settings = qsettings.model_copy(update={"task_retry_backoff_s": 0.2, "max_attempts": 3})
    with _client(settings) as client:
        db = open_database(settings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'k')}"}
        worker_factory(settings, app=CRASHY, BACKFIRE_TEST_MARK_DIR=str(tmp_path))
        good = _upload(client, auth, 0)
        bug = _upload(client, auth, 1, caption="RAISE-ERROR every time")
        flaky = _upload(client, auth, 2, caption="RAISE-ONCE then fine")
        files = {"image": ("t.bmp", _truncated_bmp(), "image/bmp")}
        r = client.post("/v1/posts", files=files, data={"post_id": "trunc"}, headers=auth)
        assert r.status_code == 202, r.text
        truncated = r.json()["id"]

        wait_for(lambda: all(r.status in TERMINAL for r in _rows(db)), 120, "4 posts finished")
        got = {i: client.get(f"/v1/posts/{i}", headers=auth).json() for i in
               (good, bug, flaky, truncated)}  # fmt: skip
        assert got[good]["status"] == "done" and got[good]["attempts"] == 1
        # A bad image fails its post at the first attempt, with the reason; no retry.
        t = got[truncated]
        assert t["status"] == "failed" and t["attempts"] == 1
        assert t["error"]["type"] == "image-truncated"
        # A transient error is retried by Celery and the post completes.
        assert got[flaky]["status"] == "done" and got[flaky]["attempts"] == 2
        assert got[flaky]["verdict"] is not None
        # A persistent error is retried up to max_attempts, then quarantined with the last error.
        b = got[bug]
        assert b["status"] == "quarantined" and b["attempts"] == 3 and b["verdict"] is None
        assert b["error"]["type"] == "scoring-error"
        assert "RuntimeError: scorer bug" in b["error"]["message"]
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(VerdictRow)) == 3  # not `bug`
