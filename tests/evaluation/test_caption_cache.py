"""Caption scores are cached on disk like image embeddings: a second `backfire eval` of the same
posts asks the caption model nothing and prints the same figures; another caption model never
reads them; `--no-cache` asks the model again."""

from __future__ import annotations

import csv

import pytest

from tests.support.fakes import write_labelled
from workers.caption.cache import CachedCaptionScorer, CaptionScoreCache
from workers.caption.cues import CueCaptionScorer
from workers.cli.evaluate import Source, run_eval
from workers.domain import CaptionScores, Stance

FOUR = ("arrest", "restraint", "weapon_drawn", "friendly")


class CountingScorer:
    """The v0 rules, counting the captions it is asked to read."""

    model_id = "cues-v0"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._inner = CueCaptionScorer()

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        self.texts.extend(texts)
        return self._inner.score_batch(texts)


class RefusingScorer:
    model_id = "cues-v0"

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        raise AssertionError(f"the caption model was asked to read {len(texts)} captions")


def _with_verdicts(path):
    """Add verdict and irony labels, and make captions repeat (reposts) so distinct < posts."""
    rows = list(csv.DictReader(path.open()))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, [*rows[0], "verdict", "ironic"])
        w.writeheader()
        for i, r in enumerate(rows):
            r["caption"] = ["Free delivery, only at #myNYPD", "Thank you officers!",
                            f"Lunch today {i}"][i % 3]  # fmt: skip
            w.writerow({**r, "verdict": ["backlash", "supportive", "neutral"][i % 3],
                        "ironic": i % 3 == 0})  # fmt: skip
    return path


def _figures(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "timing"}


def test_second_eval_asks_the_caption_model_nothing_and_gives_the_same_figures(
    tmp_path, eval_settings, encoder, names, console, monkeypatch
):
    import workers.scoring.pipeline as pipeline_mod

    labelled = _with_verdicts(write_labelled(tmp_path / "l", names, 60, seed=0, scenes=FOUR))
    counting = CountingScorer()
    monkeypatch.setattr(pipeline_mod, "load_caption_scorer", lambda settings: counting)
    first = run_eval(eval_settings, Source(labelled), console, rounds=20, encoder=encoder)
    # Each distinct caption read once: 2 repeated ones + 20 "Lunch today i".
    assert sorted(counting.texts) == sorted(set(counting.texts)) and len(counting.texts) == 22
    assert first["timing"]["captions_scored"] == 22 and first["timing"]["captions_from_cache"] == 0
    assert first["verdicts"]["labelled"] == 60 and first["captions"]["ironic"]["labelled"] == 60

    monkeypatch.setattr(pipeline_mod, "load_caption_scorer", lambda settings: RefusingScorer())
    second = run_eval(eval_settings, Source(labelled), console, rounds=20, encoder=encoder)
    assert second["timing"]["captions_scored"] == 0
    assert second["timing"]["captions_from_cache"] == 22
    assert second["timing"]["encoded"] == 0
    assert _figures(second) == _figures(first)
    assert "22 from the caption-score cache, 0 scored" in console.file.getvalue()

    # --no-cache: the model reads every caption again.
    with pytest.raises(AssertionError, match="asked to read"):
        run_eval(eval_settings, Source(labelled, use_cache=False), console, rounds=0,
                 encoder=encoder)  # fmt: skip


def test_cache_round_trips_scores_exactly_and_is_per_model(tmp_path):
    scores = CaptionScores(
        sarcasm=0.1234567890123, sentiment=-0.75, cues=("free delivery", "only at"),
        model="caption-sarcasm-v3-int8", stance=Stance(0.7000000001, 0.2, 0.0999999999),
    )  # fmt: skip
    plain = CaptionScores(sarcasm=0.5, sentiment=0.0)
    cache = CaptionScoreCache(tmp_path, "caption-sarcasm-v3-int8")
    cache.put_many({"a": scores, "b": plain})
    again = CaptionScoreCache(tmp_path, "caption-sarcasm-v3-int8")
    assert again.get_many(["a", "b", "c"]) == {"a": scores, "b": plain}
    assert len(CaptionScoreCache(tmp_path, "caption-sarcasm-v3")) == 0
    with pytest.raises(ValueError, match="cache of"):
        CachedCaptionScorer(CueCaptionScorer(), again)
