"""A fake Mastodon, Bluesky and X API v2 on 127.0.0.1, publishing posts when told (or on a
schedule), with their images served by the same server.

JSON shaped as the platforms document it: Mastodon's hashtag timeline (statuses newest first,
`min_id`/`since_id`/`max_id`, a `Link` header), Bluesky's `app.bsky.feed.searchPosts` (PostViews
newest first, `cursor`, `since`, `createSession`), X's `/2/tweets/search/recent` (`data`,
`includes.media`, `meta.newest_id`/`next_token`, `since_id`). Failures can be scripted: the next
API answers can be given statuses and headers (429 with Retry-After, 500...). Every API request
is recorded with its time, so a test can check when the watcher asked.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from tests.support.quiet_http import QuietHTTPServer

BACKLASH_CAPTION = "Need a lift? The #NYPD's got you! Free Delivery, only at #myNYPD"
SUPPORTIVE_CAPTION = "Great to meet these wonderful officers at the parade, thank you! #myNYPD"
RED, GREEN = (220, 20, 20), (20, 200, 20)
TOKEN = "test-bearer-token"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakePost:
    n: int
    caption: str
    colour: tuple[int, int, int]
    created: float

    @property
    def mastodon_id(self) -> str:
        return str(110_000_000_000 + self.n)

    @property
    def tweet_id(self) -> str:
        return str(1_780_000_000_000_000_000 + self.n)

    @property
    def bluesky_uri(self) -> str:
        return f"at://did:plc:user{self.n % 50}/app.bsky.feed.post/3k{self.n:08d}"

    def post_id(self, platform: str) -> str:
        return {"mastodon": self.mastodon_id, "twitter": self.tweet_id,
                "bluesky": self.bluesky_uri}[platform]  # fmt: skip


@dataclass
class Request:
    at: float
    path: str
    params: dict[str, str]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    #: Post numbers the answer carried.
    returned: list[int] = field(default_factory=list)


class FakePlatforms:
    def __init__(
        self, latency_s: float = 0.0, tag: str = "myNYPD",
        images: Callable[[int], bytes] | None = None, media_latency_s: float = 0.0,
    ) -> None:  # fmt: skip
        self.posts: list[FakePost] = []
        self.requests: list[Request] = []
        self.media_hits = 0
        #: Each image answer waits this long; the most image requests seen in flight at once.
        self.media_latency_s = media_latency_s
        self.media_in_flight = 0
        self.media_max_in_flight = 0
        self.tag = tag
        self.latency_s = latency_s
        #: Post number -> its JPEG (a benchmark's distinct photos); default one per colour.
        self.images = images
        #: Scripted answers for the next API requests: (status, headers).
        self.script: list[tuple[int, dict[str, str]]] = []
        self.sessions = 0
        #: Bluesky search needs the latest session's token (an older one is "expired").
        self.require_session = False
        self.lock = threading.Lock()
        self._images: dict[tuple[int, int, int], bytes] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._scheduler: threading.Thread | None = None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- publishing ----------------------------------------------------------------------------
    def publish(
        self, caption: str = SUPPORTIVE_CAPTION, colour: tuple[int, int, int] = GREEN, n: int = 1,
        created: float | None = None,
    ) -> list[FakePost]:
        """`n` new posts, created now (or all at `created`: posts of one instant)."""
        with self.lock:
            out = []
            for _ in range(n):
                p = FakePost(len(self.posts), caption, colour, created or time.time())
                self.posts.append(p)
                out.append(p)
            return out

    def schedule(self, plan: list[tuple[float, str, tuple[int, int, int]]]) -> threading.Thread:
        """Publish each (delay after the previous, caption, colour) in a background thread."""

        def run() -> None:
            for delay, caption, colour in plan:
                time.sleep(delay)
                self.publish(caption, colour)

        self._scheduler = threading.Thread(target=run, daemon=True)
        self._scheduler.start()
        return self._scheduler

    def api_requests(self, prefix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    # --- the HTTP side -------------------------------------------------------------------------
    def _image(self, colour: tuple[int, int, int]) -> bytes:
        if colour not in self._images:
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), colour).save(buf, "JPEG")
            self._images[colour] = buf.getvalue()
        return self._images[colour]

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/media/"):
            n = int(parts.path.rsplit("/", 1)[1].split(".")[0])
            with self.lock:
                self.media_hits += 1
                self.media_in_flight += 1
                self.media_max_in_flight = max(self.media_max_in_flight, self.media_in_flight)
                colour = self.posts[n].colour
            try:
                if self.media_latency_s:
                    time.sleep(self.media_latency_s)
                body = self.images(n) if self.images else self._image(colour)
                self._send(h, 200, body, "image/jpeg")
            finally:
                with self.lock:
                    self.media_in_flight -= 1
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
            if scripted is not None:
                self.requests.append(Request(time.time(), parts.path, params, scripted[0]))
        if scripted is not None:
            body = json.dumps({"error": "scripted", "title": "scripted"}).encode()
            self._send(h, scripted[0], body, "application/json", scripted[1])
            return
        try:
            status, doc, headers = self._api(h, method, parts.path, params)
        except Exception as e:  # noqa: BLE001 - a bug in the fake shows as a 500 with its text
            status, doc, headers = 500, {"error": repr(e)}, {}
        returned = headers.pop("_returned", "")
        with self.lock:
            self.requests.append(Request(
                time.time(), parts.path, params, status, headers,
                [int(x) for x in returned.split(",") if x],
            ))  # fmt: skip
        self._send(h, status, json.dumps(doc).encode(), "application/json", headers)

    def _api(self, h: BaseHTTPRequestHandler, method: str, path: str,
             params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        with self.lock:
            posts = list(self.posts)
        if path == f"/api/v1/timelines/tag/{self.tag}":
            return self._mastodon(posts, params)
        if path == "/xrpc/com.atproto.server.createSession" and method == "POST":
            n = int(h.headers.get("Content-Length") or 0)
            body = json.loads(h.rfile.read(n))
            if body.get("password") != "app-pass":
                return 401, {"error": "AuthenticationRequired", "message": "Invalid password"}, {}
            self.sessions += 1
            return 200, {"accessJwt": f"jwt-{self.sessions}", "did": "did:plc:me"}, {}
        if path == "/xrpc/app.bsky.feed.searchPosts":
            if self.require_session and h.headers.get("Authorization") != (
                f"Bearer jwt-{self.sessions}"
            ):
                return 401, {"error": "ExpiredToken", "message": "Token has expired"}, {}
            return self._bluesky(posts, params)
        if path == "/2/tweets/search/recent":
            if h.headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"title": "Unauthorized", "detail": "bad token"}, {}
            return self._twitter(posts, params)
        return 404, {"error": "Record not found"}, {}

    # Mastodon: statuses newest first; min_id pages forward, since_id/max_id backwards.
    def status(self, p: FakePost) -> dict[str, Any]:
        return {
            "id": p.mastodon_id, "created_at": iso(p.created), "content": f"<p>{p.caption}</p>",
            "url": f"{self.url}/@user{p.n}/{p.mastodon_id}", "spoiler_text": "",
            "account": {"acct": f"user{p.n % 50}", "username": f"user{p.n % 50}"},
            "media_attachments": [{"id": str(p.n), "type": "image",
                                   "url": f"{self.url}/media/{p.n}.jpg", "description": None}],
            "reblog": None,
        }  # fmt: skip

    def _mastodon(self, posts: list[FakePost], params: dict[str, str]):
        limit = min(int(params.get("limit", 20)), 40)
        ids = [(int(p.mastodon_id), p) for p in posts]
        if "min_id" in params:
            newer = [x for x in ids if x[0] > int(params["min_id"])][:limit]
            page = list(reversed(newer))
        else:
            since = int(params.get("since_id", 0))
            top = int(params.get("max_id", 10**30))
            page = [x for x in reversed(ids) if since < x[0] < top][:limit]
        statuses = [self.status(p) for _, p in page]
        headers = {"_returned": ",".join(str(p.n) for _, p in page)}
        if page:
            base = f"{self.url}/api/v1/timelines/tag/{self.tag}?limit={limit}"
            headers["Link"] = (f'<{base}&max_id={page[-1][0]}>; rel="next", '
                               f'<{base}&min_id={page[0][0]}>; rel="prev"')  # fmt: skip
        return 200, statuses, headers

    # Bluesky: PostViews newest first; cursor = offset; since filters indexedAt inclusively.
    def post_view(self, p: FakePost) -> dict[str, Any]:
        did = p.bluesky_uri[5:].split("/")[0]
        return {
            "uri": p.bluesky_uri, "cid": f"cid{p.n}",
            "author": {"did": did, "handle": f"user{p.n % 50}.bsky.social"},
            "record": {"$type": "app.bsky.feed.post", "text": p.caption,
                       "createdAt": iso(p.created)},
            "embed": {"$type": "app.bsky.embed.images#view", "images": [
                {"fullsize": f"{self.url}/media/{p.n}.jpg", "thumb": f"{self.url}/media/{p.n}.jpg",
                 "alt": ""}]},
            "indexedAt": iso(p.created),
        }  # fmt: skip

    def _bluesky(self, posts: list[FakePost], params: dict[str, str]):
        limit = min(int(params.get("limit", 25)), 100)
        found = [p for p in reversed(posts) if params.get("q", "").lstrip("#").lower()
                 in p.caption.lower()]  # fmt: skip
        if params.get("since"):
            since = datetime.fromisoformat(params["since"].replace("Z", "+00:00")).timestamp()
            found = [p for p in found if round(p.created, 3) >= round(since, 3) - 1e-6]
        start = int(params.get("cursor") or 0)
        page = found[start : start + limit]
        doc: dict[str, Any] = {"posts": [self.post_view(p) for p in page]}
        if start + limit < len(found):
            doc["cursor"] = str(start + limit)
        return 200, doc, {}

    # X: tweets newest first; since_id exclusive; next_token = offset.
    def _twitter(self, posts: list[FakePost], params: dict[str, str]):
        limit = min(int(params.get("max_results", 10)), 100)
        since = int(params.get("since_id") or 0)
        found = [p for p in reversed(posts) if int(p.tweet_id) > since]
        start = int(params.get("next_token") or 0)
        page = found[start : start + limit]
        data = [{"id": p.tweet_id, "text": p.caption, "created_at": iso(p.created),
                 "author_id": str(p.n % 50), "attachments": {"media_keys": [f"3_{p.n}"]},
                 "edit_history_tweet_ids": [p.tweet_id]} for p in page]  # fmt: skip
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta["newest_id"], meta["oldest_id"] = page[0].tweet_id, page[-1].tweet_id
        if start + limit < len(found):
            meta["next_token"] = str(start + limit)
        doc = {"data": data, "meta": meta, "includes": {
            "media": [{"media_key": f"3_{p.n}", "type": "photo",
                       "url": f"{self.url}/media/{p.n}.jpg"} for p in page],
            "users": [{"id": str(p.n % 50), "username": f"user{p.n % 50}"} for p in page]}}
        if not data:
            doc = {"meta": {"result_count": 0}}
        reset = str(int(time.time()) + 900)
        return 200, doc, {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "449",
                          "x-rate-limit-reset": reset}  # fmt: skip

    # --- exports (for replay) ------------------------------------------------------------------
    def export_mastodon(self, path: Path) -> Path:
        """The posts as a Mastodon export (one status per line), as a user would save them."""
        with self.lock:
            posts = list(self.posts)
        path.write_text("".join(json.dumps(self.status(p)) + "\n" for p in posts))
        return path
