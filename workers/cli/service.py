"""`backfire serve | worker | reconcile | apikey | db`: the API and queue side of the command
line. Heavy imports happen inside the commands."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from workers.cli.common import err, settings_with
from workers.domain import parse_duration

apikey_app = typer.Typer(
    help="API keys: create (printed once), revoke, list.", no_args_is_help=True
)
db_app = typer.Typer(help="The database: apply migrations.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(envvar="BACKFIRE_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="BACKFIRE_API_PORT")] = None,
    processes: Annotated[int, typer.Option("--workers", help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP API (uvicorn). Migrations are applied on startup.

    Example: backfire serve --host 0.0.0.0 --port 8000 --workers 2
    """
    import uvicorn

    settings = settings_with()
    uvicorn.run(
        "service.app:app", host=host or settings.api_host, port=port or settings.api_port,
        workers=processes, proxy_headers=True, access_log=False,
    )  # fmt: skip


def worker(
    concurrency: Annotated[
        int | None, typer.Option(envvar="BACKFIRE_WORKER_CONCURRENCY", help="Processes.")
    ] = None,
    reconcile_every: Annotated[
        str | None, typer.Option("--reconcile-every", help="Reconciler period; 0 = off.")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run a Celery worker: loads the model once per process and scores queued posts.

    Exits with 78 (EX_CONFIG) if a process cannot load the model (a truncated checkpoint,
    a wrong model name): it stops consuming, and the messages it held go back to the queue.

    Example: backfire worker --concurrency 2 --reconcile-every 30s
    """
    every = parse_duration(reconcile_every, "period") if reconcile_every is not None else None
    settings = settings_with(worker_concurrency=concurrency, reconcile_every_s=every)
    from workers.queue import tasks
    from workers.queue.app import create_app

    tasks.configure(settings)  # the children are forked from this process: they inherit it
    from workers.queue import readiness

    app = create_app(settings)
    code: object = 0
    try:
        app.worker_main(
            ["worker", "--pool", "prefork", "--concurrency", str(settings.worker_concurrency),
             "-Q", settings.queue_name, "--loglevel", loglevel, "--without-gossip",
             "--without-mingle"]
        )  # fmt: skip
    except SystemExit as e:
        code = e.code
    rd = readiness.current()
    raise SystemExit(rd.exit_code(code) if rd is not None else code)


def reconcile(
    every: Annotated[str, typer.Option("--every", help="Period, e.g. 30s; 0 = run once.")] = "0",
    after: Annotated[
        str | None, typer.Option("--after", help="Re-enqueue posts stale this long (e.g. 5m).")
    ] = None,
) -> None:
    """Re-enqueue posts left queued/running too long (lost messages, Redis restarts).

    Example: backfire reconcile --every 30s
    """
    import threading

    from workers.queue.reconcile import Reconciler
    from workers.store import open_database

    stale = parse_duration(after, "period") if after is not None else None
    settings = settings_with(reconcile_after_s=stale)
    rec = Reconciler(settings, open_database(settings))
    period = parse_duration(every, "period")
    if period <= 0:
        err.print(f"re-enqueued {rec.run_once()} posts")
        return
    err.print(f"reconciling every {period:g}s (posts stale for {settings.reconcile_after_s:g}s)")
    with contextlib.suppress(KeyboardInterrupt):
        rec.run_forever(period, threading.Event())


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Option("--name", help="Who the key is for.")]) -> None:
    """Create an API key and print it (once: only its hash is stored).

    Example: backfire apikey create --name research-team
    """
    from workers.store import open_database
    from workers.store.keys import create_key

    key = create_key(open_database(settings_with()), name)
    typer.echo(key)
    err.print(f"Key for {name!r} created; store it now, it cannot be shown again.")


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (bf_<id>_...) or the key's name.")],
) -> None:
    """Revoke a key: requests with it get 403 from now on.

    Example: backfire apikey revoke research-team
    """
    from workers.store import open_database
    from workers.store.keys import revoke_key

    if key_id.startswith("bf_"):
        key_id = key_id.split("_")[1]
    n = revoke_key(open_database(settings_with()), key_id)
    err.print(f"revoked {n} key(s)")


@apikey_app.command("list")
def apikey_list() -> None:
    """Key ids, names and whether they are revoked (never the keys).

    Example: backfire apikey list
    """
    from workers.store import open_database
    from workers.store.keys import list_keys

    for k in list_keys(open_database(settings_with())):
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        typer.echo(f"{k.id}\t{k.name}\t{state}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (the API and workers also do it on startup).

    Example: BACKFIRE_DATABASE_URL=postgresql+psycopg://backfire@db/backfire backfire db upgrade
    """
    from workers.store import open_database

    settings = settings_with()
    open_database(settings)
    err.print(f"database at head: {settings.resolved_database_url.split('@')[-1]}")
