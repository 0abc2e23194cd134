"""`backfire watch` and `backfire replay` as a user runs them: real subprocesses (the colour
encoder at the scene seam, tests/support/fake_backfire.py) against a fake Mastodon on 127.0.0.1
publishing on a schedule.

* `kill -9` of the watcher at 3 random points, then a restart: every published post has exactly
  one verdict, none is missing.
* A scripted campaign turn: exactly one alert reaches a receiver on 127.0.0.1, before the
  watcher's next poll after the one that brought the crossing post; `replay` of the same posts
  from an export reports the same crossing time.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import REPO_ROOT
from tests.support.fake_platforms import (
    BACKLASH_CAPTION,
    GREEN,
    RED,
    SUPPORTIVE_CAPTION,
    FakePlatforms,
)
from tests.support.infra import wait_for
from tests.support.receiver import Receiver
from workers.config import Settings
from workers.domain import parse_time
from workers.store import open_database
from workers.store.models import PostRow, VerdictRow

EVERY = "0.2s"


@pytest.fixture
def env(tmp_path: Path, settings: Settings) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BACKFIRE_")}
    return {
        **base, "BACKFIRE_DATA_DIR": str(tmp_path / "data"),
        "BACKFIRE_CACHE_DIR": str(settings.cache_dir), "BACKFIRE_OFFLINE": "1",
        "BACKFIRE_ALERT_BACKOFF_S": "0.2",
    }  # fmt: skip


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.fake_backfire", *args]


def _verdicts(tmp_path: Path) -> dict[str, int]:
    """post_id -> verdict rows, read from the watcher's store."""
    db_file = tmp_path / "data" / "backfire.db"
    if not db_file.exists():
        return {}
    db = open_database(Settings(data_dir=tmp_path / "data"), upgrade=False)
    try:
        with db.read() as s:
            q = (select(PostRow.post_id, func.count(VerdictRow.id))
                 .join(VerdictRow, VerdictRow.post_seq == PostRow.seq).group_by(PostRow.seq))
            return {pid: n for pid, n in s.execute(q).all()}
    except Exception:  # noqa: BLE001 - the tables may not exist yet while the watcher starts
        return {}
    finally:
        db.dispose()


def _has_cursor(tmp_path: Path) -> bool:
    import sqlite3

    db_file = tmp_path / "data" / "backfire.db"
    if not db_file.exists():
        return False
    try:
        with sqlite3.connect(db_file) as c:
            return bool(c.execute("SELECT count(*) FROM watch_cursors").fetchone()[0])
    except sqlite3.Error:
        return False


@pytest.mark.timeout(300)
def test_kill_9_at_three_random_points_then_restart_every_post_has_one_verdict(tmp_path, env):
    rng = random.Random(os.environ.get("BACKFIRE_TEST_SEED", "19"))
    fake = FakePlatforms()
    try:
        n_posts = 240
        plan = [(0.05, BACKLASH_CAPTION if i % 3 == 0 else SUPPORTIVE_CAPTION,
                 RED if i % 3 == 0 else GREEN) for i in range(n_posts)]  # fmt: skip
        fake.publish(n=3)  # on the timeline before the first watcher starts
        publisher = None
        cmd = _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", EVERY,
                   "--allow-private-network", "--out", str(tmp_path / "v.jsonl"))  # fmt: skip
        kills = 0
        for round_ in range(3):
            before = sum(_verdicts(tmp_path).values())
            proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            # Round 0 dies while starting or in its first polls; the others after a random
            # number of new verdicts: mid-batch, mid-commit or between commit and cursor.
            target = before + rng.randint(1, 40)
            deadline = time.monotonic() + (rng.uniform(1.0, 4.0) if round_ == 0 else 60)
            while proc.poll() is None and time.monotonic() < deadline:
                if publisher is None and _has_cursor(tmp_path):
                    # The campaign starts once a watcher has anchored its cursor: posts from
                    # before the first watch are not this test's business (the backfill is).
                    publisher = fake.schedule(plan)
                if round_ and sum(_verdicts(tmp_path).values()) >= target:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the watcher exited by itself"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        assert publisher is not None, "no watcher saved a cursor in 3 rounds"
        publisher.join(timeout=60)
        final = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            wait_for(lambda: len(_verdicts(tmp_path)) >= len(fake.posts), 120,
                     "every published post stored", every=0.3)  # fmt: skip
            time.sleep(0.6)  # more polls: nothing is scored again
        finally:
            final.send_signal(signal.SIGTERM)  # a graceful stop
            _out, err = final.communicate(timeout=60)
        assert final.returncode == 0, err[-3000:]
        assert "cursor saved" in err
    finally:
        fake.close()
    assert kills == 3
    verdicts = _verdicts(tmp_path)
    published = {p.mastodon_id for p in fake.posts}
    assert set(verdicts) == published, f"missing {sorted(published - set(verdicts))[:5]}"
    assert all(n == 1 for n in verdicts.values()), "a post was scored twice"
    rows = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len({r["post_id"] for r in rows}) == len(rows)  # --out: one row per post too
    assert {r["post_id"] for r in rows} <= published


