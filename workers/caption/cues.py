"""Caption scorer v0: VADER sentiment plus explicit sarcasm cues.

Kept as features for the trained model and as a fallback. Cues are things people write when they
mean the opposite: `#sarcasm`, a trailing `/s`, scare quotes, "thanks for", eye-roll emoji...
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from workers.domain import CaptionScores

# (name, pattern, weight). Weights are log-odds added to a prior; chosen by hand for v0.
_CUES: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("#sarcasm", re.compile(r"#(sarcasm|sarcastic|not|irony|ironic|notreally)\b", re.I), 3.0),
    ("/s", re.compile(r"(^|\s)/s\s*$", re.I), 3.0),
    ("eye-roll emoji", re.compile("[\U0001F644\U0001F612\U0001F643]"), 2.0),
    ("scare quotes", re.compile(r"[\"“”‘’'][A-Za-z][A-Za-z ]{1,25}[\"“”‘’']"), 1.2),
    ("thanks for", re.compile(r"\b(thanks|thank you) (for|so much)\b", re.I), 1.0),
    (
        "mock praise",
        re.compile(
            r"\b(great job|well done|so proud|love (it|how|that|when)|nothing says|"
            r"just what i needed|how nice|what a (great|lovely)|best (day|police)|free delivery|"
            r"yeah right|oh great|totally|clearly|obviously)\b",
            re.I,
        ),
        1.2,
    ),
    ("laughing emoji", re.compile("[\U0001F602\U0001F923]"), 0.8),
    (
        "exaggeration",
        re.compile(r"(!{2,}|\b(so|sooo+|very|really) (much|happy|safe|proud)\b)", re.I),
        0.5,
    ),
)
_PRIOR = -2.0  # a caption with no cue is probably sincere


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score in [-1, 1]; 0 for empty text."""
    if not text.strip():
        return 0.0
    return float(_vader().polarity_scores(text)["compound"])


def find_cues(text: str) -> list[str]:
    return [name for name, pattern, _ in _CUES if pattern.search(text)]


class CueCaptionScorer:
    model_id = "cues-v0"

    def score_one(self, text: str) -> CaptionScores:
        text = text or ""
        cues = find_cues(text)
        weights = {name: w for name, _, w in _CUES}
        logit = _PRIOR + sum(weights[c] for c in cues)
        sarcasm = 1.0 / (1.0 + math.exp(-logit))
        return CaptionScores(
            sarcasm=sarcasm, sentiment=sentiment(text), cues=tuple(cues), model=self.model_id
        )

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        return [self.score_one(t) for t in texts]
