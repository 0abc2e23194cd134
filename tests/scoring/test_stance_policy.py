"""The verdict policy's part-3 rules (issue 16) on scripted captions: a fake caption scorer at the
seam gives each hand-written caption a stance and an irony probability like the ones the shipped
model gives such captions (sincere police praise reads as ironic, ~0.8: its documented failure
mode); the scenes come from a fake scene encoder (fixed probabilities); VADER sentiment, the cue
rules, the shipped verdict.yaml and the real pipeline do the rest."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.fakes import ScriptedCaptionScorer
from workers.config import Settings
from workers.domain import Post
from workers.scenes.prompts import load_prompt_set
from workers.scoring.pipeline import Pipeline
from workers.scoring.verdict import load_policy

# (p_critical, p_supportive, p_neutral, p_ironic)
CRITICAL = {
    "The cops beat a kid for skateboarding and nobody cares": (0.86, 0.04, 0.10, 0.45),
    "Disgusting how these officers treat people in this neighbourhood": (0.80, 0.06, 0.14, 0.55),
    "Stop harassing us. Your department is a danger to this city": (0.72, 0.08, 0.20, 0.40),
    "They shoved my neighbour to the ground for asking a question": (0.66, 0.10, 0.24, 0.35),
}
SINCERE = {
    "Thank you officers for keeping our block safe tonight": (0.05, 0.88, 0.07, 0.81),
    "Proud of our local police, they helped my mom today": (0.06, 0.82, 0.12, 0.79),
    "Grateful for every cop who works the night shift": (0.08, 0.78, 0.14, 0.80),
    "So happy the officers came to the school fair, the kids loved it": (0.10, 0.70, 0.20, 0.77),
}
IRONIC = {
    "Nothing makes me feel safer than five officers around one teenager. Great job!":
        (0.62, 0.24, 0.14, 0.80),
    "Love how friendly the police are when you ask for a badge number": (0.58, 0.27, 0.15, 0.79),
    "Wow, what a warm welcome from the boys in blue, love being searched #sarcasm":
        (0.50, 0.35, 0.15, 0.78),
}
SCRIPT = {**CRITICAL, **SINCERE, **IRONIC}

#: Fixed scene probabilities (everything else 0.02).
SCENES = {
    "neutral police": {"police_present_neutral": 0.9},
    "friendly": {"friendly": 0.9},
    "uncertain force": {"restraint": 0.4, "police_present_neutral": 0.8},
    "clear force": {"restraint": 0.92, "arrest": 0.6},
}


@pytest.fixture(scope="module")
def policy_pipeline():
    from tests.support.fakes import ColourSceneEncoder

    # The scenes are given to `results` directly (fixed probabilities); the encoder is unused.
    settings = Settings()
    prompts = load_prompt_set(settings.scenes_file)
    pipe = Pipeline(ColourSceneEncoder(prompts, {(0, 0, 0): "off_topic"}), prompts,
                    ScriptedCaptionScorer(SCRIPT), load_policy(settings.policy_file), settings)
    return pipe, prompts


def _verdict(policy_pipeline, scene: str, caption: str):
    pipe, prompts = policy_pipeline
    probs = dict.fromkeys(prompts.names, 0.02) | SCENES[scene]
    [r] = pipe.results([Post("p", None, caption, hashtag="myNYPD")], [probs], ["sha"])
    return r


def _labels(policy_pipeline, scene: str, captions: dict) -> list[str]:
    return [_verdict(policy_pipeline, scene, c).verdict.label for c in captions]


@pytest.mark.parametrize("scene", list(SCENES))
def test_critical_captions_are_backlash_over_every_police_scene(policy_pipeline, scene):
    # A plainly critical text needs no force photo; over a friendly photo it is not supportive.
    assert _labels(policy_pipeline, scene, CRITICAL) == ["backlash"] * len(CRITICAL)


@pytest.mark.parametrize("scene", ["neutral police", "friendly"])
def test_sincere_captions_are_supportive_over_police_and_friendly_scenes(policy_pipeline, scene):
    assert _labels(policy_pipeline, scene, SINCERE) == ["supportive"] * len(SINCERE)


def test_sincere_thanks_over_an_uncertain_force_scene_is_not_backlash(policy_pipeline):
    # The old policy counted warmth over force as incongruity: 84 % of sincere captions became
    # backlash there, more than critical ones. Now only non-critical, non-supportive warmth does.
    for caption in SINCERE:
        r = _verdict(policy_pipeline, "uncertain force", caption)
        assert r.verdict.label != "backlash", r.verdict.reasons
        assert r.verdict.signals["incongruity"] < 0.1


def test_a_clear_force_photo_is_backlash_whatever_the_caption(policy_pipeline):
    for caption in SCRIPT:
        assert _verdict(policy_pipeline, "clear force", caption).verdict.label == "backlash"


@pytest.mark.parametrize("scene", ["neutral police", "friendly", "uncertain force"])
def test_mock_praise_counts_as_criticism(policy_pipeline, scene):
    for caption in IRONIC:
        r = _verdict(policy_pipeline, scene, caption)
        assert r.verdict.label == "backlash", (caption, r.verdict.reasons)
        assert r.verdict.signals["mock_praise"] > 0.2


def test_irony_without_positive_words_is_not_mock_praise(policy_pipeline):
    # Sincere praise reads as ironic (0.81) but its supportive stance switches mock praise off.
    r = _verdict(policy_pipeline, "neutral police", "Thank you officers for keeping our block safe "
                 "tonight")
    assert r.caption.sarcasm > 0.8 and r.verdict.signals["mock_praise"] == 0.0


def test_reasons_name_the_captions_stance(policy_pipeline):
    r = _verdict(policy_pipeline, "neutral police", "The cops beat a kid for skateboarding and "
                 "nobody cares")
    assert "caption critical of the police 0.86" in r.verdict.reasons
    r = _verdict(policy_pipeline, "friendly", "Thank you officers for keeping our block safe "
                 "tonight")
    assert "caption supportive of the police 0.88" in r.verdict.reasons
    r = _verdict(policy_pipeline, "clear force", "Thank you officers for keeping our block safe "
                 "tonight")
    assert r.verdict.label == "backlash" and r.verdict.reasons[0].startswith("restraint 0.92")
    assert "caption supportive of the police 0.88" in r.verdict.reasons


def test_the_stance_travels_in_the_result_row(policy_pipeline):
    r = _verdict(policy_pipeline, "neutral police", "Grateful for every cop who works the night "
                 "shift")
    row = r.row()
    assert row.stance is not None and row.stance.label == "supportive"
    assert row.as_record()["caption"]["stance"]["supportive"] == pytest.approx(0.78)


def test_verdict_table(policy_pipeline, capsys):
    """The part-3 table for these captions (printed for the model card; asserted above)."""
    table = {}
    for scene in SCENES:
        for kind, caps in (("critical", CRITICAL), ("sincere", SINCERE), ("ironic", IRONIC)):
            labels = _labels(policy_pipeline, scene, caps)
            table[scene, kind] = {v: labels.count(v) for v in set(labels)}
    with capsys.disabled():
        for (scene, kind), counts in table.items():
            print(f"{scene:<16} {kind:<9} {counts}")
    assert np.all([sum(c.values()) for c in table.values()])
