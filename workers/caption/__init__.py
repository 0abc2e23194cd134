"""Caption scoring: irony/sarcasm probability and sentiment for a post's text.

The seam is `CaptionScorer`: anything with `model_id` and `score_batch(texts)`. `load_caption_scorer`
picks the implementation from settings, so the pipeline never names a concrete scorer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from workers.domain import CaptionScores

if TYPE_CHECKING:
    from workers.config import Settings


class CaptionScorer(Protocol):
    #: Stable id of the model and its version; part of the pipeline_version.
    model_id: str

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        """Scores for each text. Must not depend on the batch's order or size."""
        ...


def load_caption_scorer(settings: Settings) -> CaptionScorer:
    from workers.caption.cues import CueCaptionScorer

    return CueCaptionScorer()
