"""twarc2 / Twitter API v2 exports.

Two layouts, both JSON Lines:
* response pages as `twarc2 search "#myNYPD" tweets.jsonl` writes them: `data` (tweets) with
  `includes.media` (by `media_key`), `includes.users` (by `id`) and `includes.tweets`
  (referenced tweets: retweeted, quoted, replied to);
* `twarc2 flatten` output: one tweet per line with `author`, `attachments.media` and
  `referenced_tweets[]` expanded in place.

Photos are scored from `url`; videos and GIFs from `preview_image_url` (their preview frame).
Retweets are folded into the tweet they repeat (workers.sources.reposts). A quote tweet keeps its
own text and, when it has no media of its own, is scored on the quoted tweet's picture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.domain import Post
from workers.sources import ReadProblem, Record
from workers.sources.jsondocs import dig, iter_documents, obj_at
from workers.sources.reposts import Item, collapse

_RT_PREFIX = re.compile(r"^RT @\w+: ")


@dataclass
class _Context:
    """Expansions of one response page (empty for flattened tweets, which carry their own)."""

    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)


def is_twarc2(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("data"), list) and ("includes" in doc or "meta" in doc):
        return True
    # A flattened tweet: Twitter v2 field names no other platform uses.
    return "text" in doc and any(
        k in doc for k in ("author_id", "edit_history_tweet_ids", "__twarc", "public_metrics")
    )


def read_twarc2(path: Path, hashtag: str | None) -> Iterator[Record]:
    return collapse(lambda: _items(path, hashtag))


def _items(path: Path, hashtag: str | None) -> Iterator[Item | ReadProblem]:
    for doc in iter_documents(path):
        if isinstance(doc, ReadProblem):
            yield doc
            continue
        where, obj = doc
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            ctx = _page_context(obj)
            for i, tweet in enumerate(obj["data"]):
                yield _item(tweet, ctx, hashtag, f"{where}[{i}]")
        elif isinstance(obj, dict) and "data" in obj and isinstance(obj["data"], dict):
            # A single-tweet lookup response: {"data": {...}, "includes": {...}}.
            yield _item(obj["data"], _page_context(obj), hashtag, where)
        elif isinstance(obj, dict) and "errors" in obj and "data" not in obj:
            continue  # an error-only page twarc also writes; it holds no tweets
        else:
            yield _item(obj, _Context(), hashtag, where)


def _page_context(page: dict[str, Any]) -> _Context:
    inc = obj_at(page, "includes") or {}
    ctx = _Context()
    for m in inc.get("media") or []:
        if isinstance(m, dict) and m.get("media_key"):
            ctx.media[str(m["media_key"])] = m
    for u in inc.get("users") or []:
        if isinstance(u, dict) and u.get("id"):
            ctx.users[str(u["id"])] = u
    for t in [*(inc.get("tweets") or []), *(page.get("data") or [])]:
        if isinstance(t, dict) and t.get("id"):
            ctx.tweets[str(t["id"])] = t
    return ctx


def _referenced(tweet: dict[str, Any], kind: str, ctx: _Context) -> tuple[str, dict | None] | None:
    """(id, tweet or None if not expanded) of the tweet this one retweets/quotes, if any."""
    for ref in tweet.get("referenced_tweets") or []:
        if isinstance(ref, dict) and ref.get("type") == kind and ref.get("id"):
            rid = str(ref["id"])
            # Flattened exports put the whole referenced tweet in the reference itself.
            full = ref if "text" in ref else ctx.tweets.get(rid)
            return rid, full
    return None


def _item(tweet: Any, ctx: _Context, hashtag: str | None, where: str) -> Item | ReadProblem:
    if not isinstance(tweet, dict):
        return ReadProblem(where, "expected a tweet object")
    if not tweet.get("id"):
        return ReadProblem(where, "tweet without an id")
    retweeted = _referenced(tweet, "retweeted", ctx)
    if retweeted is not None:
        rid, original = retweeted
        if original is None:
            # The original was not expanded: v2 retweets still carry its media keys and a
            # truncated copy of its text, which is the best the export offers.
            original = {**tweet, "id": rid, "text": _RT_PREFIX.sub("", str(tweet.get("text", "")))}
            original.pop("referenced_tweets", None)
            original.pop("author_id", None)
            original.pop("author", None)
        return Item(_post(original, ctx, hashtag), repost_id=str(tweet["id"]))
    return Item(_post(tweet, ctx, hashtag))


def _media(tweet: dict[str, Any], ctx: _Context) -> list[dict[str, Any]]:
    att = obj_at(tweet, "attachments") or {}
    inline = att.get("media")
    if isinstance(inline, list) and all(isinstance(m, dict) for m in inline):
        return inline
    return [ctx.media[str(k)] for k in att.get("media_keys") or [] if str(k) in ctx.media]


def _media_url(m: dict[str, Any]) -> str | None:
    if m.get("type") == "photo":
        return m.get("url") or m.get("preview_image_url")
    # video and animated_gif: the preview frame is the picture people see in the timeline
    return m.get("preview_image_url") or m.get("url")


def _post(tweet: dict[str, Any], ctx: _Context, hashtag: str | None) -> Post:
    media = [m for m in _media(tweet, ctx) if _media_url(m)]
    extra: dict[str, Any] = {"platform": "twitter"}
    quoted = _referenced(tweet, "quoted", ctx)
    if quoted is not None:
        extra["quote_of"] = quoted[0]
        if not media and quoted[1] is not None:
            media = [m for m in _media(quoted[1], ctx) if _media_url(m)]
            if media:
                extra["media_from"] = "quoted"
    first = media[0] if media else None
    if first is not None:
        extra["media_type"] = first.get("type")
        if len(media) > 1:
            extra["media_urls"] = [_media_url(m) for m in media]
    author = obj_at(tweet, "author")
    if author is None and tweet.get("author_id"):
        author = ctx.users.get(str(tweet["author_id"]), {"id": tweet["author_id"]})
    text = dig(tweet, "note_tweet", "text") or tweet.get("text") or ""  # long tweets
    return Post(
        post_id=str(tweet["id"]),
        image=_media_url(first) if first else None,
        caption=str(text),
        hashtag=hashtag,
        created_at=tweet.get("created_at"),
        author=(str(author.get("username") or author.get("id")) if author else None),
        alt_text=(first.get("alt_text") if first else None),
        extra=extra,
    )


def page_records(page: dict[str, Any], hashtag: str | None, where: str) -> list[Record]:
    """One recent-search response page (`data`, `includes`, `meta`) -> its records, in page
    order: the live poller's parse, the same as a twarc2 export's."""
    from workers.sources.reposts import page_records as flatten

    ctx = _page_context(page)
    tweets = page.get("data") if isinstance(page.get("data"), list) else []
    return flatten(_item(t, ctx, hashtag, f"{where}[{i}]") for i, t in enumerate(tweets or []))
