"""`backfire report`: the campaign view, from a verdicts file or from the store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from workers.cli.common import allow_private, err, settings_with
from workers.config import Settings
from workers.domain import ResultRow, clean_hashtag
from workers.errors import UsageError
from workers.store.blobs import BlobStore


def report(
    verdicts: Annotated[
        Path | None, typer.Argument(help="Verdicts file written by `backfire score` (.jsonl/.csv).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    hashtag: Annotated[
        str | None,
        typer.Option("--hashtag", help="Report this hashtag from the store instead of a file."),
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Page title; default #hashtag.")
    ] = None,
    fetch_thumbnails: Annotated[
        bool,
        typer.Option(
            "--fetch-thumbnails/--no-fetch-thumbnails",
            help="Download thumbnails of image URLs (SSRF-checked). Local paths are always read.",
        ),
    ] = False,
    allow_private_network: Annotated[bool, allow_private("thumbnail URLs")] = False,
) -> None:
    """Write a one-file HTML report of a scored hashtag: verdict shares, backlash over time,
    scenes, the posts driving it, reposted photos, failures. Opens offline; safe to e-mail.

    Examples:

      backfire report verdicts.jsonl --out report.html

      backfire report verdicts.jsonl --out report.html --fetch-thumbnails
    """
    from workers.report import build_report
    from workers.report.data import read_rows

    settings = settings_with(allow_private_network=allow_private_network or None)
    started = time.perf_counter()
    blobs = None
    rows: list[ResultRow] | list[dict[str, Any]]
    if hashtag is not None:
        rows, scored_at, base = _store_rows(settings, hashtag), None, None
        blobs = BlobStore(settings.resolved_media_dir)  # thumbnails from the media store
    elif verdicts is not None:
        rows = list(read_rows(verdicts))
        mtime = datetime.fromtimestamp(verdicts.stat().st_mtime, UTC)
        scored_at, base = mtime.strftime("%-d %b %Y %H:%M UTC"), verdicts.parent
    else:
        raise UsageError("Give a verdicts file, or --hashtag TAG to report from the store.")
    model, html = build_report(
        rows, settings=settings, fetch_thumbnails=fetch_thumbnails, base_dir=base, blobs=blobs,
        title=title, scored_at=scored_at,
    )  # fmt: skip
    out.write_text(html, encoding="utf-8")
    err.print(
        f"Report of {model.total:,} posts ({model.counts.get('backlash', 0):,} backlash) → {out} "
        f"({len(html.encode()) / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)",
        soft_wrap=True,
    )


def _store_rows(settings: Settings, hashtag: str) -> list[dict]:
    """Finished posts of one hashtag from the verdict store (issue 3), every owner."""
    from workers.report.store_rows import store_rows
    from workers.store import open_database

    db = open_database(settings, upgrade=False)
    try:
        return list(store_rows(db, settings, clean_hashtag(hashtag) or ""))
    finally:
        db.dispose()
