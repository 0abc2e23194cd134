"""PUT/GET /v1/posts/{id}/labels on SQLite and PostgreSQL: per-key labels with who and when,
per-API-key isolation, validation errors as problem details, labels surviving a restart, and
`backfire eval --from-store` reading them back."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console

from tests.support.fakes import LatentSceneEncoder, latent_image
from workers.config import MODEL_CARDS_DIR
from workers.scenes.prompts import load_prompt_set
from workers.store import open_database
from workers.store.keys import create_key

NAMES = load_prompt_set(MODEL_CARDS_DIR / "scenes.yaml").names


def _upload(client, auth, post_id: str, present: set[str], seed: int, caption: str = "hi"):
    files = {"image": ("p.png", latent_image(NAMES, present, seed), "image/png")}
    r = client.post("/v1/posts", files=files, headers=auth,
                    data={"post_id": post_id, "hashtag": "myNYPD", "caption": caption})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_labels_per_key_with_who_and_when(client, auth, api_key):
    pid = _upload(client, auth, "a", {"restraint"}, 1)
    r = client.put(f"/v1/posts/{pid}/labels", headers=auth,
                   json={"scenes": ["restraint", "arrest", "restraint"], "verdict": "backlash"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["post"] == pid and body["post_id"] == "a"
    labels = body["labels"]
    assert labels["scenes"]["value"] == ["arrest", "restraint"]
    assert labels["verdict"]["value"] == "backlash"
    key_id = api_key.split("_")[1]
    assert labels["scenes"]["by"] == key_id and labels["scenes"]["at"].endswith("Z")
    assert "ironic" not in labels

    # Per key: a later PUT of one key leaves the others alone; null removes one.
    r = client.put(f"/v1/posts/{pid}/labels", headers=auth, json={"ironic": True})
    assert set(r.json()["labels"]) == {"scenes", "verdict", "ironic"}
    r = client.put(f"/v1/posts/{pid}/labels", headers=auth, json={"verdict": None})
    assert set(r.json()["labels"]) == {"scenes", "ironic"}
    r = client.put(f"/v1/posts/{pid}/labels", headers=auth, json={"scenes": []})
    assert r.json()["labels"]["scenes"]["value"] == []
    got = client.get(f"/v1/posts/{pid}/labels", headers=auth).json()
    assert got["labels"]["ironic"]["value"] is True and got["labels"]["scenes"]["value"] == []


def test_another_keys_post_is_404_and_bad_labels_are_problems(client, auth, api_settings):
    pid = _upload(client, auth, "mine", set(), 2)
    other = create_key(open_database(api_settings, upgrade=False), "other-team")
    other_auth = {"Authorization": f"Bearer {other}"}
    for method in (client.get, ):
        r = method(f"/v1/posts/{pid}/labels", headers=other_auth)
        assert r.status_code == 404 and r.json()["code"] == "not-found"
    r = client.put(f"/v1/posts/{pid}/labels", headers=other_auth, json={"verdict": "backlash"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/v1/posts/{pid}/labels", headers=auth).json()["labels"] == {}

    cases = [
        ({"scenes": ["kettle"]}, "Unknown scene(s) kettle"),
        ({"verdict": "sarcastic"}, "verdict"),
        ({"ironic": "perhaps"}, "ironic"),
        ({"mood": "grumpy"}, "mood"),
        ({}, "at least one label"),
    ]
    for body, words in cases:
        r = client.put(f"/v1/posts/{pid}/labels", headers=auth, json=body)
        assert r.status_code == 422, (body, r.text)
        p = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert p["status"] == 422 and p["type"].endswith("/invalid-request")
        assert words in p["detail"], (body, p)
    r = client.put("/v1/posts/nope/labels", headers=auth, json={"ironic": True})
    assert r.status_code == 404
    assert client.put(f"/v1/posts/{pid}/labels", json={"ironic": True}).status_code == 401


def test_labels_survive_a_restart_and_feed_eval_from_store(api_settings, tmp_path: Path):
    from service.app import create_app
    from workers.cli.evaluate import Source, run_eval

    db = open_database(api_settings)
    key = create_key(db, "labeller")
    auth = {"Authorization": f"Bearer {key}"}
    ids = {}
    with TestClient(create_app(api_settings)) as c:
        for i in range(12):
            present = {"restraint"} if i % 2 else set()
            ids[i] = _upload(c, auth, f"s{i}", present, 100 + i, caption="Free delivery")
            labels = {"scenes": sorted(present)}
            if i < 6:
                labels["verdict"] = "backlash" if i % 2 else "neutral"
            r = c.put(f"/v1/posts/{ids[i]}/labels", headers=auth, json=labels)
            assert r.status_code == 200, r.text
        _upload(c, auth, "unlabelled", set(), 999)
    db.dispose()

    with TestClient(create_app(api_settings)) as c:  # a new app on the same database
        got = c.get(f"/v1/posts/{ids[3]}/labels", headers=auth).json()
        assert got["labels"]["scenes"]["value"] == ["restraint"]
        assert got["labels"]["verdict"]["value"] == "backlash"

    settings = api_settings.model_copy(update={"caption_model_file": Path("cues-v0")})
    encoder = LatentSceneEncoder(load_prompt_set(settings.scenes_file))
    console = Console(file=io.StringIO())
    result = run_eval(settings, Source(None, from_store=True, hashtag="#myNYPD"), console,
                      rounds=0, encoder=encoder)  # fmt: skip
    assert result["posts"]["labelled"] == 12 and result["posts"]["scored"] == 12
    assert result["scenes"]["restraint"]["positives"] == 6
    assert result["scenes"]["restraint"]["roc_auc"] > 0.75  # the labels, not noise
    assert result["verdicts"]["labelled"] == 6
    assert result["source"] == "store #myNYPD"


def test_posts_can_be_filtered_on_the_review_flag(client, auth, api_settings):
    from workers.store import posts as repo

    db = open_database(api_settings, upgrade=False)
    ids = [_upload(client, auth, f"r{i}", set(), 300 + i) for i in range(3)]
    for i, public_id in enumerate(ids):
        seq = repo.get_post(db, None, public_id).post.seq
        assert repo.claim(db, seq, "v-test", 3) == "run"
        record = {"verdict": "neutral", "confidence": 0.5, "reasons": ["r"], "review": i == 1,
                  "review_reason": "confidence 0.50 below 0.60" if i == 1 else None}
        repo.record_result(db, seq, "v-test", record, detected=[], scoring_s=0.01)
    flagged = client.get("/v1/posts", headers=auth, params={"review": "true"}).json()["items"]
    assert [p["id"] for p in flagged] == [ids[1]]
    assert flagged[0]["review"] is True and "below" in flagged[0]["review_reason"]
    clear = client.get("/v1/posts", headers=auth, params={"review": "false"}).json()["items"]
    assert [p["id"] for p in clear] == [ids[0], ids[2]]
    assert client.get(f"/v1/posts/{ids[0]}", headers=auth).json()["review"] is False
