"""`backfire alert add | list | remove`: early-warning rules of the operator (every owner's
posts; API keys manage their own through /v1/alerts)."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.common import allow_private, settings_with
from workers.domain import format_duration
from workers.errors import UsageError

app = typer.Typer(
    help="Early-warning rules: POST to a webhook when a hashtag's backlash share crosses a line.",
    no_args_is_help=True,
)


@app.command("add")
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
    allow_private_network: Annotated[bool, allow_private("a webhook")] = False,
) -> None:
    """Add an alert rule. It fires once per crossing and re-arms when the share falls back.

    Example: backfire alert add --hashtag myNYPD --backlash-share 0.3 --window 30m
    --min-posts 20 --webhook https://hooks.slack.com/services/...
    """
    from workers.notify.rules import add_rule

    settings = settings_with(allow_private_network=allow_private_network or None)
    rule = add_rule(
        settings, hashtag=hashtag, threshold=backlash_share, window=window,
        min_posts=min_posts, webhook=webhook,
    )  # fmt: skip
    typer.echo(
        f"{rule.id}: #{rule.hashtag} backlash ≥ {rule.threshold:.0%} over "
        f"{format_duration(rule.window_s)} (≥ {rule.min_posts} posts) → {rule.webhook}"
    )


@app.command("list")
def alert_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with state).")] = False,
) -> None:
    """The alert rules (the CLI's and every API key's), whether each is armed, and its last
    delivery.

    Example: backfire alert list --json
    """
    import json

    from workers.notify.rules import RuleStore

    store = RuleStore.from_settings(settings_with())
    try:
        rules = store.load()
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
            f"{r.id}  #{r.hashtag}  ≥ {r.threshold:.0%} over {format_duration(r.window_s)}, "
            f"≥ {r.min_posts} posts  {'armed' if r.armed else 'fired, waiting to re-arm'}  "
            f"fired {r.fired}×, {sent}  → {r.webhook}{whose}"
        )


@app.command("remove")
def alert_remove(
    rule_id: Annotated[str, typer.Argument(help="Rule id from `alert list`.")],
) -> None:
    """Remove an alert rule.

    Example: backfire alert remove 3f9a0c1e
    """
    from workers.notify.rules import remove_rule

    if not remove_rule(settings_with(), rule_id):
        raise UsageError(f"No alert rule {rule_id!r}; see backfire alert list.")
    typer.echo(f"Removed {rule_id}")
