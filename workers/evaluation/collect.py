"""Labelled posts → image embeddings (through the pipeline's decoder and encoder, with the disk
cache) and the margins and probabilities of the scene scorer.

Posts are taken a window at a time, so a cold run over thousands of photos holds only one
window of image bytes and decoded pictures. A post whose image cannot be read or decoded is
counted as failed with its reason (as `backfire score` would write it), never a crash.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from workers.errors import MediaError
from workers.evaluation.labels import LabelledPost, LabelledSet
from workers.scenes.embeddings import Embedder
from workers.scenes.scorer import SceneScorer

#: Posts whose bytes are read (and, on a cache miss, decoded) at a time.
WINDOW = 256


@dataclass
class Collected:
    #: The posts whose image has an embedding, in input order, with their image's sha256.
    posts: list[LabelledPost]
    shas: list[str]
    embeddings: np.ndarray
    #: Posts that could not be scored: (post, error record).
    failed: list[tuple[LabelledPost, dict[str, str]]] = field(default_factory=list)
    read_s: float = 0.0

    def margins(self, scorer: SceneScorer) -> np.ndarray:
        return scorer.margins(self.embeddings)


def collect(
    labelled: LabelledSet,
    embedder: Embedder,
    read: Callable[[LabelledPost], bytes],
    threads: int = 2,
) -> Collected:
    """Embeddings of every labelled post's image. `read` gets a post's bytes (a file or URL
    through the fetch policy, or the media store); raises `MediaError` when it cannot."""
    posts: list[LabelledPost] = []
    shas: list[str] = []
    rows: list[np.ndarray] = []
    failed: list[tuple[LabelledPost, dict[str, str]]] = []
    read_s = 0.0

    def fetch(lp: LabelledPost) -> tuple[str, bytes | None] | MediaError:
        if lp.media_sha256:  # from the store: its bytes are read only on a cache miss
            return lp.media_sha256, None
        try:
            data = read(lp)
        except MediaError as e:
            return e
        return hashlib.sha256(data).hexdigest(), data

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="eval-read") as pool:
        for i in range(0, len(labelled.posts), WINDOW):
            part = labelled.posts[i : i + WINDOW]
            started = time.perf_counter()
            got = list(pool.map(fetch, part))
            read_s += time.perf_counter() - started
            items: list[tuple[str, Callable[[], bytes]]] = []
            for lp, g in zip(part, got, strict=True):
                if isinstance(g, MediaError):
                    continue
                sha, data = g
                items.append((sha, _const(data) if data is not None else _reader(read, lp)))
            known = embedder.embed(items, threads=threads)
            for lp, g in zip(part, got, strict=True):
                if isinstance(g, MediaError):
                    failed.append((lp, g.as_record()))
                    continue
                v = known.get(g[0])
                if isinstance(v, np.ndarray):
                    posts.append(lp)
                    shas.append(g[0])
                    rows.append(v)
                else:
                    err = v if isinstance(v, MediaError) else MediaError("not embedded")
                    failed.append((lp, err.as_record()))
    emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return Collected(posts, shas, emb, failed, read_s)


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _reader(read: Callable[[LabelledPost], bytes], lp: LabelledPost) -> Callable[[], bytes]:
    return lambda: read(lp)


def scene_labels(posts: list[LabelledPost], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, mask), both (n_posts, n_scenes): mask is True where the post's scenes were
    labelled (then every scene it does not list is labelled absent)."""
    y = np.zeros((len(posts), len(names)), dtype=np.int8)
    mask = np.zeros((len(posts), len(names)), dtype=bool)
    for i, lp in enumerate(posts):
        present = lp.labels.scenes
        if present is None:
            continue
        mask[i, :] = True
        for j, n in enumerate(names):
            y[i, j] = n in present
    return y, mask
