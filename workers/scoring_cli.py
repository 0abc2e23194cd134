"""`backfire score`: wires settings, reader, pipeline, runner and writer for one run."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.config import Settings
from workers.errors import UsageError
from workers.net.guard import FetchPolicy
from workers.scoring.runner import Runner, RunStats
from workers.scoring.writers import JsonlWriter, done_post_ids, open_writer, out_format_for
from workers.sources import ReadProblem, open_reader

if TYPE_CHECKING:
    from workers.media.fetcher import MediaFetcher

EXIT_OK, EXIT_POSTS_FAILED = 0, 1


def _count(path: Path, fmt: str, hashtag: str | None) -> int:
    return sum(1 for r in open_reader(path, fmt, hashtag) if not isinstance(r, ReadProblem))


def run_score(
    settings: Settings,
    path: Path,
    *,
    out: Path | None,
    hashtag: str | None,
    fmt: str = "auto",
    out_format: str | None = None,
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> int:
    console = console or Console(stderr=True)
    records = open_reader(path, fmt, hashtag)  # validates path and format before model loading
    if resume and out is None:
        raise UsageError("--resume needs --out: it skips the posts already written there.")
    ofmt = out_format_for(out, out_format) if out is not None else (out_format or "jsonl")
    skip = done_post_ids(out, ofmt) if (resume and out is not None) else set()

    from workers.scoring.pipeline import Pipeline

    with console.status("Loading the scene model…", spinner="dots") if progress else _null():
        pipeline = Pipeline.from_settings(settings)
    total = _count(path, fmt, hashtag) - len(skip) if progress else None

    if out is None:
        if ofmt != "jsonl":
            raise UsageError("Writing to stdout is JSONL only; use --out FILE.csv for CSV.")
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
    from workers.notify.rules import AlertTee

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
