"""Batch runner: reader → loader threads (read/fetch, hash, decode) → model in batches → writer.

Loader threads work one window ahead of the model so the model rarely waits for I/O or decoding.
Identical images (same sha256) are decoded and scored once per run. A bad post becomes an error
row; nothing a single post does can stop the run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.domain import Post
from workers.errors import MediaError
from workers.media.source import read_media
from workers.scoring.pipeline import Item, MemorySceneCache, Pipeline, Prepared, sha256_hex
from workers.sources import ReadProblem, Record

if TYPE_CHECKING:
    from workers.media.fetcher import MediaFetcher
    from workers.net.guard import FetchPolicy


@dataclass
class RunStats:
    posts: int = 0
    ok: int = 0
    failed: int = 0
    skipped_resume: int = 0
    read_problems: int = 0
    decoded: int = 0
    images_scored: int = 0
    reused: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts, "ok": self.ok, "failed": self.failed,
            "skipped_resume": self.skipped_resume, "read_problems": self.read_problems,
            "images_decoded": self.decoded, "images_scored": self.images_scored,
            "posts_reusing_an_image": self.reused, "verdicts": dict(self.verdicts),
            "errors": dict(self.errors), "seconds": round(self.elapsed, 3),
        }  # fmt: skip


@dataclass
class _Loaded:
    post: Post
    sha: str | None = None
    error: MediaError | None = None


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        fetch_policy: FetchPolicy,
        loader_threads: int = 2,
        on_progress: Callable[[RunStats], None] | None = None,
        on_problem: Callable[[ReadProblem], None] | None = None,
        fetcher: MediaFetcher | None = None,
        fetch_ahead: int = 128,
    ) -> None:
        self.pipeline = pipeline
        self.fetch_policy = fetch_policy
        self.loader_threads = loader_threads
        # With a fetcher, downloads run on its own (larger) pool this many posts ahead of the
        # model, while decoding stays on the loader threads one window ahead: bytes in flight are
        # bounded by fetch_ahead, decoded tensors by two windows.
        self.fetcher = fetcher
        self.on_progress = on_progress or (lambda s: None)
        self.on_problem = on_problem or (lambda p: None)
        self.window = max(8, pipeline.settings.batch_size * 4)
        self.fetch_windows = max(1, -(-fetch_ahead // self.window))
        self._lock = threading.Lock()
        # sha → decode in flight or done (dropped once scored); what is known once scored.
        self._decoding: dict[str, Future[Prepared]] = {}
        self.cache = MemorySceneCache()
        self.stats = RunStats()

    # --- loader threads ------------------------------------------------------------------------
    def _load(self, post: Post, fetched: Future[bytes] | None = None) -> _Loaded:
        try:
            if fetched is not None:
                data = fetched.result()
            else:
                data = read_media(post.image, self.fetch_policy)
        except MediaError as e:
            return _Loaded(post, error=e)
        sha = sha256_hex(data)
        with self._lock:
            if sha in self._decoding or self.cache.get(sha) is not None:
                return _Loaded(post, sha)
            fut: Future[Prepared] = Future()
            self._decoding[sha] = fut
            self.stats.decoded += 1
        try:
            fut.set_result(self.pipeline.prepare(data))
        except MediaError as e:
            fut.set_exception(e)
        except Exception as e:  # noqa: BLE001 - a decoder bug must fail the post, not the run
            from workers.errors import CorruptImage

            fut.set_exception(CorruptImage(f"The image could not be decoded ({e!r})."))
        return _Loaded(post, sha)

    # --- main loop -----------------------------------------------------------------------------
    def run(
        self,
        records: Iterable[Record],
        write: Callable[[dict[str, Any]], None],
        skip_ids: set[str] | None = None,
    ) -> RunStats:
        skip = skip_ids or set()
        seen: set[str] = set()
        with ThreadPoolExecutor(self.loader_threads, thread_name_prefix="loader") as pool:
            pending: deque[list[Future[_Loaded]]] = deque()
            fetching: deque[list[tuple[Post, Future[bytes]]]] = deque()
            windows = self._windows(records, skip, seen)
            for window in windows:
                if self.fetcher is None:
                    pending.append([pool.submit(self._load, p) for p in window])
                else:
                    fetching.append([(p, self.fetcher.submit(p.image)) for p in window])
                    if len(fetching) > self.fetch_windows:
                        pending.append([pool.submit(self._load, *pf) for pf in fetching.popleft()])
                if len(pending) > 1:  # keep one window loading while the model works
                    self._score_window(pending.popleft(), write)
            while fetching:
                pending.append([pool.submit(self._load, *pf) for pf in fetching.popleft()])
                if len(pending) > 1:
                    self._score_window(pending.popleft(), write)
            while pending:
                self._score_window(pending.popleft(), write)
        return self.stats

    def _windows(
        self, records: Iterable[Record], skip: set[str], seen: set[str]
    ) -> Iterator[list[Post]]:
        window: list[Post] = []
        for rec in records:
            if isinstance(rec, ReadProblem):
                self.stats.read_problems += 1
                self.on_problem(rec)
                continue
            if rec.post_id in skip:
                self.stats.skipped_resume += 1
                continue
            if rec.post_id in seen:
                self.stats.read_problems += 1
                self.on_problem(ReadProblem(rec.post_id, "duplicate post id; kept the first"))
                continue
            seen.add(rec.post_id)
            window.append(rec)
            if len(window) >= self.window:
                yield window
                window = []
        if window:
            yield window

    def _score_window(self, futures: list[Future[_Loaded]], write: Callable[[dict], None]) -> None:
        loaded = [f.result() for f in futures]
        items = []
        for ld in loaded:
            with self._lock:
                fut = self._decoding.get(ld.sha) if ld.sha is not None else None
            items.append(Item(ld.post, ld.sha, fut.result if fut is not None else None, ld.error))
        scored = self.pipeline.score_batch(items, self.cache)
        with self._lock:
            for it in items:  # free the decoded tensors of every image now known
                if it.sha is not None and self.cache.get(it.sha) is not None:
                    self._decoding.pop(it.sha, None)
        self.stats.images_scored += len(scored.encoded)
        fresh = set(scored.encoded)
        for it, r in zip(items, scored.results, strict=True):
            if r.ok:
                self.stats.ok += 1
                self.stats.verdicts[r.verdict.label] += 1  # type: ignore[union-attr]
                if it.sha not in fresh:
                    self.stats.reused += 1
                fresh.discard(it.sha or "")
            else:
                self.stats.failed += 1
                self.stats.errors[(r.error or {}).get("type", "")] += 1
            self.stats.posts += 1
            write(r.row().as_record())
        self.on_progress(self.stats)
