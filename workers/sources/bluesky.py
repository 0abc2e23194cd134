"""Bluesky exports: `app.bsky.feed.searchPosts` (`{"posts": [PostView]}`), `getAuthorFeed` /
feeds (`{"feed": [FeedViewPost]}`), `com.atproto.repo.listRecords` (`{"records": [{uri, cid,
value}]}`), each saved whole or one page (or one item) per line.

Hydrated posts carry an `embed` view with CDN URLs: `app.bsky.embed.images#view` (`fullsize`),
`app.bsky.embed.video#view` (`thumbnail`), `app.bsky.embed.recordWithMedia#view` (`media` plus a
quoted record). Raw records only carry blob CIDs; the image URL is built from the author's DID
and the CID exactly as the Bluesky clients do. `record.text` is the caption; a post's id is its
`at://` URI. Reposts (`reason` `#reasonRepost`, or raw `app.bsky.feed.repost` records) are folded
into the post they repeat (workers.sources.reposts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workers.domain import Post
from workers.sources import ReadProblem, Record
from workers.sources.jsondocs import dig, iter_documents, obj_at
from workers.sources.reposts import Item, collapse

CDN = "https://cdn.bsky.app"
VIDEO_CDN = "https://video.bsky.app"
_PAGE_KEYS = ("posts", "feed", "records")


def is_bluesky(doc: Any) -> bool:
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    if not isinstance(doc, dict):
        return False
    if any(isinstance(doc.get(k), list) for k in _PAGE_KEYS):
        return True
    t = doc.get("$type") or dig(doc, "value", "$type") or dig(doc, "record", "$type") or ""
    uri = doc.get("uri") or dig(doc, "post", "uri") or ""
    return str(t).startswith("app.bsky.") or str(uri).startswith("at://")


def image_url(did: str, cid: str, kind: str = "feed_fullsize") -> str:
    """The CDN URL clients build for an image blob (what `images#view.fullsize` holds)."""
    return f"{CDN}/img/{kind}/plain/{did}/{cid}@jpeg"


def video_thumbnail_url(did: str, cid: str) -> str:
    return f"{VIDEO_CDN}/watch/{did}/{cid}/thumbnail.jpg"


def read_bluesky(path: Path, hashtag: str | None) -> Iterator[Record]:
    return collapse(lambda: _items(path, hashtag))


def _items(path: Path, hashtag: str | None) -> Iterator[Item | ReadProblem]:
    for doc in iter_documents(path):
        if isinstance(doc, ReadProblem):
            yield doc
            continue
        where, obj = doc
        items = obj if isinstance(obj, list) else None
        if isinstance(obj, dict):
            items = next((obj[k] for k in _PAGE_KEYS if isinstance(obj.get(k), list)), None)
        if items is None:
            yield _item(obj, hashtag, where)
        else:
            for i, it in enumerate(items):
                yield _item(it, hashtag, f"{where}[{i}]")


def _did_of(uri: str) -> str | None:
    # at://did:plc:abc/app.bsky.feed.post/3k... → did:plc:abc
    if not uri.startswith("at://"):
        return None
    did = uri[5:].split("/", 1)[0]
    return did if did.startswith("did:") else None


def _item(obj: Any, hashtag: str | None, where: str) -> Item | ReadProblem:
    if not isinstance(obj, dict):
        return ReadProblem(where, "expected a post object")
    if isinstance(obj.get("post"), dict):  # FeedViewPost
        post = _hydrated(obj["post"], hashtag, where)
        if isinstance(post, ReadProblem):
            return post
        reason = obj_at(obj, "reason")
        if reason and str(reason.get("$type", "")).endswith("#reasonRepost"):
            by = dig(reason, "by", "did") or dig(reason, "by", "handle") or "unknown"
            return Item(post, repost_id=str(reason.get("uri") or f"{post.post_id}#repost-by-{by}"))
        return Item(post)
    if isinstance(obj.get("record"), dict) and "author" in obj:  # PostView
        post = _hydrated(obj, hashtag, where)
        return post if isinstance(post, ReadProblem) else Item(post)
    # Raw records: {"uri", "cid", "value"} from listRecords, or a bare record (no DID: unusable).
    value = obj_at(obj, "value")
    record = obj if value is None else value
    kind = record.get("$type")
    uri = str(obj.get("uri") or "")
    did = _did_of(uri)
    if kind == "app.bsky.feed.repost":
        subject = dig(record, "subject", "uri")
        if not subject:
            return ReadProblem(where, "repost record without a subject")
        return Item(None, repost_id=uri or f"{subject}#repost", original_id=str(subject))
    if kind not in (None, "app.bsky.feed.post"):
        return ReadProblem(where, f"not a post record ($type {kind})")
    if did is None:
        return ReadProblem(where, "record without an at:// URI: its author's DID is unknown")
    return Item(_raw_post(uri, did, record, hashtag))


def _hydrated(view: dict[str, Any], hashtag: str | None, where: str) -> Post | ReadProblem:
    uri = str(view.get("uri") or "")
    record = obj_at(view, "record") or {}
    if not uri:
        return ReadProblem(where, "post without a uri")
    did = str(dig(view, "author", "did") or _did_of(uri) or "")
    extra: dict[str, Any] = {"platform": "bluesky"}
    media = _view_media(view.get("embed"), extra)
    if not media and did and isinstance(record.get("embed"), dict):
        media = _record_media(did, record["embed"], extra)  # views missing: fall back to blobs
    for key in ("repostCount", "likeCount", "quoteCount"):
        if isinstance(view.get(key), int):
            extra.setdefault("counts", {})[key] = view[key]
    return _build(uri, record, media, extra, dig(view, "author", "handle") or did, hashtag)


def _view_media(embed: Any, extra: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """(url, alt, kind) from an embed view, following quotes when the post has no media."""
    if not isinstance(embed, dict):
        return []
    t = str(embed.get("$type", ""))
    if t == "app.bsky.embed.images#view":
        return [
            (im["fullsize"], im.get("alt") or None, "image")
            for im in embed.get("images") or [] if isinstance(im, dict) and im.get("fullsize")
        ]  # fmt: skip
    if t == "app.bsky.embed.video#view":
        thumb = embed.get("thumbnail")
        return [(thumb, embed.get("alt") or None, "video")] if thumb else []
    if t == "app.bsky.embed.recordWithMedia#view":
        quoted = dig(embed, "record", "record", "uri")
        if quoted:
            extra["quote_of"] = quoted
        return _view_media(embed.get("media"), extra)
    if t == "app.bsky.embed.record#view":
        rec = obj_at(embed, "record") or {}
        if rec.get("uri"):
            extra["quote_of"] = rec["uri"]
        for inner in rec.get("embeds") or []:  # a quote of a post with pictures
            media = _view_media(inner, {})
            if media:
                extra["media_from"] = "quoted"
                return media
    return []


def _blob_cid(blob: Any) -> str | None:
    # Current form {"$type": "blob", "ref": {"$link": cid}}; legacy form {"cid": cid}.
    return dig(blob, "ref", "$link") or (blob.get("cid") if isinstance(blob, dict) else None)


def _record_media(did: str, embed: dict[str, Any], extra: dict[str, Any]) -> list:
    t = embed.get("$type")
    if t == "app.bsky.embed.images":
        out = []
        for im in embed.get("images") or []:
            cid = _blob_cid(dig(im, "image"))
            if cid:
                out.append((image_url(did, cid), im.get("alt") or None, "image"))
        return out
    if t == "app.bsky.embed.video":
        cid = _blob_cid(embed.get("video"))
        return [(video_thumbnail_url(did, cid), embed.get("alt") or None, "video")] if cid else []
    if t == "app.bsky.embed.recordWithMedia":
        quoted = dig(embed, "record", "record", "uri")
        if quoted:
            extra["quote_of"] = quoted
        media = embed.get("media")
        return _record_media(did, media, extra) if isinstance(media, dict) else []
    if t == "app.bsky.embed.record" and dig(embed, "record", "uri"):
        extra["quote_of"] = dig(embed, "record", "uri")  # the quoted post's blobs are not here
    return []


def _raw_post(uri: str, did: str, record: dict[str, Any], hashtag: str | None) -> Post:
    extra: dict[str, Any] = {"platform": "bluesky"}
    embed = record.get("embed")
    media = _record_media(did, embed, extra) if isinstance(embed, dict) else []
    return _build(uri, record, media, extra, did, hashtag)


def _build(
    uri: str, record: dict[str, Any], media: list, extra: dict[str, Any], author: str | None,
    hashtag: str | None,
) -> Post:  # fmt: skip
    if media:
        extra["media_type"] = media[0][2]
        if len(media) > 1:
            extra["media_urls"] = [m[0] for m in media]
    return Post(
        post_id=uri,
        image=media[0][0] if media else None,
        caption=str(record.get("text") or ""),
        hashtag=hashtag,
        created_at=record.get("createdAt"),
        author=author,
        alt_text=media[0][1] if media else None,
        extra=extra,
    )


def page_records(page: dict[str, Any], hashtag: str | None, where: str) -> list[Record]:
    """One `searchPosts` page (`{"posts": [PostView], "cursor"}`) -> its records, in page
    order: the live poller's parse, the same as an export's."""
    from workers.sources.reposts import page_records as flatten

    posts = page.get("posts") if isinstance(page.get("posts"), list) else []
    return flatten(_item(p, hashtag, f"{where}[{i}]") for i, p in enumerate(posts or []))
