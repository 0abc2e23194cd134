"""Caption scores kept on disk, keyed by the caption model id and the caption text's sha256.

`backfire eval` runs again and again on the same labelled sample; with the image embeddings
cached, the caption model was what a second run still paid for (v3 reads a few captions a
second on two cores). With the scores on disk, a second run asks the caption model nothing.

One SQLite file per caption model (`cache_dir/caption-scores/<model key>.sqlite`, see
workers/diskcache.py), like the image-embedding cache; rows are the scores' JSON
(`CaptionScores.as_dict`), never pickle. The model id
carries the model's version and precision, so another model never reads these rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

from workers.caption import CaptionScorer
from workers.diskcache import ModelKeyedFile
from workers.domain import CaptionScores


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CaptionScoreCache:
    def __init__(self, cache_dir: Path, model_id: str) -> None:
        self._file = ModelKeyedFile(
            cache_dir, "caption-scores", model_id, "scores",
            "text_sha256 TEXT PRIMARY KEY, json TEXT NOT NULL",
        )  # fmt: skip
        self.path = self._file.path
        self.model_id = model_id

    def get_many(self, keys: Iterable[str]) -> dict[str, CaptionScores]:
        out: dict[str, CaptionScores] = {}
        for key, raw in self._file.rows("text_sha256, json", "text_sha256", keys):
            try:
                out[key] = CaptionScores.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError):  # a damaged row is a miss
                continue
        return out

    def put_many(self, rows: dict[str, CaptionScores]) -> None:
        self._file.put([(k, json.dumps(v.as_dict(), sort_keys=True)) for k, v in rows.items()])

    def __len__(self) -> int:
        return len(self._file)

    def close(self) -> None:
        self._file.close()


class CachedCaptionScorer:
    """A `CaptionScorer` that asks `cache` first and the model only for captions it has not
    seen (each distinct one once); what the model says goes into the cache."""

    def __init__(self, scorer: CaptionScorer, cache: CaptionScoreCache) -> None:
        if cache.model_id != scorer.model_id:
            raise ValueError(f"cache of {cache.model_id} used for {scorer.model_id}")
        self.scorer = scorer
        self.cache = cache
        self.model_id = scorer.model_id
        #: Captions found in the cache and sent to the model (each distinct once per batch),
        #: and the model's seconds.
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
