"""Upload, status, idempotency, paging, summary and error answers, in-process on SQLite."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from tests.conftest import BLUE, GREEN, RED, image_bytes
from workers.config import Settings
from workers.store import open_database
from workers.store import posts as repo
from workers.store.blobs import BlobStore
from workers.store.keys import create_key


def upload(client: TestClient, auth: dict[str, str], colour=RED, headers=None, **fields):
    files = {"image": ("photo.jpg", image_bytes(colour), "image/jpeg")}
    return client.post(
        "/v1/posts", files=files, data=fields, headers={**auth, **(headers or {})}
    )


def test_upload_is_durable_before_202(client, auth, api_settings: Settings):
    r = upload(client, auth, caption="Free delivery #myNYPD", hashtag="#myNYPD", post_id="t1")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["post_id"] == "t1" and body["status"] == "queued" and not body["duplicate"]
    assert body["status_url"] == f"/v1/posts/{body['id']}"
    # The row is committed and the bytes are in the content-addressed store.
    view = repo.get_post(open_database(api_settings, upgrade=False), None, body["id"])
    assert view.post.hashtag == "myNYPD"
    blobs = BlobStore(api_settings.resolved_media_dir)
    assert blobs.get(view.post.media_sha256) == image_bytes(RED)

    got = client.get(body["status_url"], headers=auth).json()
    assert got["status"] == "queued" and got["verdict"] is None
    assert got["caption"].startswith("Free")


def test_same_post_id_or_idempotency_key_returns_the_existing_post(client, auth):
    a = upload(client, auth, post_id="same").json()
    b = upload(client, auth, colour=BLUE, post_id="same").json()
    assert b["id"] == a["id"] and b["duplicate"] is True
    c = upload(client, auth, headers={"Idempotency-Key": "k-1"}).json()
    d = upload(client, auth, headers={"Idempotency-Key": "k-1"}).json()
    assert c["id"] == d["id"] and d["duplicate"] and c["id"] != a["id"]


def test_identical_images_are_stored_once(client, auth, api_settings):
    ids = [upload(client, auth, post_id=f"dup{i}").json()["id"] for i in range(3)]
    db = open_database(api_settings, upgrade=False)
    shas = {repo.get_post(db, None, i).post.media_sha256 for i in ids}
    assert len(shas) == 1
    files = [p for p in api_settings.resolved_media_dir.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_unsupported_and_hostile_images(client, auth):
    r = client.post(
        "/v1/posts", headers=auth,
        files={"image": ("x.jpg", b"%PDF-1.7 not a photo", "image/jpeg")},
    )
    assert r.status_code == 415
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["type"].endswith("/image-unsupported-format") and "PDF" in p["detail"]

    # Header-level damage is caught at upload (pixel-level damage too: test_api_bad_images).
    damaged = b"\xff\xd8\xff" + b"\0" * 100
    r = client.post("/v1/posts", headers=auth, files={"image": ("t.jpg", damaged, "image/jpeg")})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "image-corrupt" and "JPEG" in r.json()["detail"]

    # A decompression bomb: a tiny file claiming an enormous canvas.
    bomb = image_bytes(GREEN, size=(1200, 1200), fmt="PNG", optimize=True)  # cap: 1 MP here
    r = client.post("/v1/posts", headers=auth, files={"image": ("b.png", bomb, "image/png")})
    assert r.status_code == 422 and r.json()["code"] == "image-too-large"

    r = client.post("/v1/posts", headers=auth, content=b"hello", )
    assert r.status_code == 415
    r = client.post("/v1/posts", headers=auth, data={"caption": "no image"})
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = upload(client, auth, created_at="yesterday")
    assert r.status_code == 422 and "created_at" in r.json()["detail"]


def test_body_cap_with_content_length_and_chunked(client, auth, api_settings):
    cap = api_settings.api_max_body_bytes
    big = b"\xff\xd8\xff" + b"\0" * (cap + 10)
    r = client.post("/v1/posts", headers=auth, files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["code"] == "request-too-large"

    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(cap // 65536 + 50):
            sent += 65536
            yield b"x" * 65536

    r = client.post(
        "/v1/posts", headers={**auth, "Content-Type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413


def test_auth_matrix(client, auth, api_settings):
    from workers.store.keys import create_key, revoke_key

    assert client.get("/v1/posts").status_code == 401
    r = client.get("/v1/posts", headers={"Authorization": "Bearer bf_0000000000000000_" + "a" * 43})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    assert client.get("/v1/posts", headers={"X-API-Key": "nonsense"}).status_code == 401

    mine = upload(client, auth, post_id="mine").json()["id"]
    db = open_database(api_settings, upgrade=False)
    other = create_key(db, "other-team")
    other_auth = {"Authorization": f"Bearer {other}"}
    r = client.get(f"/v1/posts/{mine}", headers=other_auth)
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    assert client.get("/v1/posts", headers=other_auth).json()["items"] == []
    # The same client post id under another key is another post.
    theirs = upload(client, other_auth, post_id="mine").json()
    assert theirs["id"] != mine and not theirs["duplicate"]

    revoke_key(db, "other-team")
    r = client.get("/v1/posts", headers=other_auth)
    assert r.status_code == 403 and r.json()["code"] == "api-key-revoked"
    assert client.get(f"/v1/posts/{mine}", headers=auth).status_code == 200


def test_revocation_elsewhere_takes_effect_within_the_key_cache_ttl(api_settings):
    """A key revoked by another process (here: a raw UPDATE, which no cache in this process
    hears about) is refused once `api_key_cache_s` has passed, without restarting the API."""
    import time

    from sqlalchemy import text

    from service.app import create_app
    from workers.store.keys import create_key

    settings = api_settings.model_copy(update={"api_key_cache_s": 0.5})
    db = open_database(settings)
    key = create_key(db, "elsewhere")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/posts", headers=headers).status_code == 200  # row now cached
        # A wrong secret for a cached key id is a 401: compared against the stored hash.
        wrong = key[: key.rindex("_") + 1] + "x" * 43
        assert c.get("/v1/posts", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        with db.engine.begin() as conn:
            conn.execute(
                text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE name = :n"),
                {"n": "elsewhere"},
            )
        deadline = time.monotonic() + 0.5 + 2.0
        while c.get("/v1/posts", headers=headers).status_code != 403:
            assert time.monotonic() < deadline, "revocation not seen after the cache TTL"
            time.sleep(0.05)


def _finish(db, public_id: str, verdict: str, detected: list[str]) -> None:
    seq = repo.get_post(db, None, public_id).post.seq
    assert repo.claim(db, seq, "v-test", 3) == "run"
    record = {"verdict": verdict, "confidence": 0.8, "reasons": ["r"], "scenes": {"arrest": 0.9}}
    repo.record_result(db, seq, "v-test", record, detected=detected, scoring_s=0.05)


def test_paging_filters_and_summary(client, auth, api_settings):
    db = open_database(api_settings, upgrade=False)
    ids = []
    for i in range(7):
        ids.append(
            upload(
                client, auth, post_id=f"p{i}", hashtag="myNYPD",
                created_at=f"2014-04-22T1{i}:00:00Z",
            ).json()["id"]
        )  # fmt: skip
    upload(client, auth, post_id="other", hashtag="elsewhere")
    for i, public_id in enumerate(ids[:5]):
        _finish(db, public_id, "backlash" if i < 3 else "supportive", ["arrest"] if i < 3 else [])

    seen, cursor = [], None
    while True:
        params = {"hashtag": "myNYPD", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/posts", headers=auth, params=params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids

    backlash = client.get("/v1/posts", headers=auth, params={"verdict": "backlash"}).json()
    assert [p["id"] for p in backlash["items"]] == ids[:3]
    assert backlash["items"][0]["verdict"] == "backlash"
    assert backlash["items"][0]["pipeline_version"] == "v-test"
    since = client.get(
        "/v1/posts", headers=auth, params={"hashtag": "myNYPD", "since": "2014-04-22T15:00:00Z"}
    ).json()
    assert [p["id"] for p in since["items"]] == ids[5:]
    assert client.get("/v1/posts", headers=auth, params={"cursor": "zz!"}).status_code == 422

    s = client.get("/v1/hashtags/%23myNYPD/summary", headers=auth).json()
    assert s["posts"] == 7 and s["by_status"] == {"done": 5, "queued": 2}
    assert s["by_verdict"] == {"backlash": 3, "supportive": 2}
    assert s["by_scene"] == {"arrest": 3} and s["backlash_share"] == 0.6
    assert s["first_post_at"].startswith("2014-04-22T10:00")
    assert s["last_post_at"].startswith("2014-04-22T16:00")


def test_health_metrics_and_openapi(api_settings):
    from service.app import create_app

    settings = api_settings.model_copy(update={"metrics_token": "operator-token"})
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {create_key(open_database(settings), 'm')}"}
        assert client.get("/healthz").json() == {"status": "ok"}
        upload(client, auth)
        m = client.get("/metrics", headers={"Authorization": "Bearer operator-token"}).text
        assert 'backfire_posts{status="queued"} 1.0' in m
        assert "backfire_queue_depth" in m and "backfire_http_requests_total" in m
        assert 'route="/v1/posts"' in m
        # No worker runs here: not ready, as a problem document.
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"] == "ok"
        spec = client.get("/openapi.json").json()
        body = spec["paths"]["/v1/posts"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(body)
        assert client.get("/docs").status_code == 200
        r = client.get("/v1/nothing-here")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem")


def test_callback_url_is_vetted(client, auth, api_settings):
    r = upload(client, auth, callback_url="file:///etc/passwd")
    assert r.status_code == 422 and r.json()["code"].startswith("fetch")


def test_api_never_imports_torch():
    code = (
        "import sys; from service.app import create_app; create_app(); "
        "import service.routes.posts, workers.queue.publish, workers.queue.reconcile; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
