"""The SQLite file behind each on-disk cache of model outputs (image embeddings by image sha256,
caption scores by caption text sha256): one file per model id, so a row is never read for
another model.

SQLite because a lookup of thousands of keys is one indexed query per chunk, concurrent runs are
safe (WAL, busy timeout) and nothing is pickled: each cache stores plain bytes or JSON.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


class ModelKeyedFile:
    """`cache_dir/<folder>/<model key>.sqlite` holding `table` (created by `schema`, its first
    column the key) and a `meta` row naming the model."""

    def __init__(self, cache_dir: Path, folder: str, model_id: str, table: str, schema: str):
        key = hashlib.sha256(model_id.encode()).hexdigest()[:20]
        self.path = Path(cache_dir) / folder / f"{key}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self.table = table
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({schema})")
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('model_id', ?)", (model_id,))

    def rows(self, columns: str, key: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """The rows whose `key` column is one of `keys` (each asked once)."""
        wanted = list(dict.fromkeys(keys))
        out: list[tuple[Any, ...]] = []
        with self._lock:
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(part))
                out.extend(self._conn.execute(
                    f"SELECT {columns} FROM {self.table} WHERE {key} IN ({marks})",  # noqa: S608 - placeholders only
                    part,
                ))  # fmt: skip
        return out

    def put(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        marks = ",".join("?" * len(rows[0]))
        with self._lock, self._conn:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO {self.table} VALUES ({marks})",  # noqa: S608 - placeholders only
                rows,
            )

    def __len__(self) -> int:
        with self._lock:
            sql = f"SELECT count(*) FROM {self.table}"  # noqa: S608 - a constant table name
            return int(self._conn.execute(sql).fetchone()[0])

    def close(self) -> None:
        self._conn.close()
