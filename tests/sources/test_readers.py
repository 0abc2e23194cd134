"""Each export reader on hand-written fixtures that follow the platform's documented schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.domain import Post
from workers.sources import ReadProblem, detect_format, open_reader
from workers.sources.bluesky import image_url
from workers.sources.mastodon import html_to_text

FIXTURES = Path(__file__).parent / "fixtures"


def read(name: str, fmt: str = "auto") -> tuple[dict[str, Post], list[ReadProblem]]:
    posts: dict[str, Post] = {}
    problems: list[ReadProblem] = []
    for rec in open_reader(FIXTURES / name, fmt, "myNYPD"):
        if isinstance(rec, ReadProblem):
            problems.append(rec)
        else:
            assert rec.post_id not in posts, f"{rec.post_id} emitted twice"
            posts[rec.post_id] = rec
    return posts, problems


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("twarc2_search.jsonl", "twarc2"),
        ("twarc2_flat.jsonl", "twarc2"),
        ("mastodon_tag.json", "mastodon"),
        ("mastodon_pages.jsonl", "mastodon"),
        ("bluesky_search.json", "bluesky"),
        ("bluesky_feed.jsonl", "bluesky"),
        ("bluesky_records.jsonl", "bluesky"),
    ],
)
def test_format_is_sniffed_from_the_json_shape(name: str, fmt: str) -> None:
    assert detect_format(FIXTURES / name) == fmt


def test_manifest_jsonl_still_detected_as_manifest(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text('{"post_id": "a", "image": "https://x.example/a.jpg", "caption": "hi"}\n')
    assert detect_format(p) == "jsonl"


# --- twarc2 ------------------------------------------------------------------------------------
def test_twarc2_pages_posts_captions_and_media() -> None:
    posts, _ = read("twarc2_search.jsonl")
    # 10 tweets: 3 retweets fold into 1001 and 1005 (1005 exists only in includes.tweets).
    assert list(posts) == ["1001", "1005", "1003", "1004", "1008", "1009", "1010"]
    p = posts["1001"]
    assert p.image == "https://pbs.twimg.com/media/FakeMedia1001.jpg"
    assert p.caption == "Smiles with our neighbourhood officers! #myNYPD"
    assert p.author == "example_alice"
    assert p.alt_text == "Two officers smiling next to a child holding a balloon"
    assert p.created_at == "2014-04-22T18:00:00.000Z"
    assert p.hashtag == "myNYPD"
    assert posts["1009"].image is None  # text-only tweets are kept (they fail as "no image")
    assert posts["1010"].extra["media_urls"][1].endswith("FakeMedia1010b.jpg")


def test_twarc2_retweets_resolve_to_the_original_and_count_as_reposts() -> None:
    posts, _ = read("twarc2_search.jsonl")
    assert not {"1002", "1006", "1007"} & set(posts)
    assert posts["1001"].extra["reposts"] == 1
    assert posts["1001"].extra["repost_ids"] == ["1006"]
    orig = posts["1005"]  # known only through includes.tweets
    assert orig.extra["reposts"] == 2
    assert orig.caption == "Free delivery, only at #myNYPD"  # the original's text, no "RT @"
    assert orig.author == "example_bob"
    assert orig.image == "https://pbs.twimg.com/media/FakeMedia1005.jpg"


def test_twarc2_video_and_gif_use_the_preview_frame() -> None:
    posts, _ = read("twarc2_search.jsonl")
    assert posts["1003"].image.endswith("/FakeThumb1003.jpg")
    assert posts["1003"].extra["media_type"] == "video"
    assert posts["1008"].image.endswith("/FakeGif1008.jpg")


def test_twarc2_quote_keeps_its_caption_over_the_quoted_media() -> None:
    posts, _ = read("twarc2_search.jsonl")
    q = posts["1004"]
    assert q.caption == "Sure, very friendly #myNYPD"
    assert q.image == "https://pbs.twimg.com/media/FakeMedia1001.jpg"
    assert q.extra["quote_of"] == "1001" and q.extra["media_from"] == "quoted"


def test_twarc2_malformed_lines_reported_with_line_numbers() -> None:
    _, problems = read("twarc2_search.jsonl")
    where = [p.location.rsplit("/", 1)[1] for p in problems]
    assert where == ["twarc2_search.jsonl:2", "twarc2_search.jsonl:4"]
    assert "not valid JSON" in problems[0].message


def test_twarc2_flattened_tweets() -> None:
    posts, problems = read("twarc2_flat.jsonl")
    assert list(posts) == ["2001", "2003"]
    assert posts["2001"].extra["reposts"] == 1  # 2002 is its retweet
    assert posts["2001"].author == "example_erin"
    assert posts["2001"].alt_text == "An officer handing out leaflets"
    assert posts["2003"].image.endswith("FakeFlat2010.jpg")
    assert posts["2003"].caption == "Open day, they said #myNYPD"
    assert [p.location.rsplit(":", 1)[1] for p in problems] == ["4", "5"]


# --- Mastodon ----------------------------------------------------------------------------------
def test_mastodon_array_posts_media_and_reblogs() -> None:
    posts, problems = read("mastodon_tag.json")
    assert not problems
    assert list(posts) == [f"11223344000000000{i}" for i in (1, 3, 4, 5, 6)]
    first = posts["112233440000000001"]
    assert first.image.endswith("/original/fake22.jpg")
    assert first.alt_text == "People and officers at a street fair"
    assert first.caption == "Community day with the officers! #myNYPD"
    assert first.author == "alice"
    assert first.extra["reposts"] == 1  # the boost 112233440000000002


def test_mastodon_gifv_and_video_use_preview_url() -> None:
    posts, _ = read("mastodon_tag.json")
    assert posts["112233440000000003"].image.endswith("/small/fake33.png")
    assert posts["112233440000000004"].image.endswith("/small/fake44.png")
    assert posts["112233440000000005"].image is None  # audio only: nothing to score
    assert posts["112233440000000006"].image == "https://files.remote.example/original/fake66.jpg"


def test_mastodon_content_html_becomes_plain_text() -> None:
    posts, _ = read("mastodon_tag.json")
    assert posts["112233440000000003"].caption == (
        "Free delivery, only at #myNYPD\n(look closely) & see news.example/story/2014/04/"
    )
    assert html_to_text("<p>one</p><p>two &lt;3</p>") == "one\n\ntwo <3"


def test_mastodon_jsonl_pages_and_malformed_lines() -> None:
    posts, problems = read("mastodon_pages.jsonl")
    assert list(posts) == ["300", "302", "304"]
    assert posts["302"].extra["reposts"] == 2  # boosted twice; the original only inside boosts
    assert posts["302"].alt_text is None  # an empty description is no alt text
    assert [p.location.rsplit(":", 1)[1] for p in problems] == ["4", "5"]


# --- Bluesky -----------------------------------------------------------------------------------
A = "did:plc:exampleaaaaaaaaaaaaaaaaa"


def test_bluesky_search_posts_views() -> None:
    posts, problems = read("bluesky_search.json")
    assert not problems
    assert len(posts) == 5
    first = posts[f"at://{A}/app.bsky.feed.post/3kexampleaa01"]
    assert first.caption == "Coffee with the precinct #myNYPD"
    assert first.alt_text == "Officers holding coffee cups"
    assert first.author == "alice.example.com"
    assert first.image == image_url(A, "bafkreiexampleimage" + "0" * 37 + "1")


def test_bluesky_record_with_media_quote_and_video() -> None:
    posts, _ = read("bluesky_search.json")
    by_suffix = {k.rsplit("/", 1)[1]: v for k, v in posts.items()}
    rwm = by_suffix["3kexamplebb02"]
    assert rwm.alt_text == "Officers pinning a man to the pavement"
    assert rwm.extra["quote_of"].endswith("3kexampleaa01")
    quote = by_suffix["3kexampledd04"]  # quotes a post with a picture, has none of its own
    assert quote.caption == "Look at this one lol #myNYPD"
    assert quote.image == rwm.image and quote.extra["media_from"] == "quoted"
    video = by_suffix["3kexamplecc03"]
    assert video.image.endswith("/thumbnail.jpg") and video.extra["media_type"] == "video"


def test_bluesky_blob_without_view_builds_the_cdn_url() -> None:
    posts, _ = read("bluesky_search.json")
    p = next(v for k, v in posts.items() if k.endswith("3kexampleee05"))
    assert p.image == (
        "https://cdn.bsky.app/img/feed_fullsize/plain/did:plc:exampleeeeeeeeeeeeeeeeee/"
        "bafkreiexampleimage00000000000000000000000000000000000005@jpeg"
    )


def test_bluesky_feed_reposts_collapse_and_malformed_lines() -> None:
    posts, problems = read("bluesky_feed.jsonl")
    assert len(posts) == 2
    kettled = next(v for k, v in posts.items() if k.endswith("3kexamplegg02"))
    assert kettled.extra["reposts"] == 2
    multi = next(v for k, v in posts.items() if k.endswith("3kexampleff01"))
    assert len(multi.extra["media_urls"]) == 2
    locs = [p.location.rsplit(":", 1)[1] for p in problems]
    assert locs == ["2", "3[1]"]


def test_bluesky_raw_records() -> None:
    posts, problems = read("bluesky_records.jsonl")
    did = "did:plc:exampleiiiiiiiiiiiiiiiiii"
    assert posts[f"at://{did}/app.bsky.feed.post/3kexampleii01"].extra["reposts"] == 1
    legacy = posts[f"at://{did}/app.bsky.feed.post/3kexampleii02"]
    assert legacy.image == image_url(did, "bafkreiexamplerecimg02")
    assert len(posts) == 2
    assert any("DID is unknown" in p.message for p in problems)


def test_format_can_be_forced(tmp_path: Path) -> None:
    posts, _ = read("mastodon_tag.json", fmt="mastodon")
    assert len(posts) == 5
