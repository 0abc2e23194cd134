"""Image embeddings kept on disk, keyed by the model id and the image's sha256.

Evaluating, calibrating and fitting few-shot scenes all start from the same image embeddings; a
user runs them again and again on the same labelled sample. With the embeddings on disk, every
run after the first costs no model time: the image is read and hashed, never decoded or encoded.

One SQLite file per model (`cache_dir/image-embeddings/<model key>.sqlite`): a lookup of 2,000
images is one indexed query, concurrent runs are safe (WAL, busy timeout), and nothing is
pickled (rows are raw float32 bytes with their width).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.diskcache import ModelKeyedFile
from workers.errors import MediaError
from workers.scenes.encoder import ImageTextEncoder


class EmbeddingCache:
    def __init__(self, cache_dir: Path, model_id: str) -> None:
        self._file = ModelKeyedFile(
            cache_dir, "image-embeddings", model_id, "embeddings",
            "sha256 TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL",
        )  # fmt: skip
        self.path = self._file.path
        self.model_id = model_id

    def get_many(self, shas: Iterable[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for sha, dim, blob in self._file.rows("sha256, dim, vec", "sha256", shas):
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape[0] == dim:  # a damaged row is a miss
                out[sha] = vec
        return out

    def put_many(self, rows: dict[str, np.ndarray]) -> None:
        self._file.put([
            (sha, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for sha, v in rows.items()
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self._file)

    def close(self) -> None:
        self._file.close()


@dataclass
class EmbedStats:
    images: int = 0
    from_cache: int = 0
    encoded: int = 0
    failed: int = 0
    model_s: float = 0.0
    decode_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class Embedder:
    """Embeddings of images by sha256: from the disk cache, else decoded and encoded in
    batches (and then cached). `prepare` turns bytes into the encoder's input."""

    def __init__(
        self,
        encoder: ImageTextEncoder,
        prepare: Callable[[bytes], Any],
        batch_size: int,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.encoder = encoder
        self.prepare = prepare
        self.batch_size = batch_size
        self.cache = cache
        self.stats = EmbedStats()

    def embed(
        self, items: Sequence[tuple[str, Callable[[], bytes]]], threads: int = 2
    ) -> dict[str, np.ndarray | MediaError]:
        """(sha256, how to get the bytes) → embedding, or the error that reading or decoding
        the image raised. Bytes are read only for images the cache does not hold."""
        from concurrent.futures import ThreadPoolExecutor

        shas = list(dict.fromkeys(sha for sha, _ in items))
        known: dict[str, np.ndarray | MediaError] = {}
        if self.cache is not None:
            known.update(self.cache.get_many(shas))
        self.stats.images += len(shas)
        self.stats.from_cache += len(known)
        readers = {sha: read for sha, read in items}
        missing = [s for s in shas if s not in known]

        def load(sha: str) -> Any:
            try:
                return self.prepare(readers[sha]())
            except MediaError as e:
                return e

        window = max(self.batch_size * 4, 16)
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="embed-load") as pool:
            for i in range(0, len(missing), window):
                part = missing[i : i + window]
                started = time.perf_counter()
                prepared = list(pool.map(load, part))
                self.stats.decode_s += time.perf_counter() - started
                good = [(s, p) for s, p in zip(part, prepared, strict=True)
                        if not isinstance(p, MediaError)]  # fmt: skip
                for s, p in zip(part, prepared, strict=True):
                    if isinstance(p, MediaError):
                        known[s] = p
                        self.stats.failed += 1
                        self.stats.errors[p.code] = self.stats.errors.get(p.code, 0) + 1
                fresh: dict[str, np.ndarray] = {}
                for j in range(0, len(good), self.batch_size):
                    chunk = good[j : j + self.batch_size]
                    started = time.perf_counter()
                    emb = self.encoder.encode_images([p for _, p in chunk])
                    self.stats.model_s += time.perf_counter() - started
                    for (s, _), v in zip(chunk, emb, strict=True):
                        fresh[s] = np.asarray(v, dtype=np.float32)
                self.stats.encoded += len(fresh)
                if self.cache is not None and fresh:
                    self.cache.put_many(fresh)
                known.update(fresh)
        return known
