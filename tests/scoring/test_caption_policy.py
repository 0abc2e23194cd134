"""The shipped caption model and the shipped verdict policy together, over fixed scenes (fake
scene encoder at the seam, real caption model v3, real policy): the #myNYPD cases come out as a
comms team would read them."""

from __future__ import annotations

import pytest

from tests.conftest import GREEN, GREY, RED, image_bytes
from tests.support.fakes import ColourSceneEncoder
from workers.caption import load_caption_scorer
from workers.config import Settings
from workers.domain import Post
from workers.scoring.pipeline import Pipeline


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(settings.scenes_file)
    colours = {RED: "restraint", GREEN: "friendly", GREY: "police_present_neutral"}
    return Pipeline(
        ColourSceneEncoder(prompts, colours),
        prompts,
        load_caption_scorer(settings),  # the shipped default: caption-sarcasm-v3
        load_policy(settings.policy_file),
        settings,
    )


def _verdict(pipeline: Pipeline, caption: str, colour):
    [r] = pipeline.score_items([(Post("p", "myNYPD", caption), image_bytes(colour))])
    return r


def test_the_default_pipeline_uses_caption_model_v3(pipeline):
    assert pipeline.caption_scorer.model_id.startswith("caption-sarcasm-v3-")


def test_cheerful_caption_over_a_restraint_photo_is_backlash(pipeline):
    r = _verdict(pipeline, "Free delivery, only at #myNYPD", RED)
    assert r.caption.sentiment > 0.3  # cheerful words ...
    assert r.verdict.label == "backlash"  # ... over restraint: the photo carries it
    assert r.verdict.reasons[0].startswith("restraint 0.")
    assert any(x.startswith("caption ") for x in r.verdict.reasons)  # the stance is named


@pytest.mark.parametrize(
    "caption",
    ["Thanks NYPD for keeping us safe", "Proud of our officers at the community BBQ today!"],
)
def test_sincere_praise_over_a_friendly_photo_stays_supportive(pipeline, caption):
    r = _verdict(pipeline, caption, GREEN)
    # The irony head over-reads police praise as irony (documented failure mode) ...
    assert r.caption.sarcasm > 0.7
    # ... the stance head reads it as support, and the policy counts irony only as mock praise.
    assert r.caption.stance.label == "supportive"
    assert r.verdict.label == "supportive", r.verdict.reasons
    assert any(x.startswith("caption supportive of the police") for x in r.verdict.reasons)


@pytest.mark.parametrize(
    "caption",
    ["Thanks NYPD for keeping us safe", "Proud of our officers at the community BBQ today!"],
)
def test_sincere_praise_over_a_plain_police_photo_is_supportive(pipeline, caption):
    assert _verdict(pipeline, caption, GREY).verdict.label == "supportive"


def test_a_critical_caption_over_a_plain_police_photo_is_backlash(pipeline):
    caption = "Watched officers drag a woman out of her car for nothing. Sickening."
    r = _verdict(pipeline, caption, GREY)
    assert r.caption.stance.label == "critical"
    assert r.verdict.label == "backlash", r.verdict.reasons
    assert any(x.startswith("caption critical of the police") for x in r.verdict.reasons)


def test_explicit_sarcasm_over_a_police_photo_is_not_supportive(pipeline):
    r = _verdict(pipeline, "Great job guys, so friendly #sarcasm", GREY)
    assert r.verdict.signals["sarcasm_evidence"] >= 0.9
    assert r.verdict.label in {"neutral", "backlash"}


@pytest.mark.xfail(strict=True, reason="known failure (model_cards/caption-sarcasm.md, Stance): "
                   "the stance head reads this mock praise as support (0.69), and a supportive "
                   "stance switches mock praise off")
def test_ironic_words_alone_count_as_sarcasm_over_a_police_photo(pipeline):
    # No force scene and no explicit marker: only the caption model's own reading of the words.
    caption = "Oh wonderful, stopped and searched again on my way home. Love it!"
    r = _verdict(pipeline, caption, GREY)
    assert r.caption.sarcasm > pipeline.policy.policy.caption.sarcasm_floor
    assert r.verdict.signals["sarcasm_evidence"] > 0.2
    assert r.verdict.label != "supportive", r.verdict.reasons
