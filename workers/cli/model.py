"""`backfire model pull` and `backfire scenes list`: the scene model's weights and prompts."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from workers.cli.common import ModelName, Pretrained, err, settings_with

model_app = typer.Typer(help="CLIP weights: fetch them ahead of time.", no_args_is_help=True)
scenes_app = typer.Typer(help="The scene labels and their prompts.", no_args_is_help=True)


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
    model_id = pull_weights(settings)
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
    ps = load_prompt_set(settings.scenes_file)
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
