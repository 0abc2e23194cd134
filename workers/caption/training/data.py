"""Labelled captions for training and evaluation.

Two input formats, chosen by what the folder (or file) holds:

- TweetEval: `{split}_text.txt` + `{split}_labels.txt`, one item per line, aligned. Every text line
  of the irony set ends with a trailing space, stripped here.
- CSV with a header `text,label` (label 0/1): `{split}.csv` in a folder, or a single CSV file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from workers.errors import InputFormatError


class CaptionDataError(InputFormatError):
    """A labelled caption file is missing or malformed."""

    code = "caption-data"


@dataclass(frozen=True)
class LabelledCaptions:
    texts: list[str]
    labels: list[int]  # 1 = ironic/sarcastic, 0 = not
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def _read_lines(path: Path) -> list[str]:
    # Split on "\n" only: a few tweets hold other Unicode line separators inside the text.
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _parse_label(raw: str, where: str) -> int:
    raw = raw.strip()
    if raw not in {"0", "1"}:
        raise CaptionDataError(f"{where}: label must be 0 or 1, got {raw!r}")
    return int(raw)


def _read_tweeteval(folder: Path, split: str) -> LabelledCaptions:
    text_path, label_path = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
    texts = [t.strip() for t in _read_lines(text_path)]
    raw_labels = _read_lines(label_path)
    if len(texts) != len(raw_labels):
        raise CaptionDataError(
            f"{text_path} has {len(texts)} lines but {label_path} has {len(raw_labels)}"
        )
    labels = [_parse_label(r, f"{label_path}:{i + 1}") for i, r in enumerate(raw_labels)]
    return LabelledCaptions(texts, labels, str(text_path))


def _read_csv(path: Path) -> LabelledCaptions:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
            raise CaptionDataError(f"{path}: needs a header with columns text,label")
        texts, labels = [], []
        for i, row in enumerate(reader, start=2):
            texts.append((row["text"] or "").strip())
            labels.append(_parse_label(row["label"] or "", f"{path}:{i}"))
    return LabelledCaptions(texts, labels, str(path))


def has_split(data: Path, split: str) -> bool:
    if data.is_file():
        return split == "train"
    return (data / f"{split}_text.txt").is_file() or (data / f"{split}.csv").is_file()


def load_split(data: Path, split: str) -> LabelledCaptions:
    """Read `split` ("train", "val", "test") from a TweetEval folder, a CSV folder or a CSV file.

    A single CSV file counts as every split the caller asks for (e.g. evaluate your own captions).
    """
    if data.is_file():
        items = _read_csv(data)
    elif (data / f"{split}_text.txt").is_file():
        items = _read_tweeteval(data, split)
    elif (data / f"{split}.csv").is_file():
        items = _read_csv(data / f"{split}.csv")
    else:
        raise CaptionDataError(
            f"no {split} split in {data}: expected {split}_text.txt + {split}_labels.txt "
            f"(TweetEval) or {split}.csv with columns text,label"
        )
    if not items.texts:
        raise CaptionDataError(f"{items.source} holds no captions")
    return items
