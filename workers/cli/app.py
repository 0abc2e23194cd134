"""`backfire` command line. Errors are translated here, once: a `BackfireError` raised by any
command becomes its message on stderr and exit code 2 (the run cannot start); a run whose
posts partly failed exits 1 by itself (see `workers/cli/common.py`)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from workers.cli import (
    alert,
    caption,
    evaluate,
    explain,
    model,
    report,
    score,
    service,
    watch,
)
from workers.cli.common import fail
from workers.errors import BackfireError


class _Boundary(TyperGroup):
    """The CLI's one error boundary: every command and sub-command runs inside this invoke."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BackfireError as e:
            raise fail(e) from None


app = typer.Typer(
    name="backfire",
    cls=_Boundary,
    help="Score the photos posted under a hashtag: backlash, supportive, neutral or off-topic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(score.score)
app.command("eval")(evaluate.eval_command)
app.command("calibrate")(evaluate.calibrate_command)
model.scenes_app.command("fit")(evaluate.fit_command)
app.add_typer(model.model_app, name="model")
app.add_typer(model.scenes_app, name="scenes")
app.command("serve")(service.serve)
app.command("worker")(service.worker)
app.command("reconcile")(service.reconcile)
app.add_typer(service.apikey_app, name="apikey")
app.add_typer(service.db_app, name="db")
app.command("report")(report.report)
app.add_typer(alert.app, name="alert")
app.add_typer(caption.app, name="caption")
app.command("explain")(explain.explain)
app.command("watch")(watch.watch)
app.command("replay")(watch.replay)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
