"""Mastodon's public hashtag timeline, `GET /api/v1/timelines/tag/:hashtag`, followed live.

The cursor is `min_id`: the API then returns the statuses *immediately* newer than it (a page
of up to 40, newest first), so paging forward with each page's newest id walks a backlog in
order with no gap, however long the watcher was away. The `Link` header's `prev` link carries
that id; ids are opaque strings, so it is preferred to comparing them. A new cursor is anchored
just before the `backfill` newest statuses (found by paging back with `max_id`) and saved before
anything is scored; the first poll then pages forward through them, oldest first. Because the
cursor is an id, statuses sharing a `created_at` on either side of a page boundary are neither
skipped nor read twice.
No account is needed for public timelines; `access_token` is for instances that disable public
previews.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from workers.domain import Post, hashtag_key
from workers.errors import SourceUnavailable
from workers.sources import ReadProblem
from workers.sources.live import ApiClient, Batch, base_url
from workers.sources.mastodon import page_records

DEFAULT_INSTANCE = "mastodon.social"
PAGE_LIMIT = 40  # the API's maximum
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([a-z]+)"?')


def link_min_id(header: str | None) -> str | None:
    """The `min_id` of the Link header's `prev` link (the page after this one, going newer)."""
    for url, rel in _LINK.findall(header or ""):
        if rel == "prev":
            values = parse_qs(urlsplit(url).query).get("min_id")
            if values:
                return values[0]
    return None


class MastodonSource:
    platform = "mastodon"

    def __init__(
        self,
        client: ApiClient,
        tag: str,
        instance: str | None = None,
        *,
        access_token: str | None = None,
        max_pages: int = 25,
        limit: int = PAGE_LIMIT,
        backfill: int = 200,
    ) -> None:
        self.client = client
        self.tag = tag
        self.hashtag = tag
        self.base = base_url(instance or DEFAULT_INSTANCE, DEFAULT_INSTANCE)
        self.url = f"{self.base}/api/v1/timelines/tag/{quote(tag, safe='')}"
        self.headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        self.max_pages = max_pages
        self.limit = limit
        self.backfill = backfill
        self.source_key = f"mastodon:{self.base}"
        self.query_key = hashtag_key(tag)
        self.behind = False
        self.problems: list[ReadProblem] = []

    def _page(self, min_id: str | None) -> tuple[list[Post], str | None, int]:
        doc, answer = self.client.get_json(
            self.url, {"limit": self.limit, "min_id": min_id, "only_media": "true"}, self.headers
        )  # only_media: Backfire scores photos; text-only statuses would only be error rows
        if not isinstance(doc, list):
            raise SourceUnavailable(f"mastodon: {self.url}: expected a list of statuses")
        records = page_records(doc, self.tag, self.url)
        posts = [r for r in records if isinstance(r, Post)]
        self.problems += [r for r in records if isinstance(r, ReadProblem)]
        newest = link_min_id(answer.headers.get("link"))
        if newest is None and doc and isinstance(doc[0], dict) and doc[0].get("id"):
            newest = str(doc[0]["id"])  # newest first: the first status is the newest
        return posts, newest, len(doc)

    def _anchor(self) -> str:
        """A new cursor: the id of the status just older than the `backfill` newest ones
        (`min_id` is exclusive), so the first poll scores those, oldest first, and a watcher
        killed before it scored them finds them again (the anchor is saved first). At most
        (backfill + 1) / limit requests; a shorter timeline is read whole ("0")."""
        wanted = self.backfill + 1
        got, max_id = 0, None
        while got < wanted:
            size = min(self.limit, wanted - got)
            doc, _ = self.client.get_json(
                self.url, {"limit": size, "max_id": max_id, "only_media": "true"}, self.headers
            )  # fmt: skip
            if not isinstance(doc, list) or not doc or not isinstance(doc[-1], dict):
                return "0"  # the timeline ends first: everything on it is backfill
            got += len(doc)
            max_id = str(doc[-1].get("id") or "")
            if not max_id or len(doc) < size:
                return "0"
        return max_id or "0"

    def poll(self, cursor: dict[str, Any] | None) -> Iterator[Batch]:
        min_id = (cursor or {}).get("min_id")
        self.behind = False
        if min_id is None:
            min_id = self._anchor()
            yield Batch([], {"min_id": min_id})
        for _ in range(self.max_pages):
            posts, newest, n = self._page(min_id)
            if n == 0:
                return
            min_id = newest or min_id
            yield Batch(posts, {"min_id": min_id})
            if n < self.limit:
                return
        self.behind = True  # more pages wait: the next poll continues from the saved min_id
