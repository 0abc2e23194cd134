"""`backfire watch` against fake Mastodon, Bluesky and X servers on 127.0.0.1 (images served by
the same server, fetched through the SSRF-safe fetcher): new posts scored once each, in order;
a burst between two polls caught up by pagination; 429 + Retry-After honoured; 500 retried.
The watcher runs in a thread of the test process with the colour encoder at the seam."""

from __future__ import annotations

import threading
import time

import pytest
from rich.console import Console
from sqlalchemy import func, select

from tests.live.conftest import Running
from tests.support.fake_platforms import (
    BACKLASH_CAPTION,
    GREEN,
    RED,
    SUPPORTIVE_CAPTION,
    TOKEN,
    FakePlatforms,
)
from tests.support.infra import wait_for
from workers.live.watch import Watcher, WatchOptions
from workers.net.guard import FetchPolicy
from workers.sources.live import ApiClient
from workers.store import open_database
from workers.store.models import PostRow, VerdictRow


def _source(platform: str, fake: FakePlatforms, settings, stop: threading.Event, **kw):
    client = ApiClient(FetchPolicy.from_settings(settings), platform, wait=stop.wait,
                       backoff_s=0.2, timeout_s=10)  # fmt: skip
    if platform == "mastodon":
        from workers.sources.live.mastodon import MastodonSource

        return MastodonSource(client, "myNYPD", fake.url, **kw)
    if platform == "bluesky":
        from workers.sources.live.bluesky import BlueskySource

        return BlueskySource(client, "#myNYPD", "myNYPD", fake.url, **kw)
    from workers.sources.live.twitter import TwitterSource

    return TwitterSource(client, "#myNYPD has:images", "myNYPD", fake.url, bearer_token=TOKEN,
                         **kw)  # fmt: skip


def _watch(platform, fake, settings, pipeline, every_s=0.2, **kw) -> Running:
    stop = threading.Event()
    source = _source(platform, fake, settings, stop, **kw)
    console = Console(stderr=True, width=200)
    w = Watcher(settings, source, WatchOptions(every_s=every_s), console, stop=stop,
                pipeline=pipeline)  # fmt: skip
    return Running(w)


def _stored(settings) -> list[tuple[str, str | None, int]]:
    """(post_id, verdict, verdict rows) per stored post, in the order they were stored."""
    db = open_database(settings)
    try:
        with db.read() as s:
            q = (
                select(PostRow.post_id, PostRow.seq, func.count(VerdictRow.id),
                       func.max(VerdictRow.verdict))
                .join(VerdictRow, VerdictRow.post_seq == PostRow.seq)
                .group_by(PostRow.seq).order_by(PostRow.seq)
            )  # fmt: skip
            return [(pid, v, n) for pid, _seq, n, v in s.execute(q).all()]
    finally:
        db.dispose()


@pytest.mark.parametrize("platform", ["mastodon", "bluesky", "twitter"])
def test_new_posts_are_scored_once_each_in_order(platform, platforms, live_settings,
                                                 colour_pipeline):  # fmt: skip
    early = platforms.publish(SUPPORTIVE_CAPTION, GREEN, n=3)
    run = _watch(platform, platforms, live_settings, colour_pipeline)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 3, 30, "the first 3 posts stored")
        late = []
        for i in range(6):  # published between polls, a few at a time
            late += platforms.publish(BACKLASH_CAPTION if i % 2 else SUPPORTIVE_CAPTION,
                                      RED if i % 2 else GREEN)  # fmt: skip
            time.sleep(0.15)
        wait_for(lambda: len(_stored(live_settings)) == 9, 30, "all 9 posts stored")
        time.sleep(0.6)  # a few more polls: nothing new may be scored again
    finally:
        totals = run.stop()
    rows = _stored(live_settings)
    published = [p.post_id(platform) for p in early + late]
    assert [pid for pid, _, _ in rows] == published  # in order of publication
    assert all(n == 1 for _, _, n in rows)  # one verdict each
    verdicts = {pid: v for pid, v, _ in rows}
    assert [verdicts[p.post_id(platform)] for p in late] == ["supportive", "backlash"] * 3
    assert totals.posts == 9 and totals.polls >= 5


