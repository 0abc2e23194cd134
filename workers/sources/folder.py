"""A folder of images: post id = file stem; captions from `captions.csv` (post_id,caption) or a
same-named `.txt` beside each image."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from workers.domain import Post
from workers.sources import ReadProblem, Record

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def read_folder(path: Path, hashtag: str | None) -> Iterator[Record]:
    captions: dict[str, str] = {}
    captions_csv = path / "captions.csv"
    if captions_csv.is_file():
        with open(captions_csv, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"post_id", "caption"} <= set(reader.fieldnames):
                yield ReadProblem(str(captions_csv), "needs the columns post_id and caption")
            else:
                for row in reader:
                    captions[str(row["post_id"]).strip()] = row.get("caption") or ""
    seen: set[str] = set()
    for file in sorted(path.iterdir()):
        # Other files (notes, the captions) are not posts; anything image-named is, even if its
        # bytes turn out not to be an image: that is the decoder's call, with a clear error row.
        if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        post_id = file.stem
        if post_id in seen:
            yield ReadProblem(str(file), f"another image already has post id {post_id!r}")
            continue
        seen.add(post_id)
        caption = captions.get(post_id)
        txt = file.with_suffix(".txt")
        if caption is None and txt.is_file():
            caption = txt.read_text(encoding="utf-8", errors="replace").strip()
        yield Post(post_id=post_id, image=str(file.resolve()), caption=caption or "",
                   hashtag=hashtag)
