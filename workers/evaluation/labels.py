"""Labelled posts: a manifest as `backfire score` reads it (CSV/JSONL with `post_id, image,
caption`...) plus any of the label columns `scenes` (`arrest;restraint`, or `none`), `verdict`
and `ironic` (0/1), or the labels given through the API (`from_store`).

Every problem names its line: an unknown scene, an unknown verdict, an `ironic` that is not
0/1, a missing post id, a post id given twice. By default they stop the run before any model
loads; with `skip_bad` those rows are left out and counted. Rows with no label at all are left
out and counted (they cannot be scored against anything).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workers.domain import LABEL_KEYS, VERDICTS, Labels, Post, VerdictLabel, clean_hashtag
from workers.errors import InputFormatError, UsageError
from workers.sources import ReadProblem
from workers.sources.manifest import post_from_row

#: Words that mean "no scene at all" in a `scenes` cell.
NONE_WORDS = ("none", "no_scene", "-")
_TRUE, _FALSE = ("1", "true", "yes", "y"), ("0", "false", "no", "n")


@dataclass(frozen=True)
class LabelledPost:
    post: Post
    labels: Labels
    #: Where it came from: `file.csv:12`, or `store:<public id>`.
    location: str
    #: Known when the post comes from the store (its bytes are in the media store).
    media_sha256: str | None = None


@dataclass
class LabelledSet:
    posts: list[LabelledPost]
    source: str
    #: Rows without any label (left out).
    unlabelled: int = 0
    #: (location, why) of rows left out with `skip_bad`.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def scene_names(self) -> set[str]:
        return {n for p in self.posts if p.labels.scenes for n in p.labels.scenes}


class LabelError(ValueError):
    """One label that cannot be read; the reader adds the line."""


def parse_scenes(value: Any, known: Iterable[str]) -> frozenset[str] | None:
    """`arrest;restraint` (also `,` or `|`), a JSON list, or `none` → the scenes; blank → None."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if not text:
            return None
        items = [t.strip() for t in text.replace("|", ";").replace(",", ";").split(";")]
    items = [i for i in items if i]
    if len(items) == 1 and items[0].lower() in NONE_WORDS:
        return frozenset()
    names = set(known)
    unknown = sorted({i for i in items if i not in names})
    if unknown:
        raise LabelError(
            f"unknown scene {', '.join(map(repr, unknown))} (known: {', '.join(sorted(names))}; "
            "write `none` for a photo showing none of them)"
        )
    return frozenset(items)


def parse_verdict(value: Any) -> VerdictLabel | None:
    text = str(value if value is not None else "").strip().lower().replace("-", "_")
    if not text:
        return None
    if text not in VERDICTS:
        raise LabelError(f"unknown verdict {value!r} (one of {', '.join(VERDICTS)})")
    return text


def parse_ironic(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LabelError(f"ironic must be 0 or 1, not {value!r}")


def labels_from(row: Mapping[str, Any], known_scenes: Iterable[str]) -> Labels:
    return Labels(
        scenes=parse_scenes(row.get("scenes"), known_scenes),
        verdict=parse_verdict(row.get("verdict")),
        ironic=parse_ironic(row.get("ironic")),
    )


def _rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | str]]:
    """(location, row) per record, or (location, problem) for a line that cannot be a row."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"post_id", "image"} - set(reader.fieldnames or [])
            if missing:
                yield f"{path}:1", f"the header lacks the column(s) {', '.join(sorted(missing))}"
                return
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{n}", f"not valid JSON ({e.msg})"
                    continue
                if not isinstance(row, dict):
                    yield f"{path}:{n}", "expected a JSON object per line"
                    continue
                yield f"{path}:{n}", row
    else:
        raise UsageError(f"Labelled posts are read from .csv or .jsonl files, not {path.name}.")


def read_labelled(
    path: Path, known_scenes: Iterable[str], *, hashtag: str | None = None,
    skip_bad: bool = False,
) -> LabelledSet:  # fmt: skip
    """Every labelled row of `path`; raises `InputFormatError` naming each bad line (up to ten)
    unless `skip_bad`."""
    if not path.is_file():
        raise UsageError(f"Labelled file not found: {path}")
    known = list(known_scenes)
    out = LabelledSet([], str(path))
    problems: list[tuple[str, str]] = []
    first_seen: dict[str, str] = {}
    for where, row in _rows(path):
        if isinstance(row, str):
            problems.append((where, row))
            continue
        post = post_from_row(row, path.parent, clean_hashtag(hashtag), where)
        if isinstance(post, ReadProblem):
            problems.append((where, post.message))
            continue
        try:
            labels = labels_from(row, known)
        except LabelError as e:
            problems.append((where, str(e)))
            continue
        if post.post_id in first_seen:
            problems.append((where, f"post id {post.post_id!r} again (first at "
                                    f"{first_seen[post.post_id]})"))  # fmt: skip
            continue
        first_seen[post.post_id] = where
        if labels.empty:
            out.unlabelled += 1
            continue
        extra = {k: v for k, v in post.extra.items() if k not in LABEL_KEYS}
        post = replace(post, extra=extra)
        out.posts.append(LabelledPost(post, labels, where))
    if problems and not skip_bad:
        shown = "\n".join(f"  {w}: {m}" for w, m in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise InputFormatError(
            f"{len(problems)} labelled row(s) cannot be read:\n{shown}{more}\n"
            "Fix them, or pass --skip-bad to leave them out."
        )
    out.skipped = problems
    return out