def _campaign() -> tuple[list[tuple[float, str, tuple[int, int, int]]], int]:
    """20 supportive posts, then a rising share of backlash ones. Returns the plan and the index
    of the post at which the share of all posts so far first reaches 40 % (the window is 30 min:
    every post of the test is in it), after which it never falls back below."""
    kinds = [False] * 20
    for i in range(40):
        kinds.append(i % 10 != 0)  # 9 in 10 backlash
    plan = [(0.08, BACKLASH_CAPTION if b else SUPPORTIVE_CAPTION, RED if b else GREEN)
            for b in kinds]  # fmt: skip
    backlash, crossing = 0, None
    for i, b in enumerate(kinds):
        backlash += b
        if crossing is None and i + 1 >= 10 and backlash / (i + 1) >= 0.4:
            crossing = i
        if crossing is not None:
            assert backlash / (i + 1) >= 0.4  # one crossing, never re-armed
    assert crossing is not None
    return plan, crossing


@pytest.mark.timeout(300)
def test_campaign_turn_one_alert_within_the_poll_and_replay_reports_the_same_time(tmp_path, env):
    plan, k = _campaign()
    fake = FakePlatforms()
    receiver = Receiver()
    try:
        watch = subprocess.Popen(
            _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", EVERY,
                 "--allow-private-network", "--alert-share", "0.4", "--window", "30m",
                 "--min-posts", "10", "--webhook", receiver.url),
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # The watcher is polling (its store exists) before the campaign starts.
            wait_for(lambda: any(r.path.startswith("/api/") for r in fake.requests), 60,
                     "the watcher's first poll")  # fmt: skip
            fake.schedule(plan).join(timeout=60)
            wait_for(lambda: len(_verdicts(tmp_path)) == len(plan), 60, "every post stored")
            time.sleep(1.0)  # more polls after the crossing: still one alert
        finally:
            watch.send_signal(signal.SIGINT)
            _out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err[-3000:]
        _check_alert_and_replay(tmp_path, env, fake, receiver, plan, k, err)
    finally:
        receiver.close()
        fake.close()


def _check_alert_and_replay(tmp_path, env, fake, receiver, plan, k, err) -> None:  # noqa: ANN001
    assert len(receiver.bodies) == 1, receiver.bodies
    alert = receiver.bodies[0]
    crossing = fake.posts[k]
    assert parse_time(alert["window_end"]) == parse_time(_iso(crossing.created))
    assert alert["share"] >= 0.4 and alert["posts"] == k + 1
    # Within one poll interval: the alert arrived before the watcher's next request after the
    # one that brought the crossing post.
    reqs = [r for r in fake.requests if r.path.startswith("/api/")]
    i = next(i for i, r in enumerate(reqs) if crossing.n in r.returned)
    if i + 1 < len(reqs):
        assert receiver.times[0] <= reqs[i + 1].at
    latency = receiver.times[0] - crossing.created
    print(f"alert {latency:.2f} s after the crossing post was published (poll every {EVERY})")
    assert "ALERT #myNYPD" in err

    # The same posts from an export, replayed: the same crossing time.
    export = fake.export_mastodon(tmp_path / "statuses.jsonl")
    res = subprocess.run(
        _cmd("replay", str(export), "--hashtag", "myNYPD", "--alert-share", "0.4", "--window",
             "30m", "--min-posts", "10", "--json", "--report", str(tmp_path / "replay.html"),
             "--allow-private-network"),  # the export's image URLs point at the fake (127.0.0.1)
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    timeline = json.loads(res.stdout)
    assert timeline["posts"] == len(plan)
    [first] = timeline["crossings"]
    assert parse_time(first["at"]) == parse_time(alert["window_end"])
    assert first["message"] == alert["text"]
    html = (tmp_path / "replay.html").read_text()
    assert 'class="marker"' in html and "alert 4" in html


def _iso(t: float) -> str:
    from tests.support.fake_platforms import iso

    return iso(t)


@pytest.mark.timeout(300)
def test_watch_for_stops_by_itself_and_a_restart_continues_from_the_cursor(tmp_path, env):
    fake = FakePlatforms()
    try:
        early = fake.publish(n=2)
        # A poll interval far longer than --for: the deadline must cut the wait short.
        cmd = _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", "20s",
                   "--for", "3s", "--allow-private-network")  # fmt: skip
        first = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        ended = time.time()
        assert first.returncode == 0, first.stderr[-3000:]
        assert "from the newest posts" in first.stderr and "cursor saved" in first.stderr
        polls = fake.api_requests("/api/")
        # Generous: it stops about 3 s after it started polling, long before the 20 s poll.
        assert ended - polls[0].at < 15, f"ran {ended - polls[0].at:.1f} s with --for 3s"
        assert set(_verdicts(tmp_path)) == {p.mastodon_id for p in early}

        late = fake.publish(BACKLASH_CAPTION, RED, n=3)  # published while nobody watched
        cmd = _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", "0.5s",
                   "--for", "3s", "--allow-private-network")  # fmt: skip
        second = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert second.returncode == 0, second.stderr[-3000:]
        assert "from the saved cursor" in second.stderr
        assert "3 posts stored" in second.stderr  # only the new ones
    finally:
        fake.close()
    verdicts = _verdicts(tmp_path)
    assert set(verdicts) == {p.mastodon_id for p in early + late}
    assert all(n == 1 for n in verdicts.values())


