"""Caption features shared by training and inference (one code path, so they cannot drift).

Two kinds:
- sparse n-gram terms (`terms`): tweet-aware word 1-2-grams, hashtag words, emoji and character
  2-5-grams of a normalised caption, looked up in the model's vocabulary;
- dense affective features (`dense_features`): VADER sentiment, the v0 cues, punctuation/emoji
  counts and a sentiment-contrast score (a positive word next to a negative one is the classic
  shape of sarcasm: "love being ignored").

Normalisation collapses runs of whitespace on purpose. In SemEval-2018 Task 3 the organisers
deleted the collection hashtags (#not, #sarcasm, #irony), which left a double space in ~90 % of
the ironic tweets; a model that sees whitespace learns that artefact (one "has a double space"
feature alone scores ~0.86 ironic-F1 on validation) and it is worthless on real captions.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

import numpy as np

from workers.caption.cues import find_cues

#: Longer captions are cut: the scorer's cost stays bounded and a caption's tone is in its start.
MAX_CHARS = 1000
CHAR_NGRAMS = (2, 5)

_RT = re.compile(r"^\s*rt\s+@\w+\s*:?\s*", re.I)
_URL = re.compile(r"(https?://|www\.)\S*|\bhttp\S*", re.I)
_MENTION = re.compile(r"@\w+")
_SPACE = re.compile(r"\s+")
_ELONGATED = re.compile(r"(\w)\1{2,}")
# Tokens: hashtags, the placeholders, words (with inner apostrophes), punctuation runs, and any
# other single non-space character (emoji, symbols, CJK characters...).
_TOKEN = re.compile(
    r"#\w+|<url>|@user|\w+(?:['’]\w+)*|[!?]+|\.{2,}|…|[\"“”]|\S", re.UNICODE
)


def normalise(text: str) -> str:
    """Caption as the model reads it: no RT prefix, placeholders for URLs and mentions, one space
    between tokens, NFKC-folded, lower-cased, at most MAX_CHARS characters."""
    text = unicodedata.normalize("NFKC", (text or "")[: MAX_CHARS * 2])
    text = _RT.sub("", text)
    text = _URL.sub(" <url> ", text)
    text = _MENTION.sub("@user", text)
    text = _SPACE.sub(" ", text).strip().lower()
    return text[:MAX_CHARS]


def tokens(norm: str) -> list[str]:
    """Word-level tokens of a normalised caption; "sooo" and "so" share the form "soo"."""
    return [_ELONGATED.sub(r"\1\1", t) for t in _TOKEN.findall(norm)]


def terms(text: str) -> list[str]:
    """All sparse terms of one caption (with repeats; the vectoriser counts them)."""
    norm = normalise(text)
    toks = tokens(norm)
    out = ["w:" + t for t in toks]
    out += ["b:" + a + " " + b for a, b in zip(toks, toks[1:], strict=False)]
    # A hashtag's body also counts as a word: "#blessed" and "blessed" mean the same.
    out += ["w:" + t[1:] for t in toks if t.startswith("#") and len(t) > 1]
    padded = " " + _SPACE.sub(" ", _ELONGATED.sub(r"\1\1", norm)) + " "
    lo, hi = CHAR_NGRAMS
    n_chars = len(padded)
    for n in range(lo, hi + 1):
        out += ["c:" + padded[i : i + n] for i in range(n_chars - n + 1)]
    return out


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


_EMOJI_RANGES = (
    (0x1F300, 0x1FAFF),
    (0x2600, 0x27BF),
    (0x1F000, 0x1F2FF),
)
_LAUGH = set("\U0001F602\U0001F923")
_EYEROLL = set("\U0001F644\U0001F612\U0001F643\U0001F611\U0001F610")
_CUE_NAMES = (
    "#sarcasm",
    "/s",
    "eye-roll emoji",
    "scare quotes",
    "thanks for",
    "mock praise",
    "laughing emoji",
    "exaggeration",
)

#: Names of the dense features, in order (stored in the model file and checked on load).
DENSE_NAMES: tuple[str, ...] = (
    "vader_compound",
    "vader_pos",
    "vader_neg",
    "vader_neu",
    "max_pos_word",
    "max_neg_word",
    "pos_neg_contrast",
    "positive_and_no_negative",
    "n_exclaim",
    "n_question",
    "n_emoji",
    "laugh_emoji",
    "eyeroll_emoji",
    "n_hashtags",
    "has_url",
    "n_mentions",
    "allcaps_ratio",
    "elongated",
    "log_len",
    "is_empty",
    "non_latin_ratio",
) + tuple("cue:" + c for c in _CUE_NAMES)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES)


def sentiment_parts(text: str) -> dict[str, float]:
    """VADER scores of the (whitespace-collapsed, length-capped) caption; zeros when empty."""
    text = _SPACE.sub(" ", (text or "")[:MAX_CHARS]).strip()
    if not text:
        return {"compound": 0.0, "pos": 0.0, "neg": 0.0, "neu": 1.0}
    return {k: float(v) for k, v in _vader().polarity_scores(text).items()}


def dense_features(text: str, vader: dict[str, float] | None = None) -> np.ndarray:
    """Affective and surface features of one caption, in DENSE_NAMES order (float64)."""
    raw = (text or "")[:MAX_CHARS]
    norm = normalise(raw)
    vs = vader if vader is not None else sentiment_parts(raw)
    lexicon = _vader().lexicon
    valences = [lexicon[t] for t in tokens(norm) if t in lexicon]
    max_pos = max((v for v in valences if v > 0), default=0.0) / 4.0
    max_neg = -min((v for v in valences if v < 0), default=0.0) / 4.0
    letters = [c for c in raw if c.isalpha()]
    upper_words = [w for w in raw.split() if len(w) > 1 and w.isupper() and w.isalpha()]
    n_words = max(1, len(raw.split()))
    non_latin = sum(1 for c in letters if ord(c) > 0x24F)
    cues = set(find_cues(raw))
    values = [
        vs["compound"],
        vs["pos"],
        vs["neg"],
        vs["neu"],
        max_pos,
        max_neg,
        math.sqrt(max_pos * max_neg),
        float(max_pos > 0 and max_neg == 0),
        min(raw.count("!"), 5) / 5.0,
        min(raw.count("?"), 5) / 5.0,
        min(sum(1 for c in raw if _is_emoji(c)), 5) / 5.0,
        float(any(c in _LAUGH for c in raw)),
        float(any(c in _EYEROLL for c in raw)),
        min(norm.count("#"), 5) / 5.0,
        float("<url>" in norm),
        min(norm.count("@user"), 5) / 5.0,
        len(upper_words) / n_words,
        float(bool(_ELONGATED.search(raw))),
        math.log1p(len(norm)) / math.log1p(MAX_CHARS),
        float(not norm),
        non_latin / max(1, len(letters)),
    ]
    values += [float(c in cues) for c in _CUE_NAMES]
    return np.asarray(values, dtype=np.float64)

