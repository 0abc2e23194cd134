"""Rows → HTML, with a bounded amount of image work: the entry point for the CLI and the API.

Cost control for big campaigns (100,000 posts must render in seconds and stay small enough to
e-mail): every row is aggregated, but only the `max_hashed` most-posted / most-confident distinct
images are perceptually hashed, and only the posts actually shown get a thumbnail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.config import Settings, get_settings
from workers.domain import ResultRow, parse_time
from workers.errors import BackfireError
from workers.media.decode import DecodeLimits
from workers.net.guard import FetchPolicy
from workers.report.data import ReportModel, build_model, image_key
from workers.report.images import (
    THUMB_SIDE,
    ImageLoader,
    hash_images,
    near_duplicate_clusters,
    thumbnail_uri,
)
from workers.report.render import render
from workers.store.blobs import BlobStore

MAX_HASHED = 1500
TOP_N = 12


def scene_thresholds(settings: Settings) -> dict[str, tuple[str, float]]:
    """scene → (group, threshold) from the prompt set; empty if it cannot be read (the report
    then counts a scene at p ≥ 0.5 rather than failing)."""
    from workers.scenes.prompts import load_prompt_set

    try:
        ps = load_prompt_set(settings.scenes_file)
    except BackfireError:
        return {}
    return {name: (s.group, s.threshold) for name, s in ps.scenes.items()}


def _hash_candidates(rows: list[ResultRow], limit: int) -> list[tuple[str, ResultRow]]:
    """Distinct images worth hashing: most-posted first, then the most confident verdicts
    (those are the ones the top lists and duplicate clusters show)."""
    best: dict[str, tuple[int, float, ResultRow]] = {}
    for r in rows:
        if not r.ok or not (r.image or r.media_sha256):
            continue
        k = image_key(r)
        n, conf, first = best.get(k, (0, 0.0, r))
        c = (r.confidence or 0.0) if r.verdict in ("backlash", "supportive") else 0.0
        best[k] = (n + 1, max(conf, c), first)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    return [(k, v[2]) for k, v in ranked[:limit]]


def _sensitive(row: ResultRow, thresholds: dict[str, tuple[str, float]]) -> bool:
    """Blur backlash posts and any photo where a force scene (arrest, weapon...) was seen."""
    if row.verdict == "backlash":
        return True
    for name, p in (row.scenes or {}).items():
        group, thr = thresholds.get(name, ("", 1.1))
        if group == "force" and float(p or 0) >= thr:
            return True
    return False


def build_report(
    records: Iterable[ResultRow | dict[str, Any]],
    *,
    settings: Settings | None = None,
    fetch_thumbnails: bool = False,
    base_dir: Path | None = None,
    blobs: BlobStore | None = None,
    title: str | None = None,
    scored_at: str | None = None,
    max_hashed: int = MAX_HASHED,
    top_n: int = TOP_N,
    markers: Iterable[tuple[str | datetime, str]] = (),
) -> tuple[ReportModel, str]:
    """The report model and its HTML. See `render_report`. `markers`: (time, label) pairs
    marked on the timeline chart (alert times)."""
    settings = settings or get_settings()
    rows = [ResultRow.of(r) for r in records]
    thresholds = scene_thresholds(settings)
    loader = ImageLoader(
        FetchPolicy.from_settings(settings), fetch=fetch_thumbnails, base_dir=base_dir,
        limits=DecodeLimits.from_settings(settings, target_size=THUMB_SIDE), blobs=blobs,
    )  # fmt: skip
    hashes = hash_images(loader, _hash_candidates(rows, max_hashed))
    clusters = near_duplicate_clusters(hashes)
    model = build_model(
        rows, scene_thresholds=thresholds, clusters=clusters, top_n=top_n, title=title,
        scored_at=scored_at,
    )  # fmt: skip
    for when, label in markers:
        t = when if isinstance(when, datetime) else parse_time(when)
        if t is not None:
            model.markers.append((t, label))

    # A photo is sensitive wherever it appears if any post of it (or of a near-duplicate) is:
    # the same image must not show unblurred under a "supportive" caption.
    hot = {clusters.get(image_key(r), image_key(r)) for r in rows if _sensitive(r, thresholds)}
    shown = [t.row for t in model.to_review + model.top_backlash + model.top_supportive]
    shown += [c.rep for c in model.clusters]
    thumbs: dict[str, str | None] = {}
    sensitive: set[str] = set()
    for r in shown:
        pid = r.post_id
        if pid in thumbs:
            continue
        img = loader.load_row(r)
        thumbs[pid] = thumbnail_uri(img) if img is not None else None
        if clusters.get(image_key(r), image_key(r)) in hot:
            sensitive.add(pid)
    generated = datetime.now(UTC).strftime("%-d %b %Y %H:%M UTC")
    return model, render(model, thumbs, sensitive, generated)


def render_report(
    rows: Iterable[ResultRow | dict[str, Any]],
    *,
    settings: Settings | None = None,
    fetch_thumbnails: bool = False,
    base_dir: Path | None = None,
    blobs: BlobStore | None = None,
    title: str | None = None,
    scored_at: str | None = None,
) -> str:
    """One self-contained HTML page for verdict rows (`ResultRow`s or their records).

    For the CLI and for the API's `GET /v1/hashtags/{tag}/report`. Thumbnails come from `blobs`
    (the media store, by sha256) when given; image URLs are fetched (with the SSRF-safe fetcher)
    only if `fetch_thumbnails`; local paths are read (relative ones also under `base_dir`).
    Missing images become placeholders. Never touches the network otherwise.
    """
    return build_report(
        rows, settings=settings, fetch_thumbnails=fetch_thumbnails, base_dir=base_dir,
        blobs=blobs, title=title, scored_at=scored_at,
    )[1]  # fmt: skip
