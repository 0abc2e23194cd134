"""Result writers (JSONL, CSV) and reading back what a previous run wrote, for `--resume`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Protocol, TextIO

from workers.errors import UsageError

OUT_FORMATS = ("jsonl", "csv")
_CSV_FIXED = [
    "post_id", "status", "verdict", "confidence", "reasons", "review", "review_reason",
    "hashtag", "created_at", "author",
    "image", "caption_text", "caption_sarcasm", "caption_sentiment", "caption_cues",
    "caption_stance", "caption_critical", "caption_supportive", "caption_neutral",
    "media_sha256", "pipeline_version", "error_type", "error_message",
]  # fmt: skip


class Writer(Protocol):
    def write(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def out_format_for(path: Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in OUT_FORMATS:
            raise UsageError(f"Unknown output format {explicit!r}; choose jsonl or csv.")
        return explicit
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise UsageError(
        f"Cannot tell the output format of {path}; use .jsonl or .csv or --out-format."
    )


class JsonlWriter:
    def __init__(self, f: TextIO) -> None:
        self.f = f

    def write(self, row: dict[str, Any]) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.f.close()


class CsvWriter:
    """Flat rows: scene probabilities as `scene_<name>` columns, reasons joined with '; '."""

    def __init__(self, f: TextIO, scene_names: list[str], write_header: bool) -> None:
        self.f = f
        self.columns = _CSV_FIXED + [f"scene_{n}" for n in scene_names]
        self.w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
        if write_header:
            self.w.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        flat = {k: v for k, v in row.items() if k in _CSV_FIXED}
        flat["reasons"] = "; ".join(row.get("reasons") or [])
        cap = row.get("caption") or {}
        flat["caption_sarcasm"] = cap.get("sarcasm")
        flat["caption_sentiment"] = cap.get("sentiment")
        flat["caption_cues"] = "; ".join(cap.get("cues") or [])
        stance = cap.get("stance") or {}
        flat["caption_stance"] = stance.get("label")
        for k in ("critical", "supportive", "neutral"):
            flat[f"caption_{k}"] = stance.get(k)
        err = row.get("error") or {}
        flat["error_type"], flat["error_message"] = err.get("type"), err.get("message")
        for name, p in (row.get("scenes") or {}).items():
            flat[f"scene_{name}"] = p
        # One physical line per row keeps the file greppable and lets --resume cut a torn tail.
        for k, v in flat.items():
            if isinstance(v, str):
                flat[k] = " ".join(v.splitlines())
        self.w.writerow(flat)

    def close(self) -> None:
        self.f.close()


def open_writer(path: Path, fmt: str, scene_names: list[str], append: bool) -> Writer:
    """A line-buffered writer: every row reaches the file as it is written, so a crash loses at
    most the row being written (and `--resume` drops a torn last line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = append and path.exists() and path.stat().st_size > 0
    f = open(path, "a" if append else "w", encoding="utf-8", newline="", buffering=1)  # noqa: SIM115
    if fmt == "csv":
        return CsvWriter(f, scene_names, write_header=not existing)
    return JsonlWriter(f)


def done_post_ids(path: Path, fmt: str) -> set[str]:
    """Post ids already in a previous run's output. A torn last line (the process was killed while
    writing it) is cut off, so the post is scored again and appears exactly once."""
    if not path.exists():
        return set()
    _truncate_torn_tail(path)
    ids: set[str] = set()
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            for row in csv.DictReader(f):
                if row.get("post_id"):
                    ids.add(row["post_id"])
        else:
            for line in f:
                if line.strip():
                    try:
                        ids.add(str(json.loads(line)["post_id"]))
                    except (json.JSONDecodeError, KeyError, TypeError) as e:
                        raise UsageError(
                            f"{path} is not a Backfire JSONL output; cannot resume from it."
                        ) from e
    return ids


def _truncate_torn_tail(path: Path) -> None:
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the last newline and cut there.
        pos = size
        step = 4096
        while pos > 0:
            start = max(0, pos - step)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                return
            pos = start
        f.truncate(0)
