"""Early-warning alerts: one webhook per crossing, re-armed after recovery, retried, recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.support.receiver import Receiver
from workers.cli.app import app
from workers.config import Settings, get_settings
from workers.notify.alerts import AlertTee, evaluate_rows
from workers.notify.rules import RuleStore, add_rule, parse_window
from workers.store import open_database
from workers.store.models import AlertRuleRow

T0 = datetime(2014, 4, 22, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    # The CLI reads settings once per process (lru_cache); each test sets its own data_dir.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def asettings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"allow_private_network": True, "alert_backoff_s": 0.01, "alert_attempts": 3}
    )


def rows(pattern: str, start_min: int = 0, tag: str = "myNYPD") -> list[dict]:
    """One post a minute; 'b' backlash, 'n' neutral, 's' supportive, 'x' failed."""
    out = []
    for i, c in enumerate(pattern):
        k = start_min + i
        r = {
            "post_id": f"{tag}-{k:04d}", "hashtag": tag,
            "created_at": (T0 + timedelta(minutes=k)).isoformat().replace("+00:00", "Z"),
            "status": "error" if c == "x" else "ok", "caption_text": f"caption {k}",
            "image": f"/img/{k}.jpg", "reasons": ["restraint 0.9"] if c == "b" else [],
        }  # fmt: skip
        if c != "x":
            r["verdict"] = {"b": "backlash", "n": "neutral", "s": "supportive"}[c]
            r["confidence"] = 0.5 + (k % 10) / 20
        out.append(r)
    return out


def rule(s: Settings, url: str, **kw) -> str:
    args = {"hashtag": "myNYPD", "threshold": 0.3, "window": "30m", "min_posts": 10, "webhook": url}
    return add_rule(s, **{**args, **kw}).id


def test_a_crossing_fires_exactly_once_with_the_right_body(asettings, receiver) -> None:
    rid = rule(asettings, receiver.url)
    run = rows("n" * 20 + "b" * 20)
    fired = evaluate_rows(asettings, run)
    assert len(fired) == 1 and fired[0][1].ok
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["event"] == "backlash.threshold_crossed" and body["rule_id"] == rid
    assert body["hashtag"] == "myNYPD" and body["window"] == "30m"
    assert body["window_seconds"] == 1800 and body["threshold"] == 0.3
    # The first post at which the last 30 minutes held ≥ 30 % backlash: minute 28 (20 n + 9 b).
    assert body["posts"] == 29 and body["backlash_posts"] == 9
    assert body["share"] == pytest.approx(9 / 29, abs=1e-4)
    assert body["window_end"] == "2014-04-22T14:28:00Z"
    assert "Backlash alert for #myNYPD" in body["text"] and "31%" in body["text"]
    assert 1 <= len(body["top_posts"]) <= 3
    assert all(p["post_id"] in {r["post_id"] for r in run[20:]} for p in body["top_posts"])
    assert body["top_posts"][0]["caption"].startswith("caption ")

    # Same rows again (a re-run), and more backlash: still the same crossing, no new alert.
    assert evaluate_rows(asettings, run) == []
    assert evaluate_rows(asettings, rows("b" * 10, start_min=40)) == []
    assert len(receiver.bodies) == 1
    (r,) = RuleStore.from_settings(asettings).load()
    assert r.fired == 1 and not r.armed and r.deliveries[-1].ok


def test_rearms_after_the_share_falls_back(asettings, receiver) -> None:
    rule(asettings, receiver.url)
    evaluate_rows(asettings, rows("n" * 20 + "b" * 20))  # fires
    evaluate_rows(asettings, rows("n" * 40, start_min=40))  # share falls to 0: re-armed
    (r,) = RuleStore.from_settings(asettings).load()
    assert r.armed and r.fired == 1
    fired = evaluate_rows(asettings, rows("b" * 20, start_min=80))  # relapse: fires again
    assert len(fired) == 1 and len(receiver.bodies) == 2
    assert RuleStore.from_settings(asettings).load()[0].fired == 2


def test_one_batch_with_two_crossings_fires_twice(asettings, receiver) -> None:
    rule(asettings, receiver.url)
    fired = evaluate_rows(asettings, rows("n" * 20 + "b" * 20 + "n" * 40 + "b" * 20))
    assert len(fired) == 2 and len(receiver.bodies) == 2


def test_min_posts_other_hashtags_and_failures_do_not_count(asettings, receiver) -> None:
    rule(asettings, receiver.url, min_posts=20)
    assert evaluate_rows(asettings, rows("b" * 15)) == []  # too few posts in the window
    assert evaluate_rows(asettings, rows("b" * 40, tag="otherTag")) == []
    assert evaluate_rows(asettings, rows("n" * 20 + "x" * 40, start_min=100)) == []
    assert receiver.hits == 0


def test_a_failing_receiver_is_retried_then_recorded_as_failed(asettings) -> None:
    bad = Receiver(statuses=[500] * 10)
    try:
        rule(asettings, bad.url)
        ((_f, d),) = evaluate_rows(asettings, rows("b" * 12))
    finally:
        bad.close()
    assert bad.hits == 3 and not d.ok and d.attempts == 3 and d.status == 500
    (r,) = RuleStore.from_settings(asettings).load()
    assert r.deliveries[-1].ok is False and r.deliveries[-1].error == "HTTP 500"
    listing = CliRunner().invoke(
        app, ["alert", "list"], env={"BACKFIRE_DATA_DIR": str(asettings.data_dir)}
    )
    assert "FAILED" in listing.output


def test_a_flaky_receiver_gets_the_alert_on_a_retry(asettings) -> None:
    flaky = Receiver(statuses=[503, 502])
    try:
        rule(asettings, flaky.url)
        ((_f, d),) = evaluate_rows(asettings, rows("b" * 12))
    finally:
        flaky.close()
    assert d.ok and d.attempts == 3 and flaky.hits == 3 and len(flaky.bodies) == 1


def test_an_unreachable_receiver_is_retried_and_failed(asettings) -> None:
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens on that port any more
    rule(asettings, url)
    ((_f, d),) = evaluate_rows(asettings, rows("b" * 12))
    assert not d.ok and d.attempts == 3 and "Connection" in (d.error or "")


def test_score_hook_collects_rows_only_when_rules_exist(asettings, receiver) -> None:
    tee = AlertTee(asettings)
    written: list[dict] = []
    assert tee.wrap(written.append) == written.append  # no rules: nothing collected
    rule(asettings, receiver.url)
    tee = AlertTee(asettings)
    write = tee.wrap(written.append)
    for r in rows("b" * 12):
        write(r)

    class Con:
        lines: list[str] = []

        def print(self, s: str, **kw) -> None:
            self.lines.append(s)

    con = Con()
    tee.finish(con)
    assert len(written) == 12 and len(receiver.bodies) == 1
    assert "→ sent" in con.lines[0]


def test_cli_add_list_remove_and_ssrf_check(settings: Settings, receiver) -> None:
    env = {"BACKFIRE_DATA_DIR": str(settings.data_dir)}
    cli = CliRunner()
    args = ["alert", "add", "--hashtag", "#myNYPD", "--backlash-share", "0.3", "--window", "30m",
            "--min-posts", "20", "--webhook", receiver.url]  # fmt: skip
    refused = cli.invoke(app, args, env=env)
    assert refused.exit_code == 2 and "loopback" in refused.output
    for url in ("http://169.254.169.254/latest", "http://10.0.0.1/", "file:///etc/passwd",
                "ftp://example.org/x", "http://user:pw@127.0.0.1/"):  # fmt: skip
        bad = cli.invoke(app, [*args[:-1], url], env=env)
        assert bad.exit_code == 2, url
    ok = cli.invoke(app, [*args, "--allow-private-network"], env=env)
    assert ok.exit_code == 0, ok.output
    rid = ok.output.split(":")[0]
    listed = cli.invoke(app, ["alert", "list", "--json"], env=env)
    (r,) = json.loads(listed.output)
    assert r["id"] == rid and r["hashtag"] == "myNYPD" and r["window_s"] == 1800 and r["armed"]
    assert cli.invoke(app, ["alert", "remove", rid], env=env).exit_code == 0
    assert json.loads(cli.invoke(app, ["alert", "list", "--json"], env=env).output) == []
    assert cli.invoke(app, ["alert", "remove", rid], env=env).exit_code == 2


def test_parse_window() -> None:
    assert [parse_window(w) for w in ("30m", "2h", "1d", "90s", "45")] == [
        1800,
        7200,
        86400,
        90,
        45,
    ]
    with pytest.raises(Exception, match="30m"):
        parse_window("soon")


def test_rules_live_in_the_store(asettings, receiver) -> None:
    # The store shared with the API and the workers, not a file beside it.
    rid = rule(asettings, receiver.url)
    db = open_database(asettings, upgrade=False)
    with db.read() as s:
        (row,) = s.scalars(select(AlertRuleRow)).all()
    db.dispose()
    assert row.id == rid and row.webhook == receiver.url and row.owner is None
    assert not (asettings.data_dir / "alerts.json").exists()


def test_workers_evaluate_as_verdicts_arrive(asettings, receiver) -> None:
    """The worker path: each stored verdict evaluates its hashtag's rules on a window read from
    the store; an API key's rule counts only that key's posts; deliveries go out by id."""
    from workers.notify.watch import evaluate_after_verdict, send_delivery
    from workers.store.posts import NewPost, create_post, record_result

    db = open_database(asettings)
    cli_rule = rule(asettings, receiver.url, min_posts=5, threshold=0.5)
    key_rule = add_rule(
        asettings, hashtag="mynypd", threshold=0.5, window="30m", min_posts=5,
        webhook=receiver.url, owner="k1", db=db,
    ).id  # fmt: skip

    def verdict(owner: str, minute: int, v: str) -> list[int]:
        created = (T0 + timedelta(minutes=minute)).isoformat()
        new = NewPost(owner=owner, media_sha256="0" * 64, hashtag="myNYPD",
                      post_id=f"{owner}-{minute}", created_at=created)  # fmt: skip
        row, _ = create_post(db, new)
        record = {"verdict": v, "confidence": 0.9, "reasons": ["arrest 0.9"]}
        record_result(db, row.seq, "pv", record, detected=[], scoring_s=0.01)
        return evaluate_after_verdict(db, row.seq)

    fired = [verdict("k2", m, "backlash") for m in range(6)]
    assert [len(f) for f in fired] == [0, 0, 0, 0, 1, 0]  # the operator's rule sees k2's posts
    fired = [verdict("k1", m, "backlash") for m in range(10, 15)]
    # k1's rule fires on k1's 5th post only; the operator's rule is still disarmed.
    assert [len(f) for f in fired] == [0, 0, 0, 0, 1]
    by_rule = {r.id: r for r in RuleStore(db).load()}
    assert by_rule[cli_rule].fired == 1 and by_rule[key_rule].fired == 1

    (delivery_id,) = fired[-1]
    assert send_delivery(asettings, db, delivery_id, 1) == ("sent", None)
    assert send_delivery(asettings, db, delivery_id, 1) == ("skip", None)  # re-delivered message
    (body,) = receiver.bodies
    assert body["rule_id"] == key_rule and body["posts"] == 5
    assert {p["post_id"] for p in body["top_posts"]} <= {f"k1-{m}" for m in range(10, 15)}
    assert RuleStore(db).load(owner="k1")[0].deliveries[-1].state == "sent"
    db.dispose()


def test_worker_delivery_retries_then_fails(asettings) -> None:
    from workers.notify.watch import send_delivery
    from workers.store import alerts as store

    bad = Receiver(statuses=[500] * 5)
    db = open_database(asettings)
    try:
        rid = rule(asettings, bad.url)
        with db.write() as s:
            payload = {"text": "t", "share": 0.5, "posts": 10}
            delivery_id = store.add_delivery(s, rid, payload).id
        outcome, delay = send_delivery(asettings, db, delivery_id, 1)
        assert outcome == "retrying" and delay == pytest.approx(0.01)
        assert send_delivery(asettings, db, delivery_id, 3) == ("failed", None)
    finally:
        bad.close()
    (d,) = RuleStore(db).load()[0].deliveries
    assert d.state == "failed" and d.attempts == 3 and d.error == "HTTP 500" and bad.hits == 2

    # A firing whose message the broker refused is recorded as failed, not left pending.
    from workers.notify.watch import record_unqueued

    with db.write() as s:
        other = store.add_delivery(s, rid, payload).id
    record_unqueued(db, other, ConnectionError("Redis is down"))
    last = RuleStore(db).load()[0].deliveries[-1]
    assert last.state == "failed" and "not queued" in (last.error or "")
    db.dispose()
