"""`backfire watch --queue`: the watcher hands each new post to a real Celery worker (real
Redis, the tiny real CLIP) through the one ingest path; the posts are scored once each, the
watcher collects their verdicts (lag, --out) and its queue depth drains to zero."""

from __future__ import annotations

import json
import threading
import time

from rich.console import Console

from tests.live.conftest import Running
from tests.support.fake_platforms import BACKLASH_CAPTION, RED, FakePlatforms
from tests.support.infra import wait_for
from workers.live.watch import Watcher, WatchOptions
from workers.net.guard import FetchPolicy
from workers.sources.live import ApiClient
from workers.sources.live.mastodon import MastodonSource
from workers.store import open_database
from workers.store import posts as repo


def _queue_watcher(settings, fake: FakePlatforms, out) -> Watcher:
    """A `watch --queue` of #myNYPD on the fake Mastodon, polling every 0.3 s, rows to `out`."""
    stop = threading.Event()
    client = ApiClient(FetchPolicy.from_settings(settings), "mastodon", wait=stop.wait)
    source = MastodonSource(client, "myNYPD", fake.url)
    return Watcher(settings, source, WatchOptions(every_s=0.3, queue=True, out=out),
                   Console(stderr=True, width=200), stop=stop)  # fmt: skip


def test_watch_queue_hands_posts_to_the_workers(qsettings, worker_factory, tmp_path):
    fake = FakePlatforms()
    try:
        worker_factory(qsettings)
        fake.publish(n=2)
        out = tmp_path / "v.jsonl"
        w = _queue_watcher(qsettings, fake, out)
        run = Running(w)
        try:
            wait_for(lambda: w.totals.posts == 2, 120, "the first posts scored by the worker")
            fake.publish(BACKLASH_CAPTION, RED, n=3)
            wait_for(lambda: w.totals.posts == 5, 120, "the new posts scored by the worker")
        finally:
            totals = run.stop()
    finally:
        fake.close()
    assert totals.ok == 5 and totals.failed == 0
    db = open_database(qsettings, upgrade=False)
    try:
        counts = repo.status_counts(db)
    finally:
        db.dispose()
    assert counts == {"done": 5}  # stored once each, by the worker
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["post_id"] for r in rows) == sorted(p.mastodon_id for p in fake.posts)
    assert all(r["status"] == "ok" and r["verdict"] for r in rows)
    assert "queue depth 0" in w.progress_line()


def test_watch_queue_fetches_a_pages_images_concurrently_and_hands_each_post_over_once(
    qsettings, worker_factory, tmp_path
):
    """A backfill of 12 posts whose images each take 0.3 s to serve: downloaded a few at a
    time (within the bound), each image fetched once, each post stored and scored once."""
    fake = FakePlatforms(media_latency_s=0.3)
    settings = qsettings.model_copy(update={"watch_fetch_concurrency": 4})
    try:
        worker_factory(settings)
        fake.publish(n=6)
        fake.publish(BACKLASH_CAPTION, RED, n=6)
        out = tmp_path / "v.jsonl"
        w = _queue_watcher(settings, fake, out)
        run = Running(w)
        try:
            wait_for(lambda: w.totals.posts == 12, 120, "the 12 posts scored by the worker")
            time.sleep(1.0)  # more polls: nothing handed over again
        finally:
            totals = run.stop()
    finally:
        fake.close()
    assert totals.ok == 12 and totals.failed == 0
    assert fake.media_hits == 12  # one download per post (the worker reads the stored blob)
    assert 2 <= fake.media_max_in_flight <= 4
    db = open_database(settings, upgrade=False)
    try:
        assert repo.status_counts(db) == {"done": 12}
    finally:
        db.dispose()
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["post_id"] for r in rows) == sorted(p.mastodon_id for p in fake.posts)
