"""`POST /v1/posts` with JSON `image_url`: fetched from a server on 127.0.0.1 (started here),
refused without `allow_private_network`, and over-size bodies refused with a specific type."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import RED, image_bytes
from workers.config import Settings
from workers.store import open_database
from workers.store import posts as repo
from workers.store.blobs import BlobStore

PHOTO = image_bytes(RED)
BIG = b"\xff\xd8\xff" + b"\0" * 200_000  # over the 100 KB cap set below


class _Images(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Images.hits.append(self.path)
        if self.path == "/photo.jpg":
            self._send(PHOTO, declare=True)
        elif self.path == "/big.jpg":  # announces its size: refused on the header
            self._send(BIG, declare=True)
        elif self.path == "/big-stream.jpg":  # no Content-Length: cut off while streaming
            self._send(BIG, declare=False)
        else:
            self.send_error(404)

    def _send(self, body: bytes, declare: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if declare:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # HTTP/1.0: without a length the body ends when the socket closes
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # the fetcher may hang up at its cap

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _post_url(client: TestClient, auth: dict[str, str], url: str, **fields: str):
    return client.post("/v1/posts", json={"image_url": url, **fields}, headers=auth)


def test_image_url_is_fetched_stored_and_accepted(client, auth, api_settings, image_server):
    url = f"{image_server}/photo.jpg"
    r = _post_url(client, auth, url, caption="Free delivery", post_id="u1", hashtag="myNYPD")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["post_id"] == "u1" and body["status"] == "queued"
    view = repo.get_post(open_database(api_settings, upgrade=False), None, body["id"])
    assert view.post.image_url == url and view.post.hashtag == "myNYPD"
    # The fetched bytes, not the URL, are what the workers will score.
    assert BlobStore(api_settings.resolved_media_dir).get(view.post.media_sha256) == PHOTO
    got = client.get(body["status_url"], headers=auth).json()
    assert got["image_url"] == url and got["caption"] == "Free delivery"
    fetched = _Images.hits.count("/photo.jpg")
    assert _post_url(client, auth, url, post_id="u1").json()["duplicate"] is True
    assert _Images.hits.count("/photo.jpg") == fetched  # a re-sent post is not fetched again

    r = _post_url(client, auth, f"{image_server}/missing.jpg")
    assert r.status_code == 422 and r.json()["code"] == "fetch-http-error"
    assert "404" in r.json()["detail"]


def test_private_image_url_refused_without_the_flag(api_settings, auth, image_server):
    from service.app import create_app

    strict = api_settings.model_copy(update={"allow_private_network": False})
    with TestClient(create_app(strict)) as c:
        r = _post_url(c, auth, f"{image_server}/photo.jpg")
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        p = r.json()
        assert p["type"].endswith("/fetch-blocked-address")
        assert "loopback" in p["detail"] and "allow_private_network" in p["detail"]
        r = _post_url(c, auth, "file:///etc/passwd")
        assert r.status_code == 422 and r.json()["code"] == "fetch-failed"
        assert c.get("/v1/posts", headers=auth).json()["items"] == []  # nothing stored


def test_oversize_image_url_refused(api_settings: Settings, auth, image_server):
    from service.app import create_app

    capped = api_settings.model_copy(update={"max_image_bytes": 100_000})
    with TestClient(create_app(capped)) as c:
        for path in ("/big.jpg", "/big-stream.jpg"):
            r = _post_url(c, auth, f"{image_server}{path}")
            assert r.status_code == 413, (path, r.text)
            p = r.json()
            assert p["type"].endswith("/fetch-too-large") and "100000 bytes" in p["detail"]
        assert c.get("/v1/posts", headers=auth).json()["items"] == []
