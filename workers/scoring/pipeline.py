"""The one pipeline: bytes → decoded picture → scene probabilities; caption → caption scores;
both → verdict. The CLI runner, the Celery task and the benchmarks all call this.

`Pipeline.from_settings` loads the real CLIP model (heavy, once per process); tests pass a fake
encoder at the seam. `prepare` is thread-safe (loader threads decode in parallel);
`score_prepared` runs the model on a batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.caption import CaptionScorer, load_caption_scorer
from workers.domain import Post, PostResult
from workers.errors import MediaError
from workers.media.decode import DecodeLimits, decode_image
from workers.scenes.prompts import PromptSet, load_prompt_set
from workers.scoring.verdict import Policy, VerdictPolicy, load_policy

if TYPE_CHECKING:
    from workers.config import Settings
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
        self.limits = DecodeLimits(
            max_pixels=settings.max_image_pixels, target_size=encoder.image_size
        )

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

    # --- images ----------------------------------------------------------------------------
    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one image. Raises `MediaError` for bad input. Thread-safe."""
        image = decode_image(data, self.limits)
        return Prepared(sha256_hex(data), self.encoder.prepare(image))

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
                    verdict=self.policy.decide(sc, cap),
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

    def score_items(self, items: Sequence[tuple[Post, bytes]]) -> list[PostResult]:
        """Score posts whose image bytes are in hand (the Celery task's entry point).
        Identical images are decoded and encoded once; a bad image fails only its own post."""
        results: list[PostResult | None] = [None] * len(items)
        unique: dict[str, Prepared] = {}
        ok_idx: list[int] = []
        shas: list[str] = []
        for i, (post, data) in enumerate(items):
            sha = sha256_hex(data)
            try:
                if sha not in unique:
                    unique[sha] = self.prepare(data)
            except MediaError as e:
                results[i] = self.error_result(post, e, sha)
                continue
            ok_idx.append(i)
            shas.append(sha)
        order = list(unique)
        by_sha = dict(zip(order, self.scene_probabilities([unique[s] for s in order]), strict=True))
        scored = self.results(
            [items[i][0] for i in ok_idx], [by_sha[s] for s in shas], shas
        )
        for i, r in zip(ok_idx, scored, strict=True):
            results[i] = r
        return [r for r in results if r is not None]