def test_watch_backfill_option_scores_exactly_that_many_of_the_newest_earlier_posts(
    tmp_path, env
):
    fake = FakePlatforms()
    try:
        earlier = fake.publish(n=30)  # before the first watch of this tag
        cmd = _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", "0.5s",
                   "--for", "3s", "--backfill", "12", "--allow-private-network")  # fmt: skip
        run = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        bad = subprocess.run(_cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD",
                                  "--backfill", "-1", "--allow-private-network"),
                             env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert bad.returncode == 2, bad.stderr[-2000:]
    finally:
        fake.close()
    verdicts = _verdicts(tmp_path)
    assert set(verdicts) == {p.mastodon_id for p in earlier[-12:]}
    assert all(n == 1 for n in verdicts.values())


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition (labels in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if sample == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


@pytest.mark.timeout(300)
def test_metrics_port_serves_the_lag_figures_of_the_posts_scored(tmp_path, env):
    import urllib.request

    from tests.support.infra import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    fake = FakePlatforms()
    watch = None
    try:
        fake.publish(n=2)
        watch = subprocess.Popen(
            _cmd("watch", "--mastodon", fake.url, "--tag", "myNYPD", "--every", EVERY,
                 "--allow-private-network", "--metrics-port", str(port)),
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: len(_verdicts(tmp_path)) == 2, 60, "the first posts stored")
        fake.publish(BACKLASH_CAPTION, RED, n=3)
        wait_for(lambda: len(_verdicts(tmp_path)) == 5, 60, "the new posts stored")

        def scrape() -> str:
            return urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback

        labels = {"platform": "mastodon", "query": "mynypd"}
        # The figures follow the commit (a poll's verdicts are counted right after it).
        wait_for(lambda: _metric(scrape(), "backfire_watch_posts_total", outcome="ok",
                                 **labels) == 5, 30, "5 posts in the metrics")  # fmt: skip
        text = scrape()
    finally:
        if watch is not None:
            watch.send_signal(signal.SIGINT)
            _out, err = watch.communicate(timeout=60)
        fake.close()
    assert watch.returncode == 0, err[-3000:]
    assert f"Metrics on {url}" in err
    for since in ("created", "seen"):
        assert _metric(text, "backfire_watch_lag_seconds_count", since=since, **labels) == 5
        assert _metric(text, "backfire_watch_lag_seconds_sum", since=since, **labels) is not None
    assert _metric(text, "backfire_watch_posts_total", outcome="failed", **labels) in (None, 0)
    assert (_metric(text, "backfire_watch_polls_total", **labels) or 0) >= 2
    assert _metric(text, "backfire_watch_behind", **labels) == 0
    assert _metric(text, "backfire_watch_last_poll_timestamp_seconds", **labels)


@pytest.mark.timeout(300)
def test_replay_speed_runs_the_posts_clock_faster(tmp_path, env):
    """`--speed 60` on posts spanning 60 s of their own time: about 1 s of wall time, and the
    crossing is announced as the simulated clock reaches it."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import image_bytes

    red, green = tmp_path / "red.jpg", tmp_path / "green.jpg"
    red.write_bytes(image_bytes(RED))
    green.write_bytes(image_bytes(GREEN))
    t0 = datetime(2014, 4, 22, 16, 0, tzinfo=UTC)
    kinds = [False] * 6 + [True] * 7  # 13 posts, 5 s apart: 60 s from the first to the last
    rows = [{"post_id": f"p{i:02d}", "image": str(red if b else green), "hashtag": "myNYPD",
             "caption": BACKLASH_CAPTION if b else SUPPORTIVE_CAPTION,
             "created_at": (t0 + timedelta(seconds=5 * i)).isoformat().replace("+00:00", "Z")}
            for i, b in enumerate(kinds)]  # fmt: skip
    export = tmp_path / "posts.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run(
        _cmd("replay", str(export), "--speed", "60", "--alert-share", "0.4", "--window", "30m",
             "--min-posts", "5", "--json"),
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    timeline = json.loads(res.stdout)
    assert timeline["posts"] == 13
    # The clock: 60 s of posts at 60x take at least 1 s (bounded loosely above: a busy
    # machine scores slower, but nowhere near the posts' own 60 s).
    assert 0.95 <= timeline["seconds"] < 30, timeline["seconds"]
    [crossing] = timeline["crossings"]
    assert crossing["after_first_post"] == "+0m45"  # the 4th backlash post: 4 of 10
    assert "would warn now (16:00:45 UTC): 40% backlash" in res.stderr
