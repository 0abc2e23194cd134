"""`backfire score`: one run over an export, in-process (settings, reader, pipeline, runner,
writer) or through the Celery workers (`--queue`, via the one ingest path)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.cli.common import (
    EXIT_OK,
    EXIT_POSTS_FAILED,
    BatchSize,
    Checkpoint,
    ImagePrecision,
    ModelConfig,
    ModelName,
    Pretrained,
    allow_private,
    err,
    settings_with,
)
from workers.config import Settings
from workers.domain import PostResult, ResultRow
from workers.errors import MediaError, UsageError
from workers.net.guard import FetchPolicy
from workers.scoring.runner import Runner, RunStats
from workers.scoring.writers import (
    JsonlWriter,
    Writer,
    done_post_ids,
    open_writer,
    out_format_for,
)
from workers.sources import ReadProblem, open_reader

if TYPE_CHECKING:
    from workers.media.fetcher import MediaFetcher

#: The owner of posts sent by `score --queue` (API keys own the others).
CLI_OWNER = "cli"


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
    allow_private_network: Annotated[bool, allow_private("image URLs")] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    image_precision: ImagePrecision = None,
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
    settings = settings_with(
        batch_size=batch_size, checkpoint=checkpoint, model_name=model_name,
        pretrained=pretrained, model_config_file=model_config, threads=threads,
        allow_private_network=allow_private_network or None, offline=offline or None,
        media_cache_dir=media_cache, image_precision=image_precision,
    )  # fmt: skip
    job = ScoreJob(
        path, out, hashtag, fmt, out_format, resume, progress=progress and sys.stderr.isatty()
    )
    raise typer.Exit((score_via_queue if queue else run_score)(settings, job, err))


@dataclass(frozen=True)
class ScoreJob:
    """What one `backfire score` was asked to do, in-process or through the queue."""

    path: Path
    out: Path | None
    hashtag: str | None
    fmt: str = "auto"
    out_format: str | None = None
    resume: bool = False
    progress: bool = True


def run_score(settings: Settings, job: ScoreJob, console: Console) -> int:
    """The in-process run: reader -> runner (pipeline) -> writer, then the run's alerts."""
    path, out, hashtag, fmt, resume, progress = (
        job.path, job.out, job.hashtag, job.fmt, job.resume, job.progress
    )
    records = open_reader(path, fmt, hashtag)  # validates path and format before model loading
    if resume and out is None:
        raise UsageError("--resume needs --out: it skips the posts already written there.")
    ofmt = _out_format(out, job.out_format)
    skip = done_post_ids(out, ofmt) if (resume and out is not None) else set()

    from workers.scoring.pipeline import Pipeline

    with console.status("Loading the scene model…", spinner="dots") if progress else _null():
        pipeline = Pipeline.from_settings(settings)
    total = None
    if progress:  # the bar's total: the export is read once, and the run goes over what was read
        read = list(records)
        total = sum(1 for r in read if not isinstance(r, ReadProblem)) - len(skip)
        records = iter(read)

    writer: Writer
    if out is None:
        writer = JsonlWriter(sys.stdout)
    else:
        writer = open_writer(out, ofmt, pipeline.scenes.names, append=resume)

    def problem(p: ReadProblem) -> None:
        console.print(f"[yellow]skipped[/] {p.location}: {p.message}", soft_wrap=True)

    bar = Progress(
        TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
        disable=not progress,
    )  # fmt: skip
    task = bar.add_task("score", total=max(total, 0) if total is not None else None, rate="")

    def tick(stats: RunStats) -> None:
        rate = stats.images_scored / stats.elapsed if stats.elapsed > 0 else 0.0
        bar.update(task, completed=stats.posts, rate=f"{rate:5.1f} img/s")

    policy = FetchPolicy.from_settings(settings)
    fetcher, run_cache = _open_fetcher(settings, policy, out)
    runner = Runner(
        pipeline, policy, settings.loader_threads, on_progress=tick, on_problem=problem,
        fetcher=fetcher, fetch_ahead=settings.fetch_ahead,
    )  # fmt: skip
    from workers.notify.alerts import AlertTee

    alerts = AlertTee(settings)  # collects rows only when alert rules exist
    try:
        with bar:
            stats = runner.run(records, alerts.wrap(writer.write), skip)
    finally:
        fetcher.close()
        if out is not None:
            writer.close()
    _summary(console, stats, out, pipeline.version)
    _fetch_summary(console, fetcher)
    if run_cache is not None:  # the run is complete: nothing left to resume
        shutil.rmtree(run_cache, ignore_errors=True)
    alerts.finish(console)
    return EXIT_POSTS_FAILED if (stats.failed or stats.read_problems) else EXIT_OK


def _out_format(out: Path | None, explicit: str | None) -> str:
    """The output format, from --out-format or --out's suffix; stdout takes JSONL only."""
    if out is not None:
        return out_format_for(out, explicit)
    if (explicit or "jsonl") != "jsonl":
        raise UsageError("Writing to stdout is JSONL only; use --out FILE.csv for CSV.")
    return "jsonl"