@pytest.mark.parametrize("platform", ["mastodon", "bluesky", "twitter"])
def test_a_burst_of_500_between_polls_is_caught_up_by_pagination(platform, platforms,
                                                                 live_settings, colour_pipeline):
    platforms.publish(n=2)
    run = _watch(platform, platforms, live_settings, colour_pipeline, every_s=0.5)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 2, 30, "the first posts stored")
        platforms.publish(BACKLASH_CAPTION, RED, n=500)
        wait_for(lambda: len(_stored(live_settings)) == 502, 120, "the burst stored", every=0.5)
    finally:
        run.stop()
    rows = _stored(live_settings)
    assert sorted(pid for pid, _, _ in rows) == sorted(p.post_id(platform) for p in platforms.posts)
    assert all(n == 1 for _, _, n in rows)
    pages = [r for r in platforms.requests if r.status == 200 and "media" not in r.path]
    # Mastodon pages hold 40 statuses, Bluesky and X 100: the burst took several pages.
    assert len(pages) >= (500 // 40 if platform == "mastodon" else 5)


def test_429_with_retry_after_is_honoured(platforms, live_settings, colour_pipeline):
    platforms.publish(n=1)
    run = _watch("mastodon", platforms, live_settings, colour_pipeline)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 1, 30, "the first post stored")
        platforms.script.append((429, {"Retry-After": "2"}))
        platforms.publish(BACKLASH_CAPTION, RED, n=2)
        wait_for(lambda: len(_stored(live_settings)) == 3, 30, "the posts after the 429")
    finally:
        run.stop()
    reqs = platforms.api_requests("/api/")
    i = next(i for i, r in enumerate(reqs) if r.status == 429)
    assert reqs[i + 1].at - reqs[i].at >= 2.0  # no request before Retry-After was over
    assert all(n == 1 for _, _, n in _stored(live_settings))


def test_rate_limit_reset_header_is_honoured(platforms, live_settings, colour_pipeline):
    platforms.publish(n=1)
    run = _watch("twitter", platforms, live_settings, colour_pipeline)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 1, 30, "the first post stored")
        reset = str(int(time.time()) + 3)
        platforms.script.append((429, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}))
        platforms.publish(BACKLASH_CAPTION, RED)
        wait_for(lambda: len(_stored(live_settings)) == 2, 30, "the post after the 429")
    finally:
        run.stop()
    reqs = platforms.api_requests("/2/")
    i = next(i for i, r in enumerate(reqs) if r.status == 429)
    assert reqs[i + 1].at >= int(reset) - 0.01


def test_500_then_ok_is_retried(platforms, live_settings, colour_pipeline):
    platforms.publish(n=1)
    run = _watch("bluesky", platforms, live_settings, colour_pipeline, every_s=5)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 1, 30, "the first post stored")
        platforms.script += [(500, {}), (503, {})]
        platforms.publish(BACKLASH_CAPTION, RED)
        # Within the same poll (the interval is 5 s): two retries with backoff, then the page.
        wait_for(lambda: len(_stored(live_settings)) == 2, 30, "the post after the 500s")
    finally:
        run.stop()
    statuses = [r.status for r in platforms.api_requests("/xrpc/")]
    assert statuses[-3:] == [500, 503, 200] or statuses[-4:-1] == [500, 503, 200]


def test_bluesky_session_metrics_and_a_live_report(platforms, live_settings, colour_pipeline,
                                                   tmp_path):  # fmt: skip
    """An app-password session (renewed when the token expires), Prometheus metrics with the
    lag histogram, and the live report rewritten in place."""
    import socket
    import urllib.request

    platforms.require_session = True
    platforms.publish(BACKLASH_CAPTION, RED, n=2)
    platforms.publish(n=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()
    source = _source("bluesky", platforms, live_settings, stop, handle="me.test",
                     app_password="app-pass")  # fmt: skip
    report = tmp_path / "live" / "report.html"
    options = WatchOptions(every_s=0.2, metrics_port=port, report=report, report_every_s=0.3)
    w = Watcher(live_settings, source, options, Console(stderr=True, width=200), stop=stop,
                pipeline=colour_pipeline)  # fmt: skip
    run = Running(w)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 3, 30, "the first posts stored")
        platforms.sessions += 1  # the watcher's token is now expired
        platforms.publish(BACKLASH_CAPTION, RED)
        wait_for(lambda: len(_stored(live_settings)) == 4, 30, "the post after a new session")
        wait_for(lambda: report.exists() and '<p class="meta">4 posts' in report.read_text(),
                 30, "the report rewritten with the 4th post")  # fmt: skip
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        run.stop()
    assert platforms.sessions >= 2
    assert any(r.status == 401 for r in platforms.api_requests("/xrpc/app.bsky"))
    assert 'backfire_watch_posts_total{outcome="ok",platform="bluesky",query="#myNYPD"} 4.0' in (
        metrics
    )
    assert 'backfire_watch_lag_seconds_count{platform="bluesky",query="#myNYPD",since="created"}' \
        ' 4.0' in metrics
    assert "backfire_watch_behind" in metrics
    html = report.read_text()
    assert "#myNYPD (live)" in html and "Backlash share over time" in html
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no half-written file


