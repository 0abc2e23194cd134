"""Caption scoring: irony/sarcasm probability and sentiment for a post's text.

The seam is `CaptionScorer`: anything with `model_id` and `score_batch(texts)`.
`load_caption_scorer` picks the implementation from settings, so the pipeline never names a
concrete scorer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from workers.config import MODEL_CARDS_DIR
from workers.domain import CaptionScores

if TYPE_CHECKING:
    from workers.config import Settings


class CaptionScorer(Protocol):
    #: Stable id of the model and its version; part of the pipeline_version.
    model_id: str

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        """Scores for each text. Must not depend on the batch's order or size."""
        ...


#: The trained model shipped in the repository (see model_cards/caption-sarcasm.md).
SHIPPED_MODEL_FILE = MODEL_CARDS_DIR / "caption-sarcasm-v1.safetensors"


def load_caption_scorer(settings: Settings) -> CaptionScorer:
    """The trained sarcasm model: `settings.caption_model_file`, else the shipped one.

    Loaded once per process and file (a worker scores many batches with the same model). numpy
    only: this never imports torch. `caption_model_file` = "cues-v0" selects the v0 cue rules.
    """
    path = settings.caption_model_file
    if path is not None and str(path) == "cues-v0":
        from workers.caption.cues import CueCaptionScorer

        return CueCaptionScorer()
    return _load_model(Path(path or SHIPPED_MODEL_FILE).resolve())


@lru_cache(maxsize=4)
def _load_model(path: Path) -> CaptionScorer:
    from workers.caption.model import SarcasmModel

    return SarcasmModel.load(path)
