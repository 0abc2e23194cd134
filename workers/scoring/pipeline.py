"""The one pipeline: bytes → decoded picture → scene probabilities; caption → caption scores;
both → verdict. The CLI runner, the Celery task and the benchmarks all call this.

`Pipeline.from_settings` loads the real CLIP model (heavy, once per process); tests pass a fake
encoder at the seam. `prepare` is thread-safe (loader threads decode in parallel).
`score_batch` is the one place a batch is scored with dedup: each distinct image (sha256) is
decoded and encoded once, and an image a `SceneCache` already knows is not encoded at all (the
runner's cache lives for a run, the worker's in the store); `score_items` is the same for posts
whose bytes are in hand.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from workers.caption import CaptionScorer, load_caption_scorer
from workers.domain import Post, PostResult
from workers.errors import MediaError
from workers.media.decode import DecodeLimits, decode_image
from workers.scenes.prompts import PromptSet, load_prompt_set
from workers.scoring.verdict import Policy, VerdictPolicy, load_policy

Scenes = dict[str, float]

if TYPE_CHECKING:
    from workers.config import Settings
    from workers.scenes.embeddings import Embedder, EmbeddingCache
    from workers.scenes.encoder import ImageTextEncoder


def pipeline_version(model_id: str, prompts: PromptSet, caption_model: str, policy: Policy) -> str:
    """Short stable id of everything that shapes a verdict. Stored with every result, so a change
    of model, prompts, caption model or policy is never silently mixed with old verdicts."""
    parts = {
        "model": model_id,
        "prompts": prompts.hash,
        "caption": caption_model,
        "policy": policy.hash,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return f"bf1-{digest}"


@dataclass
class Prepared:
    """A decoded picture ready for the encoder, keyed by the sha256 of its bytes."""

    sha256: str
    tensor: Any


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SceneCache(Protocol):
    """What is known of an image by its sha256: its scene probabilities, or the error that
    decoding it raised. A cache may forget errors (the store keeps only scenes)."""

    def get(self, sha: str) -> Scenes | MediaError | None: ...
    def put(self, sha: str, known: Scenes | MediaError) -> None: ...


class MemorySceneCache:
    """A run's cache (thread-safe: loader threads ask it while the model thread fills it)."""

    def __init__(self) -> None:
        self._known: dict[str, Scenes | MediaError] = {}
        self._lock = threading.Lock()

    def get(self, sha: str) -> Scenes | MediaError | None:
        with self._lock:
            return self._known.get(sha)

    def put(self, sha: str, known: Scenes | MediaError) -> None:
        with self._lock:
            self._known[sha] = known


@dataclass
class Item:
    """One post of a batch: its image's sha256 and how to get the decoded picture (a decode,
    or a decode already running on a loader thread), or why its bytes could not be read."""

    post: Post
    sha: str | None = None
    prepared: Callable[[], Prepared] | None = None
    error: MediaError | None = None


@dataclass
class Scored:
    results: list[PostResult]
    #: The images this batch encoded (the others were known to the cache or failed).
    encoded: list[str]


