"""`backfire serve | worker | reconcile | apikey | db` and `backfire score --queue`: the API and
queue side of the command line. Heavy imports happen inside the commands."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workers.cli_common import err, fail
from workers.config import Settings, get_settings
from workers.errors import BackfireError, MediaError, UsageError

apikey_app = typer.Typer(
    help="API keys: create (printed once), revoke, list.", no_args_is_help=True
)
db_app = typer.Typer(help="The database: apply migrations.", no_args_is_help=True)
CLI_OWNER = "cli"


def parse_duration(text: str) -> float:
    """'30s', '2m', '1h', '45' (seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 2m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _env_override(**values: object) -> Settings:
    """Put CLI options into the environment (worker children and `get_settings` read it)."""
    for name, value in values.items():
        if value is not None:
            os.environ[f"BACKFIRE_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


def serve(
    host: Annotated[str | None, typer.Option(envvar="BACKFIRE_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="BACKFIRE_API_PORT")] = None,
    processes: Annotated[int, typer.Option("--workers", help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP API (uvicorn). Migrations are applied on startup.

    Example: backfire serve --host 0.0.0.0 --port 8000 --workers 2
    """
    import uvicorn

    settings = get_settings()
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

    Example: backfire worker --concurrency 2 --reconcile-every 30s
    """
    every = parse_duration(reconcile_every) if reconcile_every is not None else None
    settings = _env_override(worker_concurrency=concurrency, reconcile_every_s=every)
    from workers.queue.app import create_app

    app = create_app(settings)
    app.worker_main(
        ["worker", "--pool", "prefork", "--concurrency", str(settings.worker_concurrency),
         "-Q", settings.queue_name, "--loglevel", loglevel, "--without-gossip", "--without-mingle"]
    )  # fmt: skip


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

    settings = get_settings()
    if after is not None:
        settings = settings.model_copy(update={"reconcile_after_s": parse_duration(after)})
    rec = Reconciler(settings, open_database(settings))
    period = parse_duration(every)
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

    key = create_key(open_database(get_settings()), name)
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
    try:
        n = revoke_key(open_database(get_settings()), key_id)
    except BackfireError as e:
        raise fail(e) from None
    err.print(f"revoked {n} key(s)")


@apikey_app.command("list")
def apikey_list() -> None:
    """Key ids, names and whether they are revoked (never the keys).

    Example: backfire apikey list
    """
    from workers.store import open_database
    from workers.store.keys import list_keys

    for k in list_keys(open_database(get_settings())):
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        typer.echo(f"{k.id}\t{k.name}\t{state}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (the API and workers also do it on startup).

    Example: BACKFIRE_DATABASE_URL=postgresql+psycopg://backfire@db/backfire backfire db upgrade
    """
    from workers.store import open_database

    settings = get_settings()
    open_database(settings)
    err.print(f"database at head: {settings.resolved_database_url.split('@')[-1]}")


def score_via_queue(
    settings: Settings,
    path: Path,
    *,
    out: Path | None,
    hashtag: str | None,
    fmt: str = "auto",
    out_format: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout_s: float | None = None,
) -> int:
    """`backfire score --queue`: store and enqueue every post, then wait for the workers with a
    progress bar and write the rows like the in-process run. Re-running is idempotent."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from workers.media.decode import DecodeLimits, check_image
    from workers.media.source import read_media
    from workers.net.guard import FetchPolicy
    from workers.queue.app import create_app
    from workers.queue.publish import Publisher
    from workers.scoring.writers import JsonlWriter, open_writer, out_format_for
    from workers.sources import ReadProblem, open_reader
    from workers.store import open_database
    from workers.store import posts as repo
    from workers.store.blobs import BlobStore

    console = console or err
    records = open_reader(path, fmt, hashtag)
    ofmt = out_format_for(out, out_format) if out is not None else (out_format or "jsonl")
    if out is None and ofmt != "jsonl":
        raise UsageError("Writing to stdout is JSONL only; use --out FILE.csv for CSV.")
    db = open_database(settings)
    blobs = BlobStore(settings.resolved_media_dir)
    publisher = Publisher(create_app(settings), db, cooldown_s=0.0)
    policy = FetchPolicy.from_settings(settings)
    limits = DecodeLimits(max_pixels=settings.max_image_pixels)
    rows: list[dict] = []
    seqs: list[int] = []
    for rec in records:
        if isinstance(rec, ReadProblem):
            console.print(f"[yellow]skipped[/] {rec.location}: {rec.message}", soft_wrap=True)
            continue
        try:
            data = read_media(rec.image, policy)
            check_image(data, limits)
        except MediaError as e:
            rows.append({"post_id": rec.post_id, "status": "error", "error": e.as_record()})
            continue
        row, _ = repo.create_post(
            db,
            repo.NewPost(
                owner=CLI_OWNER, media_sha256=blobs.put(data), post_id=rec.post_id,
                caption=rec.caption, hashtag=rec.hashtag, created_at=rec.created_at,
                author=rec.author, image_url=rec.image,
            ),
        )  # fmt: skip
        seqs.append(row.seq)
    publisher.publish([s for s in seqs], force=True)

    bar = Progress(
        TextColumn("[bold]workers scoring"), BarColumn(), MofNCompleteColumn(),
        console=console, disable=not progress,
    )  # fmt: skip
    task = bar.add_task("queue", total=len(seqs))
    pending = set(seqs)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with bar:
        while pending:
            pending -= repo.finished_among(db, sorted(pending))
            bar.update(task, completed=len(seqs) - len(pending))
            if pending:
                if deadline and time.monotonic() > deadline:
                    raise UsageError(f"{len(pending)} posts still unscored; are workers running?")
                time.sleep(0.5)
    for seq in seqs:
        view = repo.get_by_seq(db, seq)
        assert view is not None
        if view.verdict is not None:
            rows.append(view.verdict.record)
        else:
            rows.append({"post_id": view.post.post_id, "status": "error",
                         "error": view.post.last_error})  # fmt: skip
    writer = (
        JsonlWriter(sys.stdout) if out is None else open_writer(out, ofmt, _scene_names(settings),
                                                                append=False)
    )  # fmt: skip
    try:
        for r in rows:
            writer.write(r)
    finally:
        if out is not None:
            writer.close()
    failed = sum(1 for r in rows if r.get("status") == "error")
    console.print(f"{len(rows) - failed} scored, {failed} failed")
    return 1 if failed else 0


def _scene_names(settings: Settings) -> list[str]:
    from workers.scenes.prompts import load_prompt_set

    return load_prompt_set(settings.scenes_file).names