def _summary(console: Console, s: RunStats, out: Path | None, version: str) -> None:
    verdicts = ", ".join(f"{n} {k}" for k, n in sorted(s.verdicts.items())) or "none"
    where = f" → {out}" if out else ""
    console.print(
        f"Scored {s.ok} of {s.posts} posts ({verdicts}); {s.failed} failed; "
        f"{s.decoded} images decoded, {s.reused} posts reused an image; "
        f"{s.skipped_resume} skipped (resume); {s.read_problems} unreadable records; "
        f"{s.elapsed:.1f} s; pipeline {version}{where}",
        soft_wrap=True,
    )
    for code, n in s.errors.most_common():
        console.print(f"  {n} × {code}", soft_wrap=True)


@contextlib.contextmanager
def _null():
    yield


def _open_fetcher(
    settings: Settings, policy: FetchPolicy, out: Path | None
) -> tuple[MediaFetcher, Path | None]:
    """The run's media fetcher, and the per-run cache folder to delete once the run completes.

    The cache is keyed by the output file, so `--resume` after a crash finds what the killed run
    downloaded; a cache folder the user chose (BACKFIRE_MEDIA_CACHE_DIR) is kept. Writing to
    stdout cannot be resumed, so it gets no disk cache."""
    from workers.media.fetcher import FetcherConfig, MediaCache, MediaFetcher

    config = FetcherConfig.from_settings(settings)
    if settings.media_cache_dir is not None:
        return MediaFetcher(policy, config, MediaCache(settings.media_cache_dir)), None
    if out is None:
        return MediaFetcher(policy, config), None
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    root = settings.cache_dir / "media-runs" / key
    return MediaFetcher(policy, config, MediaCache(root)), root


def _fetch_summary(console: Console, fetcher: MediaFetcher) -> None:
    s = fetcher.stats
    if s.downloaded or s.cache_hits or s.failed:
        console.print(
            f"Media: {s.downloaded} downloaded ({s.bytes / 1e6:.1f} MB), {s.cache_hits} from the "
            f"cache, {s.shared_in_flight} shared with a download in flight, {s.retries} retries, "
            f"{s.failed} failed",
            soft_wrap=True,
        )


def score_via_queue(
    settings: Settings, job: ScoreJob, console: Console, timeout_s: float | None = None
) -> int:
    """`backfire score --queue`: every post goes in through the one ingest path (stored, then
    enqueued), then the workers are waited for with a progress bar and the rows written like the
    in-process run. Re-running is idempotent whatever `resume` says: known posts are not read
    again, and those not finished are sent again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from workers.media.decode import DecodeLimits
    from workers.media.source import read_media
    from workers.queue.app import create_app
    from workers.queue.ingest import Ingest
    from workers.queue.publish import Publisher
    from workers.store import open_database
    from workers.store import posts as repo
    from workers.store.blobs import BlobStore
    from workers.store.views import result_row

    out = job.out
    records = open_reader(job.path, job.fmt, job.hashtag)
    ofmt = _out_format(out, job.out_format)
    db = open_database(settings)
    policy = FetchPolicy.from_settings(settings)
    ingest = Ingest(
        db, BlobStore(settings.resolved_media_dir), Publisher(create_app(settings), db, 0.0),
        policy, DecodeLimits.from_settings(settings),
    )  # fmt: skip
    rows: list[ResultRow] = []
    seqs: list[int] = []
    for rec in records:
        if isinstance(rec, ReadProblem):
            console.print(f"[yellow]skipped[/] {rec.location}: {rec.message}", soft_wrap=True)
            continue
        new = repo.NewPost(
            owner=CLI_OWNER, media_sha256="", post_id=rec.post_id, caption=rec.caption,
            hashtag=rec.hashtag, created_at=rec.created_at, author=rec.author,
            image_url=rec.image,
        )  # fmt: skip
        try:
            row, _ = ingest.accept(new, partial(read_media, rec.image, policy), resend=True)
        except MediaError as e:
            # No pipeline ran: the row names the post and why its image was refused.
            rows.append(PostResult(rec, None, error=e.as_record()).row())
            continue
        seqs.append(row.seq)

    bar = Progress(
        TextColumn("[bold]workers scoring"), BarColumn(), MofNCompleteColumn(),
        console=console, disable=not job.progress,
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
        done = result_row(view.post, view.verdict)
        assert done is not None  # finished_among said it is finished
        rows.append(done)
    names = _scene_names(settings)
    writer = JsonlWriter(sys.stdout) if out is None else open_writer(out, ofmt, names, False)
    try:
        for r in rows:
            writer.write(r.as_record())
    finally:
        if out is not None:
            writer.close()
    failed = sum(1 for r in rows if not r.ok)
    console.print(f"{len(rows) - failed} scored, {failed} failed")
    return EXIT_POSTS_FAILED if failed else EXIT_OK


def _scene_names(settings: Settings) -> list[str]:
    from workers.scenes.prompts import load_prompt_set

    return load_prompt_set(settings.scenes_file).names
