"""Caption scores kept on disk, keyed by the caption model id and the caption text's sha256.

`backfire eval` runs again and again on the same labelled sample; with the image embeddings
cached, the caption model was what a second run still paid for (v3 reads a few captions a
second on two cores). With the scores on disk, a second run asks the caption model nothing.

One SQLite file per caption model (`cache_dir/caption-scores/<model key>.sqlite`), like the
image-embedding cache: one indexed query per batch, safe for concurrent runs (WAL, busy
timeout), rows are the scores' JSON (`CaptionScores.as_dict`), never pickle. The model id
carries the model's version and precision, so another model never reads these rows.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from workers.caption import CaptionScorer
from workers.domain import CaptionScores

_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CaptionScoreCache:
    def __init__(self, cache_dir: Path, model_id: str) -> None:
        key = hashlib.sha256(model_id.encode()).hexdigest()[:20]
        self.path = Path(cache_dir) / "caption-scores" / f"{key}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS scores "
                "(text_sha256 TEXT PRIMARY KEY, json TEXT NOT NULL)"
            )
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('model_id', ?)", (model_id,))

    def get_many(self, keys: Iterable[str]) -> dict[str, CaptionScores]:
        wanted = list(dict.fromkeys(keys))
        out: dict[str, CaptionScores] = {}
        with self._lock:
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(part))
                for key, raw in self._conn.execute(
                    f"SELECT text_sha256, json FROM scores WHERE text_sha256 IN ({marks})",  # noqa: S608 - placeholders only
                    part,
                ):
                    try:
                        out[key] = CaptionScores.from_dict(json.loads(raw))
                    except (ValueError, KeyError, TypeError):  # a damaged row is a miss
                        continue
        return out

    def put_many(self, rows: dict[str, CaptionScores]) -> None:
        data = [(k, json.dumps(v.as_dict(), sort_keys=True)) for k, v in rows.items()]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", data)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class CachedCaptionScorer:
    """A `CaptionScorer` that asks `cache` first and the model only for captions it has not
    seen (each distinct one once); what the model says goes into the cache."""

    def __init__(self, scorer: CaptionScorer, cache: CaptionScoreCache) -> None:
        if cache.model_id != scorer.model_id:
            raise ValueError(f"cache of {cache.model_id} used for {scorer.model_id}")
        self.scorer = scorer
        self.cache = cache
        self.model_id = scorer.model_id
        #: Distinct captions found in the cache, and sent to the model (with its seconds).
        self.from_cache = 0
        self.scored = 0
        self.model_s = 0.0

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        keys = [text_key(t) for t in texts]
        known = self.cache.get_many(keys)
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
        self.from_cache += len(known)
        if missing:
            started = time.perf_counter()
            scores = self.scorer.score_batch(list(missing.values()))
            self.model_s += time.perf_counter() - started
            fresh = dict(zip(missing, scores, strict=True))
            self.cache.put_many(fresh)
            known.update(fresh)
            self.scored += len(missing)
        return [known[k] for k in keys]
