"""Uploads → real `celery worker` (tiny real CLIP) → verdicts → the key's alert rule crosses →
exactly one alert reaches a receiver on 127.0.0.1. On PostgreSQL, where two workers could race
for a rule (the rules are locked per evaluation); the SQLite path is tested in tests/alerts."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import GREY, image_bytes
from tests.e2e.conftest import queue_settings_for
from tests.support.infra import fresh_pg_database, wait_for
from tests.support.receiver import Receiver
from workers.store import open_database
from workers.store.keys import create_key

# Random tiny-CLIP weights see "force" in every picture, so this policy lets the caption decide:
# a #sarcasm caption is backlash (mock praise: the marker x positive words x police presence),
# any other caption is neutral. With the shipped caption model and the grey test picture the
# #sarcasm caption's backlash score is ~0.18 (mock praise 0.30 x police presence 0.61) and the
# others' 0.0, so the threshold sits at 0.1, between them.
CAPTION_DECIDES = """
version: 2
backlash: {force: 0.0, critical_over_police: 0.0, mock_praise_over_police: 1.0, incongruity: 0.0}
supportive: {friendly: 0.0, sincere_over_police: 0.0, mock_praise_damping: 0.6}
caption: {sarcasm_floor: 0.95, sarcasm_full: 0.99, strong_cues: ["#sarcasm"],
          strong_cue_evidence: 0.9, stance_floor: 0.3, stance_full: 0.75,
          sentiment_stance_weight: 0.0}
thresholds: {backlash: 0.1, supportive: 1.0, off_topic: 1.0, police_presence: 0.5,
             stance_reason: 0.5, sarcasm_reason: 0.5, incongruity_reason: 0.3}
"""


def test_uploads_cross_a_rule_and_one_alert_arrives(tiny_settings, worker_factory, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(CAPTION_DECIDES)
    receiver = Receiver()
    with fresh_pg_database() as url:
        settings = queue_settings_for(tiny_settings, url).model_copy(update={"policy_file": policy})
        try:
            _run(settings, policy, receiver, worker_factory)
        finally:
            receiver.close()


def _run(settings, policy: Path, receiver: Receiver, worker_factory) -> None:
    from service.app import create_app

    with TestClient(create_app(settings)) as client:
        db = open_database(settings, upgrade=False)
        auth = {"Authorization": f"Bearer {create_key(db, 'e2e')}"}
        db.dispose()
        rule = {"hashtag": "myNYPD", "backlash_share": 0.5, "window": "1h", "min_posts": 4,
                "webhook": receiver.url}  # fmt: skip
        r = client.post("/v1/alerts", json=rule, headers=auth)
        assert r.status_code == 201, r.text
        rule_id = r.json()["id"]
        worker = worker_factory(settings, BACKFIRE_POLICY_FILE=str(policy))

        # 4 neutral posts, then 6 sarcastic ones, a minute apart: the share reaches 50 % at the
        # 8th post and stays above; one crossing, one alert.
        captions = ["Great day with the officers"] * 4 + ["Free delivery #sarcasm"] * 6
        ids = []
        for i, caption in enumerate(captions):
            files = {"image": ("p.jpg", image_bytes(GREY), "image/jpeg")}
            data = {"caption": caption, "post_id": f"p{i}", "hashtag": "#myNYPD",
                    "created_at": f"2014-04-22T14:{i:02d}:00Z"}  # fmt: skip
            r = client.post("/v1/posts", files=files, data=data, headers=auth)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

        def finished() -> bool:
            rows = [client.get(f"/v1/posts/{i}", headers=auth).json() for i in ids]
            last = client.get(f"/v1/alerts/{rule_id}", headers=auth).json()["last_delivery"]
            return all(p["status"] == "done" for p in rows) and (last or {}).get("state") == "sent"

        wait_for(finished, 120, "10 posts scored and the alert sent", every=0.5)
        verdicts = [client.get(f"/v1/posts/{i}", headers=auth).json()["verdict"] for i in ids]
        assert verdicts == ["neutral"] * 4 + ["backlash"] * 6
        worker.stop()  # before the database is dropped

    assert len(receiver.bodies) == 1 and receiver.hits == 1
    body = receiver.bodies[0]
    assert body["rule_id"] == rule_id and body["hashtag"] == "myNYPD"
    assert body["posts"] == 8 and body["backlash_posts"] == 4 and body["share"] == 0.5
    assert body["window_end"] == "2014-04-22T14:07:00Z"
    assert {p["post_id"] for p in body["top_posts"]} <= {f"p{i}" for i in range(4, 10)}