class Pipeline:
    def __init__(
        self,
        encoder: ImageTextEncoder,
        prompts: PromptSet,
        caption_scorer: CaptionScorer,
        policy: Policy,
        settings: Settings,
    ) -> None:
        from workers.scenes.scorer import SceneScorer

        self.settings = settings
        self.encoder = encoder
        self.scenes = SceneScorer(encoder, prompts, cache_dir=settings.cache_dir)
        self.caption_scorer = caption_scorer
        self.policy = VerdictPolicy(policy, prompts)
        self.version = pipeline_version(encoder.model_id, prompts, caption_scorer.model_id, policy)
        self.limits = DecodeLimits.from_settings(settings, target_size=encoder.image_size)
        #: What `score_items` remembers across calls (a worker sets the store's); None: each
        #: call dedups within itself only.
        self.scene_cache: SceneCache | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, encoder: ImageTextEncoder | None = None, processes: int = 1
    ) -> Pipeline:
        if encoder is None:
            from workers.scenes.encoder import ClipEncoder

            encoder = ClipEncoder(settings, processes=processes)
        return cls(
            encoder,
            load_prompt_set(settings.scenes_file),
            load_caption_scorer(settings),
            load_policy(settings.policy_file),
            settings,
        )

    def with_encoder(self, encoder: ImageTextEncoder, settings: Settings) -> Pipeline:
        """The same prompts, caption model and policy over another image encoder (`backfire
        eval --compare-precision` scores one labelled set through two image towers)."""
        return Pipeline(
            encoder, self.scenes.prompts, self.caption_scorer, self.policy.policy, settings
        )

    # --- images ----------------------------------------------------------------------------
    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one image. Raises `MediaError` for bad input. Thread-safe."""
        image = decode_image(data, self.limits)
        return Prepared(sha256_hex(data), self.encoder.prepare(image))

    def embedder(self, cache: EmbeddingCache | None = None) -> Embedder:
        """Image embeddings through this pipeline's decoder and encoder (evaluation and
        calibration start from embeddings; `cache` keeps them on disk across runs)."""
        from workers.scenes.embeddings import Embedder

        return Embedder(
            self.encoder, lambda data: self.prepare(data).tensor, self.settings.batch_size, cache
        )

    def scene_probabilities(self, prepared: Sequence[Prepared]) -> list[dict[str, float]]:
        """Scene probabilities for a batch, encoded in chunks of `settings.batch_size`."""
        out: list[dict[str, float]] = []
        bs = self.settings.batch_size
        for i in range(0, len(prepared), bs):
            chunk = [p.tensor for p in prepared[i : i + bs]]
            out.extend(self.scenes.score(self.encoder.encode_images(chunk)))
        return out

    # --- posts -----------------------------------------------------------------------------
    def results(
        self, posts: Sequence[Post], scenes: Sequence[dict[str, float]], shas: Sequence[str]
    ) -> list[PostResult]:
        """Verdicts for posts whose scene probabilities are known (captions scored here)."""
        captions = self.caption_scorer.score_batch([p.caption or "" for p in posts])
        out = []
        for post, sc, cap, sha in zip(posts, scenes, captions, shas, strict=True):
            out.append(
                PostResult(
                    post=post,
                    pipeline_version=self.version,
                    verdict=self.policy.judge(sc, cap),
                    scenes=sc,
                    caption=cap,
                    media_sha256=sha,
                )
            )
        return out

    def error_result(self, post: Post, error: MediaError, sha: str | None = None) -> PostResult:
        return PostResult(
            post=post, pipeline_version=self.version, media_sha256=sha, error=error.as_record()
        )

    def score_batch(self, items: Sequence[Item], cache: SceneCache) -> Scored:
        """Results for `items`, in order. Each distinct image unknown to `cache` is decoded and
        encoded once (a decode error fails every post of that image, never the batch); what is
        learnt goes into `cache`."""
        to_encode: dict[str, Prepared] = {}
        # Kept here too: a cache may forget errors, and this batch must not decode twice.
        failed: dict[str, MediaError] = {}
        for it in items:
            if it.error is not None or it.sha is None or it.sha in to_encode or it.sha in failed:
                continue
            if cache.get(it.sha) is None and it.prepared is not None:
                try:
                    to_encode[it.sha] = it.prepared()
                except MediaError as e:
                    failed[it.sha] = e
                    cache.put(it.sha, e)
        shas = list(to_encode)
        for sha, probs in zip(
            shas, self.scene_probabilities([to_encode[s] for s in shas]), strict=True
        ):
            cache.put(sha, probs)
        known = {
            it.sha: failed.get(it.sha) or cache.get(it.sha)
            for it in items
            if it.error is None and it.sha
        }
        good = [it for it in items if isinstance(known.get(it.sha), dict)]  # type: ignore[arg-type]
        scored = self.results(
            [it.post for it in good],
            [known[it.sha] for it in good],  # type: ignore[misc,index]
            [it.sha for it in good],  # type: ignore[misc]
        )
        by_item = {id(it): r for it, r in zip(good, scored, strict=True)}
        out = []
        for it in items:
            r = by_item.get(id(it))
            if r is None:
                err = it.error or known.get(it.sha or "")
                assert isinstance(err, MediaError)
                r = self.error_result(it.post, err, it.sha)
            out.append(r)
        return Scored(out, shas)

    def _preparer(self, data: bytes) -> Callable[[], Prepared]:
        return lambda: self.prepare(data)

    def score_items(
        self, items: Sequence[tuple[Post, bytes]], cache: SceneCache | None = None
    ) -> list[PostResult]:
        """Score posts whose image bytes are in hand (the Celery task's entry point), with
        `cache`, else the pipeline's own `scene_cache`."""
        batch = [Item(p, sha256_hex(data), prepared=self._preparer(data)) for p, data in items]
        return self.score_batch(batch, cache or self.scene_cache or MemorySceneCache()).results
