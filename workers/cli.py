"""`backfire` command line. Errors are translated here, once: a `BackfireError` becomes its
message on stderr and an exit code (2 when the run cannot start, 1 when some posts failed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workers.cli_common import err, fail, settings_with
from workers.errors import BackfireError

app = typer.Typer(
    name="backfire",
    help="Score the photos posted under a hashtag: backlash, supportive, neutral or off-topic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="CLIP weights: fetch them ahead of time.", no_args_is_help=True)
scenes_app = typer.Typer(help="The scene labels and their prompts.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(scenes_app, name="scenes")
# sub-apps
from workers import cli_service  # noqa: E402

app.command("serve")(cli_service.serve)
app.command("worker")(cli_service.worker)
app.command("reconcile")(cli_service.reconcile)
app.add_typer(cli_service.apikey_app, name="apikey")
app.add_typer(cli_service.db_app, name="db")
from workers import cli_report  # noqa: E402

app.command("report")(cli_report.report)
app.add_typer(cli_report.alert_app, name="alert")
from workers import cli_caption  # noqa: E402  (light: typer only; sklearn loads inside `train`)

app.add_typer(cli_caption.app, name="caption")

# Shared options: each has an environment twin (the same variable the Settings object reads).
BatchSize = Annotated[
    int | None,
    typer.Option("--batch-size", envvar="BACKFIRE_BATCH_SIZE", help="Images per model call."),
]
Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", envvar="BACKFIRE_CHECKPOINT", help="Local CLIP weights file."),
]
ModelName = Annotated[
    str | None, typer.Option("--model-name", envvar="BACKFIRE_MODEL_NAME", help="open_clip arch.")
]
Pretrained = Annotated[
    str | None,
    typer.Option("--pretrained", envvar="BACKFIRE_PRETRAINED", help="open_clip pretrained tag."),
]
ModelConfig = Annotated[
    Path | None,
    typer.Option(
        "--model-config", envvar="BACKFIRE_MODEL_CONFIG_FILE",
        help="JSON architecture config for a custom open_clip model.",
    ),
]  # fmt: skip


@app.command()
def score(
    path: Annotated[
        Path, typer.Argument(help="Folder of images, CSV/JSONL manifest, or a platform export.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (.jsonl or .csv); default stdout."),
    ] = None,
    hashtag: Annotated[
        str | None, typer.Option("--hashtag", help="Hashtag for posts that don't name one.")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="Input format: auto (sniffed), folder, csv, jsonl (manifests), twarc2, "
            "mastodon, bluesky (platform exports).",
        ),
    ] = "auto",
    media_cache: Annotated[
        Path | None,
        typer.Option(
            "--media-cache",
            envvar="BACKFIRE_MEDIA_CACHE_DIR",
            help="Keep downloaded media here across runs (default: a per-run cache that "
            "--resume reuses and a completed run deletes).",
        ),
    ] = None,
    out_format: Annotated[
        str | None, typer.Option("--out-format", help="jsonl or csv; default from --out's suffix.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip posts already in --out and append the rest.")
    ] = False,
    allow_private_network: Annotated[
        bool,
        typer.Option(
            "--allow-private-network",
            envvar="BACKFIRE_ALLOW_PRIVATE_NETWORK",
            help="Allow image URLs on loopback/private addresses (tests, intranets).",
        ),
    ] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    threads: Annotated[
        int | None, typer.Option("--threads", envvar="BACKFIRE_THREADS", help="torch threads.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", envvar="BACKFIRE_OFFLINE", help="Never download weights.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar.")
    ] = True,
    queue: Annotated[
        bool, typer.Option("--queue", help="Send the posts through the Celery workers and wait.")
    ] = False,
) -> None:
    """Score a hashtag's posts and write one verdict (or error) row per post.

    Examples:

      backfire score examples/myNYPD/posts.csv --hashtag myNYPD --out verdicts.jsonl

      backfire score photos/ --hashtag myNYPD --out verdicts.csv --resume

      backfire score tweets.jsonl --format twarc2 --out verdicts.jsonl   (twarc2 search output)

    Exit codes: 0 every post scored, 1 some posts failed (see their error rows), 2 usage error.
    """
    from workers.scoring_cli import run_score

    settings = settings_with(
        batch_size=batch_size, checkpoint=checkpoint, model_name=model_name,
        pretrained=pretrained, model_config_file=model_config, threads=threads,
        allow_private_network=allow_private_network or None, offline=offline or None,
        media_cache_dir=media_cache,
    )  # fmt: skip
    if queue:
        from workers.cli_service import score_via_queue

        try:
            code = score_via_queue(
                settings, path, out=out, hashtag=hashtag, fmt=fmt, out_format=out_format,
                progress=progress and sys.stderr.isatty(), console=err,
            )  # fmt: skip
        except BackfireError as e:
            raise fail(e) from None
        raise typer.Exit(code)
    try:
        code = run_score(
            settings, path, out=out, hashtag=hashtag, fmt=fmt, out_format=out_format,
            resume=resume, progress=progress and sys.stderr.isatty(), console=err,
        )  # fmt: skip
    except BackfireError as e:
        raise fail(e) from None
    raise typer.Exit(code)


@model_app.command("pull")
def model_pull(
    model_name: ModelName = None,
    pretrained: Pretrained = None,
) -> None:
    """Download the CLIP weights into the cache, for air-gapped sites.

    Example: backfire model pull   (then copy the cache folder it prints to the offline machine)
    """
    from workers.scenes.encoder import pull_weights

    settings = settings_with(model_name=model_name, pretrained=pretrained)
    try:
        model_id = pull_weights(settings)
    except BackfireError as e:
        raise fail(e) from None
    err.print(f"Weights for {model_id} are in {settings.cache_dir / 'open_clip'}")


@scenes_app.command("list")
def scenes_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The scene labels, thresholds and prompts, from model_cards/scenes.yaml.

    Example: backfire scenes list --json | jq '.scenes.restraint'
    """
    from workers.scenes.prompts import load_prompt_set

    settings = settings_with()
    try:
        ps = load_prompt_set(settings.scenes_file)
    except BackfireError as e:
        raise fail(e) from None
    if as_json:
        typer.echo(json.dumps({"hash": ps.hash, **ps.model_dump(mode="json")}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Scenes ({settings.scenes_file.name}, prompt set {ps.hash})")
    for col in ("scene", "group", "threshold", "prompts", "contrast"):
        table.add_column(col, overflow="fold")
    for name, s in ps.scenes.items():
        table.add_row(
            name, s.group, f"{s.threshold:.2f}", "\n".join(s.prompts),
            "\n".join(s.contrast + [f"(common) {c}" for c in ps.common_contrast]),
        )  # fmt: skip
    Console().print(table)
    Console().print(f"Templates: {'; '.join(ps.templates)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
