"""CSV / JSONL manifests: one post per row with `post_id, image, caption, created_at, author,
hashtag`. `image` is a path (relative to the manifest's folder) or an http(s) URL."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workers.domain import Post, clean_hashtag
from workers.sources import ReadProblem, Record

FIELDS = ("post_id", "image", "caption", "created_at", "author", "hashtag")


def _is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def _post(row: Mapping[str, Any], base: Path, hashtag: str | None, where: str) -> Record:
    post_id = str(row.get("post_id") or "").strip()
    if not post_id:
        return ReadProblem(where, "missing post_id")
    image = str(row.get("image") or "").strip() or None
    if image and not _is_url(image):
        p = Path(image)
        image = str((p if p.is_absolute() else base / p).resolve())
    extra = {k: v for k, v in row.items() if k not in FIELDS and v not in (None, "")}
    return Post(
        post_id=post_id,
        image=image,
        caption=str(row.get("caption") or ""),
        created_at=(str(row["created_at"]) if row.get("created_at") else None),
        author=(str(row["author"]) if row.get("author") else None),
        hashtag=clean_hashtag(row.get("hashtag")) or hashtag,
        extra=extra,
    )


#: One manifest row → a post (or the problem with it): also what labelled files are read with.
post_from_row = _post


def read_csv(path: Path, hashtag: str | None) -> Iterator[Record]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"post_id", "image"} - set(reader.fieldnames or [])
        if missing:
            yield ReadProblem(
                f"{path}:1", f"header lacks the column(s) {', '.join(sorted(missing))}"
            )
            return
        for row in reader:
            yield _post(row, path.parent, hashtag, f"{path}:{reader.line_num}")


def read_jsonl(path: Path, hashtag: str | None) -> Iterator[Record]:
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield ReadProblem(f"{path}:{n}", f"not valid JSON ({e.msg})")
                continue
            if not isinstance(row, dict):
                yield ReadProblem(f"{path}:{n}", "expected a JSON object per line")
                continue
            yield _post(row, path.parent, hashtag, f"{path}:{n}")
