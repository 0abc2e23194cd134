"""/v1/alerts (per-key rules, SSRF-checked webhooks) and /v1/hashtags/{tag}/report (one key's
posts, served with the page's own Content-Security-Policy)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import BLUE, GREEN, RED, image_bytes
from workers.config import Settings
from workers.report.render import CSP
from workers.store import open_database
from workers.store import posts as repo
from workers.store.keys import create_key

RULE = {"hashtag": "#myNYPD", "backlash_share": 0.3, "window": "30m", "min_posts": 5,
        "webhook": "http://127.0.0.1:9/hook"}  # fmt: skip


def other_key(api_settings: Settings) -> dict[str, str]:
    db = open_database(api_settings, upgrade=False)
    try:
        return {"Authorization": f"Bearer {create_key(db, 'other-team')}"}
    finally:
        db.dispose()


def test_alert_rules_per_key(client: TestClient, auth, api_settings) -> None:
    r = client.post("/v1/alerts", json=RULE, headers=auth)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["hashtag"] == "myNYPD" and rule["window_seconds"] == 1800
    assert rule["armed"] and rule["fired"] == 0 and rule["last_delivery"] is None
    assert r.headers["location"] == f"/v1/alerts/{rule['id']}"
    assert [x["id"] for x in client.get("/v1/alerts", headers=auth).json()["items"]] == [rule["id"]]
    assert client.get(f"/v1/alerts/{rule['id']}", headers=auth).json()["min_posts"] == 5

    other = other_key(api_settings)
    assert client.get("/v1/alerts", headers=other).json()["items"] == []
    assert client.get(f"/v1/alerts/{rule['id']}", headers=other).status_code == 404
    gone = client.delete(f"/v1/alerts/{rule['id']}", headers=other)
    assert gone.status_code == 404 and gone.json()["code"] == "not-found"

    assert client.delete(f"/v1/alerts/{rule['id']}", headers=auth).status_code == 204
    assert client.get("/v1/alerts", headers=auth).json()["items"] == []
    assert client.delete(f"/v1/alerts/{rule['id']}", headers=auth).status_code == 404
    assert client.get("/v1/alerts").status_code == 401

    for bad in ({"backlash_share": 1.5}, {"window": "soon"}, {"min_posts": 0}):
        r = client.post("/v1/alerts", json={**RULE, **bad}, headers=auth)
        assert r.status_code == 422 and r.json()["code"] == "invalid-request", bad


def test_alert_webhook_must_pass_the_ssrf_checks(client, auth, api_settings) -> None:
    for url in ("file:///etc/passwd", "ftp://example.org/x"):
        r = client.post("/v1/alerts", json={**RULE, "webhook": url}, headers=auth)
        assert r.status_code == 422, url
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"].startswith("fetch")
    # Without allow_private_network (the default), loopback, private and metadata are refused.
    from service.app import create_app

    strict = api_settings.model_copy(update={"allow_private_network": False})
    with TestClient(create_app(strict)) as c:
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.1/", "http://169.254.169.254/"):
            r = c.post("/v1/alerts", json={**RULE, "webhook": url}, headers=auth)
            assert r.status_code == 422 and r.json()["code"] == "fetch-blocked-address", url
            assert "refused" in r.json()["detail"]
        assert c.get("/v1/alerts", headers=auth).json()["items"] == []


def _post(client, auth, colour, post_id: str, hour: int) -> str:
    files = {"image": ("p.jpg", image_bytes(colour), "image/jpeg")}
    data = {"post_id": post_id, "hashtag": "myNYPD", "caption": f"caption {post_id}",
            "created_at": f"2014-04-22T1{hour}:00:00Z"}  # fmt: skip
    r = client.post("/v1/posts", files=files, data=data, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_report_shows_the_keys_posts_only(client, auth, api_settings) -> None:
    db = open_database(api_settings, upgrade=False)
    other = other_key(api_settings)
    mine = {"m0": "backlash", "m1": "backlash", "m2": "supportive", "m3": "neutral"}
    theirs = {"t0": "backlash", "t1": "backlash", "t2": "backlash"}
    for headers, posts in ((auth, mine), (other, theirs)):
        for i, (pid, verdict) in enumerate(posts.items()):
            public = _post(client, headers, (RED, GREEN, BLUE)[i % 3], pid, i)
            seq = repo.get_post(db, None, public).post.seq
            record = {"verdict": verdict, "confidence": 0.8, "reasons": ["r"]}
            repo.record_result(db, seq, "v-test", record, detected=[], scoring_s=0.01)
    _post(client, auth, RED, "m-queued", 5)  # not finished: not in the report
    db.dispose()

    r = client.get("/v1/hashtags/%23myNYPD/report", headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    html = r.text
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert meta and meta.group(1) == r.headers["content-security-policy"]
    counts = dict(
        re.findall(r'data-verdict="(\w+)"><dt>.*?<span class="count">([\d,]+)</span>', html)
    )
    assert counts == {
        "backlash": "2",
        "supportive": "1",
        "neutral": "1",
        "off_topic": "0",
        "failed": "0",
    }
    assert "4 posts" in html and "caption m0" in html and "caption t0" not in html

    assert client.get("/v1/hashtags/nothing/report", headers=auth).status_code == 404
    assert client.get("/v1/hashtags/myNYPD/report").status_code == 401


def test_report_and_alert_code_paths_never_import_torch(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from service.app import create_app; create_app(); "
        "from workers.report import render_report; import workers.notify.watch; "
        "render_report([{'post_id': 'a', 'hashtag': 't', 'status': 'ok', 'verdict': 'backlash',"
        " 'confidence': 0.9, 'created_at': '2014-04-22T10:00:00Z'}]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {"BACKFIRE_DATA_DIR": str(tmp_path), "BACKFIRE_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env={**env, "PATH": ""})
