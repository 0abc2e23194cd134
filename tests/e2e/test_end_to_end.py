"""Upload → real `celery worker` (tiny real CLIP) → verdict, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import BLUE, RED, image_bytes
from tests.e2e.conftest import queue_settings_for
from tests.support.infra import wait_for
from workers.store import open_database
from workers.store.keys import create_key
from workers.store.models import SceneCacheRow, VerdictRow


def test_upload_to_verdict(backend, tiny_settings, worker_factory):
    settings = queue_settings_for(tiny_settings, backend).model_copy(
        update={"metrics_token": "e2e-metrics-token"}
    )
    from service.app import create_app

    with TestClient(create_app(settings)) as client:
        db = open_database(settings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'e2e')}"}
        worker_factory(settings)

        def post(colour, caption, post_id):
            files = {"image": ("p.jpg", image_bytes(colour), "image/jpeg")}
            data = {"caption": caption, "post_id": post_id, "hashtag": "myNYPD"}
            r = client.post("/v1/posts", files=files, data=data, headers=auth)
            assert r.status_code == 202, r.text
            return r.json()["id"]

        ids = [
            post(RED, "Free delivery, only at #myNYPD", "a"),
            post(RED, "Great day with the officers!", "b"),  # same image, other caption
            post(BLUE, "Nice picnic", "c"),
        ]
        assert post(BLUE, "again", "c") == ids[2]  # idempotent re-POST

        def all_done() -> bool:
            rows = [client.get(f"/v1/posts/{i}", headers=auth).json() for i in ids]
            return all(r["status"] == "done" for r in rows)

        wait_for(all_done, 120, "3 posts scored")
        rows = [client.get(f"/v1/posts/{i}", headers=auth).json() for i in ids]
        for r in rows:
            assert r["verdict"] in ("backlash", "supportive", "neutral", "off_topic")
            assert 0 <= r["confidence"] <= 1 and r["reasons"] is not None
            assert r["pipeline_version"].startswith("bf1-")
            assert set(r["scenes"]) and "sarcasm" in r["caption_scores"]
            assert r["attempts"] == 1
        assert rows[0]["caption_scores"] != rows[1]["caption_scores"]
        assert rows[0]["scenes"] == rows[1]["scenes"]
        with db.read() as s:
            # One verdict per post; the shared image went through the model once.
            assert s.scalar(select(func.count()).select_from(VerdictRow)) == 3
            assert s.scalar(select(func.count()).select_from(SceneCacheRow)) == 2

        summary = client.get("/v1/hashtags/myNYPD/summary", headers=auth).json()
        assert summary["posts"] == 3 and sum(summary["by_verdict"].values()) == 3
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"] >= 1
        m = client.get(
            "/metrics", headers={"Authorization": "Bearer e2e-metrics-token"}
        ).text
        assert 'backfire_posts{status="done"} 3.0' in m
        assert "backfire_scoring_seconds_count 3.0" in m
        t = time.monotonic()
        assert client.get("/healthz").status_code == 200 and time.monotonic() - t < 1
