"""Rows → the report model: counts, shares, time buckets, scenes, top posts, failures.

Pure Python over the typed verdict rows (`ResultRow`), no images and no HTML: the
renderer and the API both consume `ReportModel`. Everything here is linear in the number of rows
so 100,000 rows aggregate in well under a second.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workers.domain import VERDICTS, ResultRow, clean_hashtag, parse_time
from workers.errors import InputFormatError

#: Keys in `extra` (from export readers) that count re-shares of a post.
REPOST_KEYS = (
    "reposts", "repost_count", "retweets", "retweet_count", "shares", "share_count",
    "boosts", "reblogs_count", "reblogs", "quote_count",
)  # fmt: skip
HOURLY_MAX_SPAN = timedelta(days=3)


@dataclass
class Bucket:
    start: datetime
    end: datetime
    posts: int = 0
    backlash: int = 0

    @property
    def share(self) -> float | None:
        return self.backlash / self.posts if self.posts else None


@dataclass
class Group:
    """Posts of the same image (exact bytes or near-duplicate): reach is counted per group."""

    key: str
    rows: list[ResultRow] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return len(self.rows)


@dataclass
class TopPost:
    row: ResultRow
    score: float
    reach: int
    same_image_posts: int


@dataclass
class DupCluster:
    """One photo posted more than once: same bytes, or re-encoded / re-cropped (dHash)."""

    key: str
    posts: int
    files: int  # distinct image files (1 = exact reposts only)
    verdicts: dict[str, int]
    rep: ResultRow  # the post shown for it: its most confident one


@dataclass
class FailureGroup:
    code: str
    count: int
    example_message: str
    example_ids: list[str]


@dataclass
class ReportModel:
    title: str
    hashtags: list[str]
    total: int
    ok: int
    failed: int
    counts: dict[str, int]
    pipeline_versions: list[tuple[str, int]]
    scored_at: str | None
    first_post: datetime | None
    last_post: datetime | None
    bucket_unit: str  # "hour" | "day"
    buckets: list[Bucket]
    undated: int
    scene_counts: list[tuple[str, str, int]]  # (scene, group, backlash posts showing it)
    top_backlash: list[TopPost]
    top_supportive: list[TopPost]
    #: Verdicts flagged for a person to check (weak or conflicting evidence), most seen first.
    to_review: list[TopPost]
    review_total: int
    clusters: list[DupCluster]
    failures: list[FailureGroup]
    #: Moments marked on the backlash-over-time chart: (time, label), e.g. when an alert of
    #: `backfire watch` fired or `backfire replay` says it would have.
    markers: list[tuple[datetime, str]] = field(default_factory=list)

    def share(self, verdict: str) -> float:
        return self.counts.get(verdict, 0) / self.ok if self.ok else 0.0


# --- reading rows -----------------------------------------------------------------------------
def read_rows(path: Path) -> Iterator[ResultRow]:
    """Rows from a `backfire score` output file (JSONL, or CSV with flattened columns)."""
    if not path.is_file():
        raise InputFormatError(f"No such verdicts file: {path}")
    if path.suffix.lower() == ".csv":
        yield from map(ResultRow.from_record, _read_csv(path))
        return
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A run killed mid-write leaves a torn last line; one bad line must not hide
                # the rest of the campaign.
                continue
            if not isinstance(row, dict):
                raise InputFormatError(f"{path}:{n}: expected a JSON object per line")
            yield ResultRow.from_record(row)


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        for flat in csv.DictReader(f):
            row: dict[str, Any] = {k: v for k, v in flat.items() if v not in (None, "")}
            row["reasons"] = [r for r in (flat.get("reasons") or "").split("; ") if r]
            row["scenes"] = {
                k[6:]: _float(v) for k, v in flat.items() if k.startswith("scene_") and v
            }
            if "confidence" in row:
                row["confidence"] = _float(row["confidence"])
            if flat.get("error_type"):
                row["error"] = {"type": flat["error_type"], "message": flat.get("error_message")}
            yield row


# --- helpers ----------------------------------------------------------------------------------
def _float(v: Any, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def reposts_of(row: ResultRow) -> int:
    """Re-shares the platform counted for this post (0 if the export has none)."""
    extra = row.extra or {}
    for key in REPOST_KEYS:
        if key in extra:
            return max(0, int(_float(extra[key])))
    return 0


def image_key(row: ResultRow) -> str:
    """Identity of the image: its sha256 when scored, else its reference, else the post."""
    return row.media_sha256 or row.image or f"post:{row.post_id}"


def _floor(dt: datetime, unit: str) -> datetime:
    if unit == "hour":
        return dt.replace(minute=0, second=0, microsecond=0)
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def make_buckets(times: list[tuple[datetime, bool]]) -> tuple[str, list[Bucket]]:
    """Hourly buckets for spans up to three days, daily beyond; empty buckets kept (gaps show)."""
    if not times:
        return "hour", []
    lo = min(t for t, _ in times)
    hi = max(t for t, _ in times)
    unit = "hour" if hi - lo <= HOURLY_MAX_SPAN else "day"
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    start = _floor(lo, unit)
    n = int((_floor(hi, unit) - start) / step) + 1
    buckets = [Bucket(start + i * step, start + (i + 1) * step) for i in range(n)]
    for t, is_backlash in times:
        b = buckets[int((t - start) / step)]
        b.posts += 1
        b.backlash += is_backlash
    return unit, buckets


# --- the model --------------------------------------------------------------------------------
def build_model(
    records: Iterable[ResultRow | dict[str, Any]],
    *,
    scene_thresholds: dict[str, tuple[str, float]] | None = None,
    clusters: dict[str, str] | None = None,
    top_n: int = 12,
    title: str | None = None,
    scored_at: str | None = None,
) -> ReportModel:
    """Aggregate verdict rows.

    `scene_thresholds` maps scene → (group, threshold) from the prompt set; scenes not in it
    count at 0.5. `clusters` maps an `image_key` to its near-duplicate cluster key, so reposts
    and re-crops of one photo add up to one reach (see `dedupe.py`).
    """
    rows = [ResultRow.of(r) for r in records]
    scene_thresholds = scene_thresholds or {}
    clusters = clusters or {}
    ok_rows = [r for r in rows if r.ok and r.verdict]
    failed_rows = [r for r in rows if not r.ok]

    counts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    counts.update(str(r.verdict) for r in ok_rows)
    versions = Counter(r.pipeline_version or "unknown" for r in rows)
    hashtags = Counter(h for h in (clean_hashtag(r.hashtag) for r in rows) if h)

    timed: list[tuple[datetime, bool]] = []
    undated = 0
    for r in ok_rows:
        t = parse_time(r.created_at)
        if t is None:
            undated += 1
        else:
            timed.append((t, r.verdict == "backlash"))
    unit, buckets = make_buckets(timed)

    scene_hits: Counter[str] = Counter()
    for r in ok_rows:
        if r.verdict != "backlash":
            continue
        for name, p in (r.scenes or {}).items():
            _group, thr = scene_thresholds.get(name, ("", 0.5))
            if _float(p) >= thr:
                scene_hits[name] += 1
    names = list(scene_thresholds) + sorted(set(scene_hits) - set(scene_thresholds))
    scene_counts = sorted(
        ((n, scene_thresholds.get(n, ("", 0.5))[0], scene_hits[n]) for n in names),
        key=lambda t: -t[2],
    )

    # Reach: every post of the same (or near-same) image, plus the reposts the platform counted.
    groups: dict[str, Group] = {}
    for r in ok_rows:
        k = image_key(r)
        k = clusters.get(k, k)
        groups.setdefault(k, Group(k)).rows.append(r)

    return ReportModel(
        title=title or _title(hashtags),
        hashtags=[h for h, _ in hashtags.most_common()],
        total=len(rows),
        ok=len(ok_rows),
        failed=len(failed_rows),
        counts=dict(counts),
        pipeline_versions=versions.most_common(),
        scored_at=scored_at or _latest(rows),
        first_post=min((t for t, _ in timed), default=None),
        last_post=max((t for t, _ in timed), default=None),
        bucket_unit=unit,
        buckets=buckets,
        undated=undated,
        scene_counts=scene_counts,
        top_backlash=top_posts(groups.values(), "backlash", top_n),
        top_supportive=top_posts(groups.values(), "supportive", top_n),
        to_review=review_posts(groups.values(), top_n),
        review_total=sum(1 for r in ok_rows if r.review),
        clusters=dup_clusters(groups.values(), top_n),
        failures=_failures(failed_rows),
    )


def top_posts(groups: Iterable[Group], verdict: str, n: int) -> list[TopPost]:
    """One entry per image: the group's most confident post of `verdict`, ranked by
    confidence × reach, where reach = posts of that image + reposts counted by the platform."""
    out: list[TopPost] = []
    for g in groups:
        mine = [r for r in g.rows if r.verdict == verdict]
        if not mine:
            continue
        best = max(mine, key=lambda r: r.confidence or 0.0)
        reach = g.posts + sum(reposts_of(r) for r in g.rows)
        out.append(TopPost(best, (best.confidence or 0.0) * reach, reach, g.posts))
    out.sort(key=lambda t: (-t.score, t.row.post_id))
    return out[:n]


def review_posts(groups: Iterable[Group], n: int) -> list[TopPost]:
    """One entry per image with a post flagged for review: its least confident flagged post,
    ranked by reach (what most people see is checked first), then by lower confidence."""
    out: list[TopPost] = []
    for g in groups:
        flagged = [r for r in g.rows if r.review]
        if not flagged:
            continue
        row = min(flagged, key=lambda r: (r.confidence or 0.0, r.post_id))
        reach = g.posts + sum(reposts_of(r) for r in g.rows)
        out.append(TopPost(row, float(reach), reach, g.posts))
    out.sort(key=lambda t: (-t.reach, t.row.confidence or 0.0, t.row.post_id))
    return out[:n]


def dup_clusters(groups: Iterable[Group], n: int) -> list[DupCluster]:
    out = []
    for g in groups:
        if g.posts < 2:
            continue
        rep = max(g.rows, key=lambda r: r.confidence or 0.0)
        verdicts = Counter(str(r.verdict) for r in g.rows)
        files = len({image_key(r) for r in g.rows})
        out.append(DupCluster(g.key, g.posts, files, dict(verdicts.most_common()), rep))
    out.sort(key=lambda c: (-c.posts, c.key))
    return out[:n]


def _failures(rows: list[ResultRow]) -> list[FailureGroup]:
    by: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by[str((r.error or {}).get("type") or "unknown")].append(r)
    return sorted(
        (
            FailureGroup(
                code,
                len(rs),
                str((rs[0].error or {}).get("message") or ""),
                [r.post_id for r in rs[:5]],
            )
            for code, rs in by.items()
        ),
        key=lambda f: -f.count,
    )


def _title(hashtags: Counter[str]) -> str:
    if not hashtags:
        return "Campaign report"
    if len(hashtags) == 1:
        return f"#{next(iter(hashtags))}"
    return " ".join(f"#{h}" for h, _ in hashtags.most_common(3)) + (
        f" and {len(hashtags) - 3} more" if len(hashtags) > 3 else ""
    )


def _latest(rows: list[ResultRow]) -> str | None:
    # Rows read from the store carry scored_at; JSONL rows do not (the CLI passes file mtime).
    stamps = [t for t in (parse_time(r.scored_at) for r in rows) if t is not None]
    return max(stamps).strftime("%-d %b %Y %H:%M UTC") if stamps else None