@pytest.mark.parametrize("platform", ["mastodon", "bluesky", "twitter"])
def test_first_watch_backfills_several_pages_oldest_first_once_each(platform, platforms,
                                                                    live_settings,
                                                                    colour_pipeline):  # fmt: skip
    """Posts already there when a query is first watched: the `backfill` newest are scored
    (five pages of 10 here), oldest first, once each; older ones are left alone, and posts
    published afterwards follow."""
    # A millisecond apart: a post sharing the instant of the oldest one backfilled would be
    # scored too (Bluesky's `since` is a time, inclusive), and this test counts exactly.
    t0 = time.time() - 60
    too_old = [p for i in range(12) for p in platforms.publish(created=t0 + i * 0.01)]
    there = [p for i in range(50)
             for p in platforms.publish(BACKLASH_CAPTION, RED, created=t0 + 1 + i * 0.01)]
    run = _watch(platform, platforms, live_settings, colour_pipeline, limit=10, backfill=50)
    try:
        wait_for(lambda: len(_stored(live_settings)) == 50, 60, "the backfill stored")
        time.sleep(0.5)  # a few more polls: nothing older, nothing again
        after = platforms.publish(n=3)
        wait_for(lambda: len(_stored(live_settings)) == 53, 30, "the new posts stored")
    finally:
        run.stop()
    rows = _stored(live_settings)
    assert [pid for pid, _, _ in rows] == [p.post_id(platform) for p in there + after]
    assert all(n == 1 for _, _, n in rows)
    assert not {p.post_id(platform) for p in too_old} & {pid for pid, _, _ in rows}
    assert len([r for r in platforms.requests if r.status == 200]) >= 5  # more than one page


def test_backfill_0_scores_only_posts_published_after_the_start(platforms, live_settings,
                                                                colour_pipeline):  # fmt: skip
    platforms.publish(n=4)
    run = _watch("bluesky", platforms, live_settings, colour_pipeline, backfill=0)
    try:
        wait_for(lambda: len(platforms.api_requests("/xrpc/")) >= 2, 30, "the first polls")
        new = platforms.publish(BACKLASH_CAPTION, RED, n=2)
        wait_for(lambda: len(_stored(live_settings)) == 2, 30, "the new posts stored")
        time.sleep(0.5)
    finally:
        run.stop()
    assert [pid for pid, _, _ in _stored(live_settings)] == [p.post_id("bluesky") for p in new]


@pytest.mark.parametrize("platform", ["mastodon", "bluesky", "twitter"])
def test_posts_of_one_instant_across_page_boundaries_are_scored_once_each(platform, platforms,
                                                                          live_settings,
                                                                          colour_pipeline):
    """25 posts sharing one created_at (and indexedAt) published between two polls span three
    pages of 10; 5 more of that very instant arrive later. None is skipped, none scored twice:
    the cursors hold ids (Bluesky: the instant plus the URIs seen at it), not only a time."""
    platforms.publish(n=1)
    stop = threading.Event()
    source = _source(platform, platforms, live_settings, stop, limit=10)
    yielded: list[str] = []  # what the poller handed over: a post read twice shows here
    poll = source.poll

    def recording_poll(cursor):  # noqa: ANN001, ANN202
        for batch in poll(cursor):
            yielded.extend(p.post_id for p in batch.posts)
            yield batch

    source.poll = recording_poll
    run = Running(Watcher(live_settings, source, WatchOptions(every_s=0.2),
                          Console(stderr=True, width=200), stop=stop, pipeline=colour_pipeline))
    try:
        wait_for(lambda: len(_stored(live_settings)) == 1, 30, "the first post stored")
        instant = time.time()
        platforms.publish(BACKLASH_CAPTION, RED, n=25, created=instant)
        wait_for(lambda: len(_stored(live_settings)) == 26, 30, "the 25 posts of one instant")
        time.sleep(0.5)
        platforms.publish(n=5, created=instant)
        wait_for(lambda: len(_stored(live_settings)) == 31, 30, "5 more of the same instant")
        time.sleep(0.6)  # more polls: nothing scored again
    finally:
        run.stop()
    rows = _stored(live_settings)
    assert sorted(pid for pid, _, _ in rows) == sorted(p.post_id(platform)
                                                       for p in platforms.posts)  # fmt: skip
    assert all(n == 1 for _, _, n in rows)
    assert sorted(yielded) == sorted(p.post_id(platform) for p in platforms.posts)
