"""`backfire report` and `backfire alert ...`: the campaign view and the early warning.

Mounted by workers/cli.py (`app.command("report")(cli_report.report)`, `app.add_typer(
cli_report.alert_app, name="alert")`). Imported while cli.py is still loading, so nothing here
imports workers.cli at module level.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from workers.cli_common import err, fail, settings_with
from workers.config import Settings
from workers.errors import BackfireError, UsageError


def report(
    verdicts: Annotated[
        Path | None, typer.Argument(help="Verdicts file written by `backfire score` (.jsonl/.csv).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    hashtag: Annotated[
        str | None,
        typer.Option("--hashtag", help="Report this hashtag from the store instead of a file."),
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Page title; default #hashtag.")
    ] = None,
    fetch_thumbnails: Annotated[
        bool,
        typer.Option(
            "--fetch-thumbnails/--no-fetch-thumbnails",
            help="Download thumbnails of image URLs (SSRF-checked). Local paths are always read.",
        ),
    ] = False,
    allow_private_network: Annotated[
        bool,
        typer.Option(
            "--allow-private-network",
            envvar="BACKFIRE_ALLOW_PRIVATE_NETWORK",
            help="Allow thumbnail URLs on loopback/private addresses (tests, intranets).",
        ),
    ] = False,
) -> None:
    """Write a one-file HTML report of a scored hashtag: verdict shares, backlash over time,
    scenes, the posts driving it, reposted photos, failures. Opens offline; safe to e-mail.

    Examples:

      backfire report verdicts.jsonl --out report.html

      backfire report verdicts.jsonl --out report.html --fetch-thumbnails
    """
    from workers.report import build_report
    from workers.report.data import read_rows

    settings = settings_with(allow_private_network=allow_private_network or None)
    started = time.perf_counter()
    try:
        if hashtag is not None:
            rows, scored_at, base = _store_rows(settings, hashtag), None, None
        elif verdicts is not None:
            rows = list(read_rows(verdicts))
            mtime = datetime.fromtimestamp(verdicts.stat().st_mtime, UTC)
            scored_at, base = mtime.strftime("%-d %b %Y %H:%M UTC"), verdicts.parent
        else:
            raise UsageError("Give a verdicts file, or --hashtag TAG to report from the store.")
        model, html = build_report(
            rows, settings=settings, fetch_thumbnails=fetch_thumbnails, base_dir=base,
            title=title, scored_at=scored_at,
        )  # fmt: skip
    except BackfireError as e:
        raise fail(e) from None
    out.write_text(html, encoding="utf-8")
    err.print(
        f"Report of {model.total:,} posts ({model.counts.get('backlash', 0):,} backlash) → {out} "
        f"({len(html.encode()) / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)",
        soft_wrap=True,
    )


def _store_rows(settings: Settings, hashtag: str) -> list[dict]:
    """Finished posts of one hashtag from the verdict store (issue 3), every owner."""
    from workers.report.store_rows import store_rows
    from workers.store import open_database

    db = open_database(settings, upgrade=False)
    try:
        return list(store_rows(db, settings, hashtag.lstrip("#")))
    finally:
        db.dispose()


# --- alerts -------------------------------------------------------------------------------------
alert_app = typer.Typer(
    help="Early-warning rules: POST to a webhook when a hashtag's backlash share crosses a line.",
    no_args_is_help=True,
)


@alert_app.command("add")
def alert_add(
    hashtag: Annotated[str, typer.Option("--hashtag", help="Hashtag to watch (without #).")],
    webhook: Annotated[str, typer.Option("--webhook", help="URL to POST the alert to.")],
    backlash_share: Annotated[
        float, typer.Option("--backlash-share", help="Fire when the share reaches this (0-1).")
    ] = 0.3,
    window: Annotated[str, typer.Option("--window", help="Rolling window: 30m, 2h, 1d.")] = "30m",
    min_posts: Annotated[
        int, typer.Option("--min-posts", help="Scored posts the window needs before it fires.")
    ] = 20,
    allow_private_network: Annotated[
        bool,
        typer.Option(
            "--allow-private-network",
            envvar="BACKFIRE_ALLOW_PRIVATE_NETWORK",
            help="Allow a webhook on loopback/private addresses (tests, intranets).",
        ),
    ] = False,
) -> None:
    """Add an alert rule. It fires once per crossing and re-arms when the share falls back.

    Example: backfire alert add --hashtag myNYPD --backlash-share 0.3 --window 30m
    --min-posts 20 --webhook https://hooks.slack.com/services/...
    """
    from workers.notify.rules import add_rule, format_window

    settings = settings_with(allow_private_network=allow_private_network or None)
    try:
        rule = add_rule(
            settings, hashtag=hashtag, threshold=backlash_share, window=window,
            min_posts=min_posts, webhook=webhook,
        )  # fmt: skip
    except BackfireError as e:
        raise fail(e) from None
    typer.echo(
        f"{rule.id}: #{rule.hashtag} backlash ≥ {rule.threshold:.0%} over "
        f"{format_window(rule.window_s)} (≥ {rule.min_posts} posts) → {rule.webhook}"
    )


@alert_app.command("list")
def alert_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with state).")] = False,
) -> None:
    """The alert rules (the CLI's and every API key's), whether each is armed, and its last
    delivery.

    Example: backfire alert list --json
    """
    import json

    from workers.notify.rules import RuleStore, format_window

    store = RuleStore.from_settings(settings_with())
    try:
        rules = store.load()
    except BackfireError as e:
        raise fail(e) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rules], indent=2))
        return
    if not rules:
        typer.echo("No alert rules. Add one: backfire alert add --hashtag TAG --webhook URL")
    for r in rules:
        last = r.deliveries[-1] if r.deliveries else None
        outcome = {"sent": "sent", "pending": "pending"}.get(last.state, "FAILED") if last else ""
        sent = (
            "never fired" if last is None else f"last {outcome} {last.at} ({last.attempts} tries)"
        )
        whose = f"  (API key {r.owner})" if r.owner else ""
        typer.echo(
            f"{r.id}  #{r.hashtag}  ≥ {r.threshold:.0%} over {format_window(r.window_s)}, "
            f"≥ {r.min_posts} posts  {'armed' if r.armed else 'fired, waiting to re-arm'}  "
            f"fired {r.fired}×, {sent}  → {r.webhook}{whose}"
        )


@alert_app.command("remove")
def alert_remove(
    rule_id: Annotated[str, typer.Argument(help="Rule id from `alert list`.")],
) -> None:
    """Remove an alert rule.

    Example: backfire alert remove 3f9a0c1e
    """
    from workers.notify.rules import remove_rule

    if not remove_rule(settings_with(), rule_id):
        raise fail(UsageError(f"No alert rule {rule_id!r}; see backfire alert list."))
    typer.echo(f"Removed {rule_id}")
