"""`backfire watch` (follow a hashtag live on Mastodon, Bluesky or X, score what is new, warn as
verdicts arrive) and `backfire replay` (an export on its own clock: when would it have warned?).
The engine is `workers/live/`; this module turns options into it."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from workers.cli.common import (
    BatchSize,
    Checkpoint,
    ModelConfig,
    ModelName,
    Pretrained,
    allow_private,
    err,
    settings_with,
)
from workers.config import Settings
from workers.domain import clean_hashtag, parse_duration
from workers.errors import UsageError

Threads = Annotated[
    int | None, typer.Option("--threads", envvar="BACKFIRE_THREADS", help="torch threads.")
]
Offline = Annotated[
    bool, typer.Option("--offline", envvar="BACKFIRE_OFFLINE", help="Never download weights.")
]
AlertShare = Annotated[
    float | None,
    typer.Option("--alert-share", help="Warn when the backlash share of the window reaches this "
                 "(0-1); with --webhook, an alert rule for the hashtag."),
]  # fmt: skip
Window = Annotated[str, typer.Option("--window", help="Rolling window of the alert: 30m, 2h.")]
MinPosts = Annotated[
    int, typer.Option("--min-posts", help="Scored posts the window needs before it warns.")
]


def _secret(env: str | None, what: str) -> str | None:
    if not env:
        return None
    value = os.environ.get(env, "").strip()
    if not value:
        raise UsageError(f"{what}: the environment variable {env} is not set (or empty).")
    return value


def _hashtag_of(query: str) -> str | None:
    m = re.search(r"#(\w+)", query)
    return m.group(1) if m else None


def watch(
    mastodon: Annotated[
        str | None,
        typer.Option("--mastodon", help="Follow a Mastodon instance's hashtag timeline: its host "
                     "(mastodon.social) or base URL (http://127.0.0.1:8080)."),
    ] = None,  # fmt: skip
    bluesky: Annotated[bool, typer.Option("--bluesky", help="Follow Bluesky search.")] = False,
    twitter: Annotated[
        bool, typer.Option("--twitter", help="Follow X (Twitter) API v2 recent search.")
    ] = False,
    tag: Annotated[str | None, typer.Option("--tag", help="Hashtag to follow (without #).")] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", help="Search query (Bluesky, X); default '#TAG'. Its first "
                     "#hashtag names the posts' hashtag unless --tag is given."),
    ] = None,  # fmt: skip
    api: Annotated[
        str | None,
        typer.Option("--api", help="Base URL or host of the Bluesky / X API (default "
                     "public.api.bsky.app, bsky.social with a session, api.x.com)."),
    ] = None,  # fmt: skip
    access_token_env: Annotated[
        str | None,
        typer.Option("--access-token-env", help="Mastodon: env var holding an access token "
                     "(only for instances that hide public timelines)."),
    ] = None,  # fmt: skip
    bluesky_handle: Annotated[
        str | None, typer.Option("--bluesky-handle", help="Bluesky: log in as this handle.")
    ] = None,
    app_password_env: Annotated[
        str, typer.Option("--app-password-env", help="Bluesky: env var holding an app password.")
    ] = "BLUESKY_APP_PASSWORD",  # noqa: S107 - the variable's name, not a secret
    bearer_token_env: Annotated[
        str, typer.Option("--bearer-token-env", help="X: env var holding the API bearer token.")
    ] = "X_BEARER_TOKEN",  # noqa: S107 - the variable's name, not a secret
    every: Annotated[str, typer.Option("--every", help="Poll interval: 30s, 2m, 0.5s.")] = "30s",
    max_pages: Annotated[
        int | None,
        typer.Option("--max-pages", help="Catch-up pages per poll (default 25 Mastodon, 10 "
                     "Bluesky/X); a longer backlog continues at the next poll, never skipped."),
    ] = None,  # fmt: skip
    backfill: Annotated[
        int | None,
        typer.Option("--backfill", envvar="BACKFIRE_WATCH_BACKFILL", min=0,
                     help="First watch of a source and query only: score this many of the "
                     "posts already there (the newest, oldest first; Bluesky and X in whole "
                     "pages) before following new ones. Default 200; 0 = only new posts."),
    ] = None,  # fmt: skip
    for_: Annotated[
        str | None, typer.Option("--for", help="Stop after this long (2h, 30m); default never.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also append each verdict row here (.jsonl or .csv), "
                     "as `score` writes them."),
    ] = None,  # fmt: skip
    out_format: Annotated[
        str | None, typer.Option("--out-format", help="jsonl or csv; default from --out.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="A live HTML report of the hashtag, rewritten in place."),
    ] = None,
    report_every: Annotated[
        str, typer.Option("--report-every", help="How often --report is rewritten.")
    ] = "5m",
    alert_share: AlertShare = None,
    window: Window = "30m",
    min_posts: MinPosts = 20,
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", help="With --alert-share: POST the alert here (Slack-"
                     "compatible). The rule is stored (backfire alert list) and survives "
                     "restarts."),
    ] = None,  # fmt: skip
    queue: Annotated[
        bool, typer.Option("--queue", help="Hand the posts to the Celery workers (needs Redis).")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT."),
    ] = None,
    allow_private_network: Annotated[
        bool, allow_private("the platform API, media and webhook URLs")
    ] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    threads: Threads = None,
    offline: Offline = False,
) -> None:
    """Follow a hashtag live, score each new post once, store its verdict, and warn as soon as
    the backlash share of the rolling window crosses the line. Cursors are kept in the store:
    stopped (Ctrl-C finishes the batch in hand) or killed, a watcher restarted with the same
    source and query continues where it was, without gaps and without scoring a post twice.

    Examples:

      backfire watch --mastodon mastodon.social --tag myNYPD --alert-share 0.3 --window 30m
      --webhook https://hooks.slack.com/services/...   (no account, no Redis needed)

      backfire watch --bluesky --tag myNYPD --queue   (the Celery workers score)

      backfire watch --twitter --query '#myNYPD has:images' --bearer-token-env X_BEARER_TOKEN

      backfire watch --mastodon mastodon.social --tag myNYPD --report report.html
      --report-every 5m --out verdicts.jsonl --for 2h

      backfire watch --mastodon mastodon.social --tag myNYPD --backfill 1000
      (the first run also scores the 1,000 newest posts already there)
    """
    from workers.live.watch import Watcher, WatchOptions, install_stop_handlers
    from workers.notify.rules import parse_window
    from workers.scoring.writers import out_format_for

    chosen = [n for n, on in (("mastodon", mastodon), ("bluesky", bluesky),
                              ("twitter", twitter)) if on]  # fmt: skip
    if len(chosen) != 1:
        raise UsageError("Choose one source: --mastodon INSTANCE, --bluesky or --twitter.")
    settings = settings_with(
        batch_size=batch_size, checkpoint=checkpoint, model_name=model_name,
        pretrained=pretrained, model_config_file=model_config, threads=threads,
        allow_private_network=allow_private_network or None, offline=offline or None,
        watch_backfill=backfill,
    )  # fmt: skip
    every_s = parse_duration(every, "poll interval")
    if every_s <= 0:
        raise UsageError("--every must be above zero, e.g. 30s.")
    window_s = parse_window(window)
    options = WatchOptions(
        every_s=every_s, duration_s=parse_duration(for_, "duration") if for_ else None,
        out=out, out_format=out_format_for(out, out_format) if out else "jsonl",
        report=report, report_every_s=parse_duration(report_every, "report interval"),
        queue=queue, metrics_port=metrics_port, window_s=window_s,
    )  # fmt: skip
    stop = threading.Event()
    source = _source(chosen[0], settings, stop, mastodon, tag, query, api, access_token_env,
                     bluesky_handle, app_password_env, bearer_token_env, max_pages)  # fmt: skip
    if alert_share is not None or webhook is not None:
        _embedded_rule(settings, source.hashtag, alert_share, window, min_posts, webhook)
    restore = install_stop_handlers(stop, err)
    try:
        totals = Watcher(settings, source, options, err, stop=stop).run()
    finally:
        restore()
    err.print(
        f"Watched {totals.polls} polls: {totals.posts} posts stored ({totals.ok} scored, "
        f"{totals.failed} failed); cursor saved.", soft_wrap=True,
    )  # fmt: skip


def _source(
    platform: str, settings: Settings, stop: threading.Event, instance: str | None,
    tag: str | None, query: str | None, api: str | None, access_token_env: str | None,
    handle: str | None, app_password_env: str, bearer_token_env: str, max_pages: int | None,
) -> Any:  # fmt: skip
    from workers.net.guard import FetchPolicy
    from workers.sources.live import ApiClient

    policy = FetchPolicy.from_settings(settings)
    client = ApiClient(
        policy, platform, wait=stop.wait, timeout_s=settings.fetch_timeout_s,
        on_wait=lambda msg: err.print(f"[yellow]{msg}[/]", soft_wrap=True),
    )  # fmt: skip
    tag = clean_hashtag(tag)
    pages: dict[str, int] = {"backfill": settings.watch_backfill}
    if max_pages:
        pages["max_pages"] = max_pages
    if platform == "mastodon":
        from workers.sources.live.mastodon import MastodonSource

        if not tag:
            raise UsageError("--mastodon follows a hashtag timeline: give --tag (without #).")
        token = _secret(access_token_env, "--access-token-env")
        return MastodonSource(client, tag, instance, access_token=token, **pages)
    q = query or (f"#{tag}" if tag else None)
    if not q:
        raise UsageError(f"--{platform} needs --tag or --query.")
    hashtag = tag or _hashtag_of(q)
    if platform == "bluesky":
        from workers.sources.live.bluesky import BlueskySource

        password = _secret(app_password_env, "--app-password-env") if handle else None
        return BlueskySource(client, q, hashtag, api, handle=handle, app_password=password,
                             **pages)  # fmt: skip
    from workers.sources.live.twitter import TwitterSource

    token = _secret(bearer_token_env, "--bearer-token-env (the X API needs a bearer token)")
    assert token is not None
    return TwitterSource(client, q, hashtag, api, bearer_token=token, **pages)


def _embedded_rule(
    settings: Settings, hashtag: str | None, share: float | None, window: str, min_posts: int,
    webhook: str | None,
) -> None:  # fmt: skip
    """The rule of --alert-share/--webhook: stored once (a restarted watcher finds it, with its
    armed state, so a crossing is not announced twice), like `backfire alert add`."""
    from workers.domain import hashtag_key
    from workers.notify.rules import RuleStore, add_rule, parse_window

    if share is None or webhook is None:
        raise UsageError("An alert needs both --alert-share and --webhook.")
    if not hashtag:
        raise UsageError("An alert rule needs a hashtag: give --tag.")
    window_s = parse_window(window)
    store = RuleStore.from_settings(settings)
    try:
        for r in store.load():
            if (r.owner is None and hashtag_key(r.hashtag) == hashtag_key(hashtag)
                    and r.threshold == share and r.window_s == window_s
                    and r.min_posts == min_posts and r.webhook == webhook):  # fmt: skip
                err.print(f"Alert rule {r.id} (stored) → {webhook}", soft_wrap=True)
                return
    finally:
        store.close()
    rule = add_rule(settings, hashtag=hashtag, threshold=share, window=window,
                    min_posts=min_posts, webhook=webhook)  # fmt: skip
    err.print(f"Alert rule {rule.id} added: #{rule.hashtag} backlash ≥ {share:.0%} over {window} "
              f"(≥ {min_posts} posts) → {webhook}", soft_wrap=True)  # fmt: skip


def replay(
    export: Annotated[Path, typer.Argument(help="An export any reader understands.")],
    fmt: Annotated[str, typer.Option("--format", help="Input format (see `score`).")] = "auto",
    hashtag: Annotated[
        str | None, typer.Option("--hashtag", help="Hashtag for posts that don't name one.")
    ] = None,
    alert_share: Annotated[
        float | None,
        typer.Option("--alert-share", help="The rule's backlash share (0-1); default: the "
                     "operator's rules for the hashtag (backfire alert list), else 0.3."),
    ] = None,  # fmt: skip
    window: Annotated[
        str | None, typer.Option("--window", help="Rolling window: 30m, 2h (default 30m).")
    ] = None,
    min_posts: Annotated[
        int | None, typer.Option("--min-posts", help="Posts the window needs (default 20).")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="Run the clock this many times faster than the posts' own "
                     "(60: an hour a minute) for a demo; default as fast as the model."),
    ] = None,  # fmt: skip
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the verdict rows (.jsonl/.csv).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="HTML report with the alert time marked on the chart."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
    allow_private_network: Annotated[bool, allow_private("image URLs")] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    threads: Threads = None,
    offline: Offline = False,
) -> None:
    """Replay a past campaign: its posts in time order through the pipeline and the alert rules
    on the posts' own clock. Prints when the backlash share first crossed the line, the alert
    that would have been sent and the posts that drove it. Sends and stores nothing.

    Examples:

      backfire replay tweets.jsonl --window 30m --alert-share 0.3
      (→ "would have warned at 22 Apr 2014 16:12 UTC (+2h12 after the first post)")

      backfire replay statuses.json --hashtag myNYPD --speed 60 --report replay.html
    """
    from workers.live.replay import describe, replay_rule
    from workers.live.replay import replay as run_replay
    from workers.notify.rules import RuleStore, parse_window
    from workers.scoring.writers import open_writer, out_format_for

    settings = settings_with(
        batch_size=batch_size, checkpoint=checkpoint, model_name=model_name,
        pretrained=pretrained, model_config_file=model_config, threads=threads,
        allow_private_network=allow_private_network or None, offline=offline or None,
    )  # fmt: skip
    tag = clean_hashtag(hashtag)
    rules = []
    if alert_share is None and window is None and min_posts is None:
        store = RuleStore.from_settings(settings)
        try:
            rules = [r.model_copy(update={"armed": True, "fired": 0, "evaluated_until": None,
                                          "deliveries": []})
                     for r in store.load() if r.owner is None]  # fmt: skip
        finally:
            store.close()
    from workers.sources import open_reader

    first = next((r for r in open_reader(export, fmt, tag) if getattr(r, "hashtag", None)), None)
    tag = tag or (first.hashtag if first is not None else None)  # type: ignore[union-attr]
    if tag:
        from workers.domain import hashtag_key

        rules = [r for r in rules if hashtag_key(r.hashtag) == hashtag_key(tag)]
    if not rules:
        if not tag:
            raise UsageError("The export's posts name no hashtag: give --hashtag.")
        rules = [replay_rule(tag, alert_share if alert_share is not None else 0.3,
                             parse_window(window or "30m"),
                             min_posts if min_posts is not None else 20)]  # fmt: skip
    writer = None
    if out is not None:
        from workers.scenes.prompts import load_prompt_set

        names = load_prompt_set(settings.scenes_file).names
        writer = open_writer(out, out_format_for(out), names, append=False)

    def crossed(c: Any) -> None:
        if speed:
            err.print(f"[bold red]would warn now[/] ({c.at:%H:%M:%S} UTC): "
                      f"{c.payload['share']:.0%} backlash", soft_wrap=True)  # fmt: skip

    try:
        with err.status("Replaying…", spinner="dots") if not speed else _null():
            result = run_replay(
                settings, export, rules, fmt=fmt, hashtag=tag, speed=speed, on_cross=crossed,
                write=writer.write if writer else None, keep_rows=report is not None,
            )  # fmt: skip
    finally:
        if writer is not None:
            writer.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        for line in describe(result, rules):
            err.print(line, soft_wrap=True, highlight=False, markup=False)
    if report is not None:
        from workers.live.watch import atomic_write_text
        from workers.report import build_report

        markers = [(c.at, f"alert {c.payload['share']:.0%}") for c in result.crossings]
        _m, html = build_report(result.rows, settings=settings, markers=markers,
                                title=f"#{tag} (replay)" if tag else None)  # fmt: skip
        atomic_write_text(report, html)
        err.print(f"Report → {report}")
    sys.stdout.flush()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
