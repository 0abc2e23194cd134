"""Mastodon exports: statuses as the hashtag timeline (`GET /api/v1/timelines/tag/:hashtag`)
returns them, saved as one JSON array (a page), several pages one per line, or one status per
line.

Images are scored from `url` (the local copy; `remote_url` when the instance has not cached it);
`gifv` and `video` from `preview_url` (a still). `content` is HTML and becomes plain text.
A reblog is folded into the status it boosts (workers.sources.reposts).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from workers.domain import Post
from workers.sources import ReadProblem, Record
from workers.sources.jsondocs import dig, elements, iter_documents, obj_at
from workers.sources.reposts import Item, collapse

_STILL_TYPES = ("gifv", "video")


def is_mastodon(doc: Any) -> bool:
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    return isinstance(doc, dict) and (
        "media_attachments" in doc or ("account" in doc and "content" in doc)
    )


def read_mastodon(path: Path, hashtag: str | None) -> Iterator[Record]:
    return collapse(lambda: _items(path, hashtag))


def _items(path: Path, hashtag: str | None) -> Iterator[Item | ReadProblem]:
    for doc in iter_documents(path):
        if isinstance(doc, ReadProblem):
            yield doc
            continue
        for where, status in elements(*doc):
            yield _item(status, hashtag, where)


def _item(status: Any, hashtag: str | None, where: str) -> Item | ReadProblem:
    if not isinstance(status, dict) or not status.get("id"):
        return ReadProblem(where, "expected a status object with an id")
    boosted = status.get("reblog")
    if isinstance(boosted, dict) and boosted.get("id"):
        return Item(_post(boosted, hashtag), repost_id=str(status["id"]))
    return Item(_post(status, hashtag))


def _media_url(att: dict[str, Any]) -> str | None:
    kind = att.get("type")
    if kind == "image":
        return att.get("url") or att.get("remote_url") or att.get("preview_url")
    if kind in _STILL_TYPES:
        return att.get("preview_url")
    return None  # audio, unknown: nothing to look at


def _attachments(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        a for a in status.get("media_attachments") or [] if isinstance(a, dict) and _media_url(a)
    ]


def _post(status: dict[str, Any], hashtag: str | None) -> Post:
    media = _attachments(status)
    extra: dict[str, Any] = {"platform": "mastodon"}
    for key in ("url", "uri"):
        if status.get(key):
            extra[key] = status[key]
    quoted = dig(status, "quote", "quoted_status")  # Mastodon 4.4+ quote posts
    if isinstance(quoted, dict) and quoted.get("id"):
        extra["quote_of"] = str(quoted["id"])
        if not media:
            media = _attachments(quoted)
            extra["media_from"] = "quoted" if media else None
    if status.get("spoiler_text"):
        extra["content_warning"] = status["spoiler_text"]
    first = media[0] if media else None
    if first is not None:
        extra["media_type"] = first.get("type")
        if len(media) > 1:
            extra["media_urls"] = [_media_url(a) for a in media]
    account = obj_at(status, "account") or {}
    return Post(
        post_id=str(status["id"]),
        image=_media_url(first) if first else None,
        caption=html_to_text(str(status.get("content") or "")),
        hashtag=hashtag,
        created_at=status.get("created_at"),
        author=(account.get("acct") or account.get("username")),
        alt_text=(first.get("description") or None) if first else None,
        extra={k: v for k, v in extra.items() if v is not None},
    )


class _TextExtractor(HTMLParser):
    """Mastodon's sanitised status HTML: <p> paragraphs, <br>, links, invisible URL parts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        # Mastodon hides the scheme and tail of long links in <span class="invisible">.
        if tag == "span" and (self._hidden or ("class", "invisible") in attrs):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(content: str) -> str:
    if "<" not in content:
        return html.unescape(content).strip()
    parser = _TextExtractor()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts).strip()


def page_records(statuses: list[Any], hashtag: str | None, where: str) -> list[Record]:
    """One page of the hashtag timeline as the API returns it (newest first) -> its records,
    oldest first: the live poller's parse, the same as an export's."""
    from workers.sources.reposts import page_records as flatten

    items = [_item(s, hashtag, f"{where}[{i}]") for i, s in enumerate(statuses)]
    return flatten(reversed(items))
