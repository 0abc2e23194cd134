"""X (Twitter) API v2 recent search, `GET /2/tweets/search/recent`, followed live.

`since_id` returns only tweets newer than the last one stored, newest first, paged backwards
with `next_token`; `meta.newest_id` of the first page is where the next poll starts once the
walk is done. A walk longer than `max_pages` is saved in the cursor and continued at the next
poll. The cursor is a tweet id, never a time: tweets sharing a `created_at` on either side of a
page boundary are neither skipped nor read twice. The first watch of a query backfills: it reads
back whole pages until it holds `backfill` posts (or the search ends), saves `since_id` just
below the oldest, then scores those pages oldest first, saving each page's newest id after it.
Media come as expansions (`attachments.media_keys`, `media.fields=url,...`) and are parsed
by the twarc2 reader's own page parser. The bearer token is read from an environment variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workers.domain import Post
from workers.errors import SourceUnavailable
from workers.sources import ReadProblem
from workers.sources.live import ApiClient, Batch, base_url, in_time_order
from workers.sources.twarc2 import page_records

DEFAULT_API = "api.x.com"
PAGE_LIMIT = 100  # the API's maximum for max_results
FIELDS = {
    "expansions": "attachments.media_keys,author_id,referenced_tweets.id",
    "media.fields": "url,preview_image_url,type,alt_text",
    "tweet.fields": "created_at,author_id,attachments,referenced_tweets,note_tweet,lang",
    "user.fields": "username",
}


class TwitterSource:
    platform = "twitter"

    def __init__(
        self,
        client: ApiClient,
        query: str,
        hashtag: str | None,
        api: str | None = None,
        *,
        bearer_token: str,
        max_pages: int = 10,
        limit: int = PAGE_LIMIT,
        backfill: int = 200,
    ) -> None:
        self.client = client
        self.query = query
        self.hashtag = hashtag
        self.base = base_url(api or "", DEFAULT_API)
        self.url = f"{self.base}/2/tweets/search/recent"
        self.headers = {"Authorization": f"Bearer {bearer_token}"}
        self.max_pages = max_pages
        self.limit = limit
        self.backfill = backfill
        self.source_key = f"twitter:{self.base}"
        self.query_key = query
        self.behind = False
        self.problems: list[ReadProblem] = []

    def _page(self, since_id: str | None, token: str | None) -> tuple[list[Post], dict[str, Any]]:
        params = {"query": self.query, "max_results": self.limit, "since_id": since_id,
                  "next_token": token, **FIELDS}  # fmt: skip
        doc, _ = self.client.get_json(self.url, params, self.headers)
        if not isinstance(doc, dict):
            raise SourceUnavailable(f"twitter: {self.url}: expected a search response")
        records = page_records(doc, self.hashtag, self.url)
        self.problems += [r for r in records if isinstance(r, ReadProblem)]
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        return in_time_order([r for r in records if isinstance(r, Post)]), meta or {}

    def _backfill(self) -> tuple[list[tuple[list[Post], str]], str | None]:
        """The newest whole pages holding `backfill` posts (newest page first, each with its
        newest tweet id) and the `since_id` below them (None: nothing found). At most
        backfill / limit requests; with `backfill` 0, the newest id (score only what follows)."""
        pages: list[tuple[list[Post], str]] = []
        held, token, since = 0, None, None
        for _ in range(max(1, -(-self.backfill // self.limit))):
            posts, meta = self._page(None, token)
            newest, oldest = str(meta.get("newest_id") or ""), str(meta.get("oldest_id") or "")
            if not (newest.isdigit() and oldest.isdigit()):
                break  # an empty page: the search ends here
            if self.backfill <= 0:
                return [], newest
            pages.append((posts, newest))
            held += len(posts)
            since = str(int(oldest) - 1)  # since_id is exclusive; tweet ids are increasing
            token = meta.get("next_token")
            if held >= self.backfill or not token:
                break
        return pages, since

    def poll(self, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        state = dict(cursor or {})
        since: str | None = state.get("since_id")
        walk: dict[str, Any] | None = state.get("walk")
        self.behind = False
        if since is None and walk is None:
            # A new cursor: anchored just below the backfill and saved before anything is
            # scored; then the backfill pages, oldest first.
            pages, since = self._backfill()
            if since is None:
                return  # nothing found yet: the next poll anchors again
            yield Batch([], {"since_id": since, "walk": None})
            for posts, newest in reversed(pages):
                since = newest
                yield Batch(posts, {"since_id": since, "walk": None})
        token = walk.get("next_token") if walk else None
        top = walk.get("newest_id") if walk else None
        for _ in range(self.max_pages):
            posts, meta = self._page(since, token)
            top = top or meta.get("newest_id")
            token = meta.get("next_token")
            if token:
                after = {"since_id": since, "walk": {"next_token": token, "newest_id": top}}
            else:
                after = {"since_id": top or since, "walk": None}
            yield Batch(posts, after)
            if not token:
                return
        self.behind = True
