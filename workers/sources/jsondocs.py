"""JSON documents from an export file, whatever its layout: JSON Lines (one page or one post per
line, as twarc2 and most scrapers write) or one pretty-printed document (an API response saved
with `curl > file.json`). Readers share this so every malformed line is reported the same way,
with its line number, and skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workers.sources import ReadProblem

#: A whole-file document larger than this is not loaded just to sniff its format.
_SNIFF_WHOLE_FILE_MAX = 64 * 1024 * 1024


def iter_documents(path: Path) -> Iterator[tuple[str, Any] | ReadProblem]:
    """(location, parsed JSON) per document, or a ReadProblem for a line that is not JSON.

    The file is read as JSON Lines unless its first non-empty line is not JSON on its own while
    the whole file is: then it is one document (location `path`)."""
    with open(path, encoding="utf-8-sig") as f:
        first = True
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                if first:
                    whole = _load_whole(path)
                    if whole is not None:
                        yield (str(path), whole)
                        return
                yield ReadProblem(f"{path}:{n}", f"not valid JSON ({e.msg})")
                first = False
                continue
            first = False
            yield (f"{path}:{n}", doc)


def _load_whole(path: Path) -> Any | None:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def first_document(path: Path) -> Any | None:
    """The first JSON document of `path` (first line, or the whole file), for format sniffing."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                if line.strip():
                    try:
                        return json.loads(line)
                    except json.JSONDecodeError:
                        break
    except (OSError, UnicodeDecodeError):
        return None
    if path.stat().st_size <= _SNIFF_WHOLE_FILE_MAX:
        return _load_whole(path)
    return None


def elements(location: str, doc: Any, key: str | None = None) -> Iterator[tuple[str, Any]]:
    """Items of a page: `doc[key]` (or `doc` itself when it is a list), each with its location
    (`file:line[index]`); a non-page document is one item."""
    items = doc
    if not isinstance(doc, list):
        items = doc.get(key) if key and isinstance(doc, dict) else None
    if isinstance(items, list):
        for i, item in enumerate(items):
            yield (f"{location}[{i}]", item)
    else:
        yield (location, doc)


def dig(obj: Any, *keys: str | int) -> Any:
    """obj[k1][k2]... or None when any step is missing or of the wrong type."""
    for k in keys:
        if isinstance(k, int):
            if not isinstance(obj, list) or not -len(obj) <= k < len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[k] if isinstance(k, int) else obj.get(k)
    return obj


def obj_at(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    """obj[key] when it is a JSON object, else None: exports put null, strings or lists where
    an object belongs, and a reader treats those as absent."""
    value = obj.get(key)
    return value if isinstance(value, dict) else None
