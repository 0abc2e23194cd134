"""What every trained caption model shares (v1 linear, v2/v3 adapters): a raw score made a
probability by a Platt calibration, the defined answers for empty and unreadable captions, and
the keys under which a model file documents its validation figures. No torch.
"""

from __future__ import annotations

import math

from workers.caption.cues import find_cues
from workers.caption.features import normalise, sentiment_parts
from workers.domain import CaptionScores, Stance

#: Cue reported when a caption is mostly in a non-Latin script: the model is English-only.
UNSUPPORTED_SCRIPT_CUE = "non-latin script (not scored)"
EMPTY_CUE = "empty caption"
#: Share of letters outside Latin scripts above which a caption is not scored by the model.
NON_LATIN_LIMIT = 0.5

#: The precisions whose validation figures training stores in an adapter model file (one file
#: runs in either; see workers/caption/encoder/quantize.py). Linear models store float32 only.
VALIDATED_PRECISIONS = ("float32", "int8")


def validation_key(precision: str) -> str:
    """Metadata key of a model file's validation figures measured in `precision`."""
    return "validation" if precision == "float32" else f"validation_{precision}"


class CalibratedScorer:
    """What every trained caption model shares: a raw score, Platt-calibrated into a probability,
    and the common handling of empty and unreadable captions."""

    model_id: str
    prior: float
    platt_a: float
    platt_c: float

    metadata: dict

    def raw_score(self, text: str, vader: dict[str, float] | None) -> float:
        raise NotImplementedError

    def stance_of(self, text: str) -> Stance | None:
        """The caption's stance toward the police; None for models without a stance head."""
        return None

    def documented_validation(self) -> dict | None:
        """The validation figures stored with the model at training time, if any."""
        return self.metadata.get(validation_key("float32"))

    def probability(self, text: str, vader: dict[str, float] | None = None) -> float:
        """Calibrated probability that the caption is ironic/sarcastic."""
        t = self.platt_a * self.raw_score(text, vader) + self.platt_c
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, t))))

    def score_one(self, text: str) -> CaptionScores:
        """VADER sentiment and cues always; the model's probability (and stance, with a stance
        head) unless the caption is empty or mostly in a script the model cannot read, where the
        answer is the training prior and no stance (no evidence either way)."""
        text = text if isinstance(text, str) else ""
        norm = normalise(text)
        vs = sentiment_parts(text)
        cues = find_cues(text[:2000])
        stance = None
        if not norm:
            sarcasm, cues = self.prior, [*cues, EMPTY_CUE]
        elif _non_latin_share(norm) > NON_LATIN_LIMIT:
            # Defined behaviour for text the model cannot read: no evidence either way.
            sarcasm, cues = self.prior, [*cues, UNSUPPORTED_SCRIPT_CUE]
        else:
            sarcasm = self.probability(text, vs)
            stance = self.stance_of(text)  # the same (cached) forward pass as the probability
        return CaptionScores(
            sarcasm=float(sarcasm),
            sentiment=float(vs["compound"]),
            cues=tuple(cues),
            model=self.model_id,
            stance=stance,
        )

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        return [self.score_one(t) for t in texts]


def _non_latin_share(norm: str) -> float:
    letters = [c for c in norm if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if ord(c) > 0x24F) / len(letters)
