"""Bluesky search, `app.bsky.feed.searchPosts` with `sort=latest`, followed live.

Search pages go from the newest post backwards (`cursor` is the next, older page), so a poll
walks back from the newest post to the last one stored (`since`, the newest `indexedAt` seen,
which the API filters on inclusively; posts at that instant are told apart by their URIs, kept
in the cursor as `recent`: a time alone would skip or repeat posts sharing an instant across a
page boundary). A walk longer than `max_pages` is saved in the cursor and continued at the next
poll, then the cursor jumps to the walk's newest post: nothing between is skipped.

The first watch of a query backfills: it reads back whole pages until it holds `backfill` posts
(or the search ends), saves `since` at the oldest of them, then scores those pages oldest first,
saving after each the newest instant done with its URIs, so a watcher killed during the
backfill continues it.

Logged-out clients read `https://public.api.bsky.app`; with a handle and an app password the
watcher opens a session (`com.atproto.server.createSession`) on its PDS (`https://bsky.social`
by default) and searches through it, opening a new session when the token expires.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from workers.domain import Post, iso_utc, parse_time
from workers.errors import SourceError, SourceUnavailable
from workers.sources import ReadProblem
from workers.sources.bluesky import page_records
from workers.sources.live import ApiClient, Batch, base_url

PUBLIC_APPVIEW = "public.api.bsky.app"
DEFAULT_PDS = "bsky.social"
PAGE_LIMIT = 100  # the API's maximum
#: URIs remembered at the edge of `since`, so posts indexed in the same instant are not lost.
RECENT = 2000


class BlueskySource:
    platform = "bluesky"

    def __init__(
        self,
        client: ApiClient,
        query: str,
        hashtag: str | None,
        service: str | None = None,
        *,
        handle: str | None = None,
        app_password: str | None = None,
        max_pages: int = 10,
        limit: int = PAGE_LIMIT,
        backfill: int = 200,
    ) -> None:
        self.client = client
        self.query = query
        self.hashtag = hashtag
        authed = bool(handle and app_password)
        self.base = base_url(service or "", DEFAULT_PDS if authed else PUBLIC_APPVIEW)
        self.url = f"{self.base}/xrpc/app.bsky.feed.searchPosts"
        self.handle, self.app_password = handle, app_password
        self.token: str | None = None
        self.max_pages = max_pages
        self.limit = limit
        self.backfill = backfill
        self.source_key = f"bluesky:{self.base}"
        self.query_key = query
        self.behind = False
        self.problems: list[ReadProblem] = []

    # --- session ---------------------------------------------------------------------------
    def _login(self) -> None:
        body = json.dumps({"identifier": self.handle, "password": self.app_password}).encode()
        answer = self.client.request(
            "POST", f"{self.base}/xrpc/com.atproto.server.createSession", body=body,
            refuse=lambda a: f"bluesky refused the app password of {self.handle} "
            f"(HTTP {a.status}); create one under Settings > App passwords",
        )  # fmt: skip
        try:
            self.token = str(answer.json()["accessJwt"])
        except (ValueError, KeyError, TypeError) as e:
            raise SourceUnavailable("bluesky: createSession answered without accessJwt") from e

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            if self.handle and self.app_password and self.token is None:
                self._login()
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            try:
                doc, _ = self.client.get_json(self.url, params, headers)
            except SourceError as e:
                # An expired access token: one new session, then the same request again.
                if self.token and attempt == 1 and "HTTP 401" in e.message:
                    self.token = None
                    continue
                raise
            if not isinstance(doc, dict):
                raise SourceUnavailable(f"bluesky: {self.url}: expected a searchPosts page")
            return doc
        raise AssertionError("unreachable")

    # --- polling ---------------------------------------------------------------------------
    def _page(
        self, since: str | None, cursor: str | None, recent: list[str]
    ) -> tuple[list[Post], str | None, str | None, str | None]:
        """(new posts oldest first, the newest and the oldest indexedAt of the page, the next
        cursor)."""
        params = {"q": self.query, "sort": "latest", "limit": self.limit, "since": since,
                  "cursor": cursor}  # fmt: skip
        doc = self._get(params)
        views = [v for v in doc.get("posts") or [] if isinstance(v, dict)]
        indexed = {str(v.get("uri")): str(v.get("indexedAt") or "") for v in views}
        records = page_records(doc, self.hashtag, self.url)
        self.problems += [r for r in records if isinstance(r, ReadProblem)]
        seen = set(recent)
        posts = [r for r in records if isinstance(r, Post) and r.post_id not in seen]
        times = [t for t in (parse_time(x) for x in indexed.values()) if t is not None]
        newest = iso_utc(max(times)) if times else None
        oldest = iso_utc(min(times)) if times else None
        # Oldest first by indexedAt (the order search sorts on); a page is newest first, so
        # reversing it first keeps the platform's order among posts of the same instant.
        posts = list(reversed(posts))
        posts.sort(key=lambda p: parse_time(indexed.get(p.post_id)) or datetime.min.replace(
            tzinfo=UTC))
        next_cursor = doc.get("cursor") if views else None
        return posts, newest, oldest, (str(next_cursor) if next_cursor else None)

    def _backfill(self) -> tuple[list[tuple[list[Post], str | None]], str | None, list[str]]:
        """The newest whole pages holding `backfill` posts (newest page first, each as (posts
        oldest first, its newest indexedAt)), the `since` that covers them, and the URIs not to
        score (with `backfill` 0: the newest page's). At most backfill / limit requests (pages
        of text-only posts count too: then fewer posts are backfilled)."""
        pages: list[tuple[list[Post], str | None]] = []
        held, token, since = 0, None, None
        for _ in range(max(1, -(-self.backfill // self.limit))):
            posts, newest, oldest, token = self._page(None, token, [])
            if self.backfill <= 0:  # from the newest instant on, without what is there now
                return [], newest, [p.post_id for p in posts]
            pages.append((posts, newest))
            held += len(posts)
            since = oldest or since
            if held >= self.backfill or not token:
                break
        return pages, since, []

    def poll(self, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        state = dict(cursor or {})
        since: str | None = state.get("since")
        recent: list[str] = list(state.get("recent") or [])
        walk: dict[str, Any] | None = state.get("walk")
        self.behind = False
        if since is None and walk is None:
            # A new cursor: anchored at the oldest backfill post (`since` is inclusive) and
            # saved before anything is scored; then the backfill pages, oldest first.
            pages, since, recent = self._backfill()
            since = since or iso_utc(datetime.now(UTC))
            yield Batch([], {"since": since, "recent": recent, "walk": None})
            for posts, newest in reversed(pages):
                recent = (recent + [p.post_id for p in posts])[-RECENT:]
                since = newest or since
                yield Batch(posts, {"since": since, "recent": recent, "walk": None})
        token = walk.get("cursor") if walk else None
        top = walk.get("top") if walk else None
        for _ in range(self.max_pages):
            posts, newest, _oldest, token = self._page(since, token, recent)
            top = top or newest
            recent = (recent + [p.post_id for p in posts])[-RECENT:]
            if token:
                after = {"since": since, "recent": recent, "walk": {"cursor": token, "top": top}}
            else:
                after = {"since": top or since, "recent": recent, "walk": None}
            yield Batch(posts, after)
            if not token:
                return
        self.behind = True
