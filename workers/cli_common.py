"""The CLI's error boundary and settings overlay, shared by every `backfire` command module.

A `BackfireError` reaching a command becomes its message on stderr and exit code 2 here, once;
CLI options are laid over the one `Settings` object here, once."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from workers.config import Settings, get_settings
from workers.errors import BackfireError, ConfigError

err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_POSTS_FAILED, EXIT_USAGE = 0, 1, 2


def fail(e: BackfireError) -> typer.Exit:
    err.print(f"[bold red]error[/]: {e.message}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def settings_with(**overrides: Any) -> Settings:
    """The process settings with the CLI options that were actually given laid on top."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return get_settings().model_copy(update=given)
    except ValidationError as e:
        raise fail(ConfigError(f"Invalid BACKFIRE_* setting:\n{e}")) from None
