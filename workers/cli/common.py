"""What every `backfire` command module shares: the stderr console, the exit codes, the
settings overlay and the options that have environment twins.

CLI options are laid over the one `Settings` object here (`settings_with`), once; errors are
turned into exit codes in `workers/cli/app.py`, once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from workers.config import Settings, get_settings
from workers.errors import BackfireError

err = Console(stderr=True, highlight=False)

#: 0 every post scored; 1 some posts failed (each has an error row); 2 nothing could run.
EXIT_OK, EXIT_POSTS_FAILED, EXIT_USAGE = 0, 1, 2


def fail(e: BackfireError) -> typer.Exit:
    err.print(f"[bold red]error[/]: {e.message}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def settings_with(**overrides: Any) -> Settings:
    """The process settings (a bad BACKFIRE_* value raises `ConfigError`) with the CLI options
    that were actually given laid on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return get_settings().model_copy(update=given)


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

ImagePrecision = Annotated[
    str | None,
    typer.Option(
        "--image-precision", envvar="BACKFIRE_IMAGE_PRECISION",
        help="float32 (default) or int8: the image tower quantised (2-3x faster on x86; built "
        "once per weights file and cached). Its model id ends in -int8.",
    ),
]  # fmt: skip


def allow_private(what: str) -> Any:
    """The `--allow-private-network` option, saying what it lets through."""
    return typer.Option(
        "--allow-private-network",
        envvar="BACKFIRE_ALLOW_PRIVATE_NETWORK",
        help=f"Allow {what} on loopback/private addresses (tests, intranets).",
    )
