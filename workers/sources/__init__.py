"""Readers: each turns one kind of hashtag export into `Post`s (and `ReadProblem`s for records
it had to skip). `open_reader` picks one by `--format` or by sniffing the path.

Posts' `image` is an http(s) URL or an absolute local path: readers resolve relative paths against
the export's own folder, so the runner never guesses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workers.domain import Post, clean_hashtag
from workers.errors import InputFormatError, UsageError


@dataclass(frozen=True)
class ReadProblem:
    """A record the reader skipped, with where it was (e.g. `posts.jsonl:17`) and why."""

    location: str
    message: str


Record = Post | ReadProblem
Reader = Callable[[Path, str | None], Iterator[Record]]


def _readers() -> dict[str, Reader]:
    from workers.sources import bluesky, folder, manifest, mastodon, twarc2

    return {
        "folder": folder.read_folder,
        "csv": manifest.read_csv,
        "jsonl": manifest.read_jsonl,
        "twarc2": twarc2.read_twarc2,
        "mastodon": mastodon.read_mastodon,
        "bluesky": bluesky.read_bluesky,
    }


def formats() -> list[str]:
    return ["auto", *_readers()]


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _sniff_json(path)
    raise UsageError(
        f"Cannot tell the format of {path}; pass --format ({', '.join(formats()[1:])})."
    )


def _sniff_json(path: Path) -> str:
    """Which platform wrote this JSON export, from the shape of its first document."""
    from workers.sources import bluesky, mastodon, twarc2
    from workers.sources.jsondocs import first_document

    doc = first_document(path)
    if isinstance(doc, dict) and "post_id" in doc:
        return "jsonl"  # our own manifest columns win over any look-alike field
    if twarc2.is_twarc2(doc):
        return "twarc2"
    if mastodon.is_mastodon(doc):
        return "mastodon"
    if bluesky.is_bluesky(doc):
        return "bluesky"
    return "jsonl"  # a Backfire manifest (post_id, image, caption...)


def open_reader(path: Path, fmt: str = "auto", hashtag: str | None = None) -> Iterator[Record]:
    """Posts from `path`. `hashtag` fills in posts that do not name their own."""
    hashtag = clean_hashtag(hashtag)
    if not path.exists():
        raise UsageError(f"Input not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = _readers()
    if fmt not in readers:
        raise UsageError(f"Unknown --format {fmt!r}; choose one of {', '.join(formats())}.")
    if fmt == "folder" and not path.is_dir():
        raise UsageError(f"--format folder needs a folder, but {path} is a file.")
    if fmt != "folder" and path.is_dir():
        raise InputFormatError(f"--format {fmt} needs a file, but {path} is a folder.")
    return readers[fmt](path, hashtag)
