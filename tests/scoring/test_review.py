"""The `review` flag: weak or conflicting evidence is flagged for a person, with the reason, in
the output row (JSONL and CSV), and the campaign report lists those posts first."""

from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import GREEN, GREY, RED, image_bytes
from tests.support.fakes import ColourSceneEncoder
from workers.config import Settings
from workers.domain import Post, ResultRow
from workers.scoring.pipeline import Pipeline


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(settings.scenes_file)
    colours = {RED: "restraint", GREEN: "friendly", GREY: "police_present_neutral"}
    return Pipeline(ColourSceneEncoder(prompts, colours), prompts, CueCaptionScorer(),
                    load_policy(settings.policy_file), settings)  # fmt: skip


def test_force_scene_under_a_sincere_caption_is_flagged_with_its_reason(pipeline):
    [r] = pipeline.score_items(
        [(Post("p", None, "Great job officers, thank you for keeping us safe!"), image_bytes(RED))]
    )
    row = r.row().as_record()
    assert row["verdict"] == "backlash" and row["review"] is True
    assert "force scene (restraint" in row["review_reason"]
    assert "under a sincere-looking caption" in row["review_reason"]
    assert ResultRow.from_record(row).review is True


def test_clear_evidence_is_not_flagged(pipeline):
    [r] = pipeline.score_items(
        [(Post("p", None, "Lovely parade with the officers today"), image_bytes(GREEN))]
    )
    row = r.row().as_record()
    assert row["verdict"] == "supportive" and row["review"] is False
    assert row["review_reason"] is None


def test_scene_near_its_threshold_and_low_confidence_are_flagged(pipeline):
    from workers.domain import CaptionScores

    scenes = {n: 0.0 for n in pipeline.scenes.names}
    scenes.update(arrest=0.53, police_present_neutral=0.9)
    v = pipeline.policy.judge(scenes, CaptionScores(sarcasm=0.3, sentiment=0.0))
    assert v.review and v.review_reason == "arrest 0.53 near its threshold 0.55"
    scenes.update(arrest=0.45, police_present_neutral=0.45)  # weak evidence: unsure
    v = pipeline.policy.judge(scenes, CaptionScores(sarcasm=0.3, sentiment=0.0))
    assert v.confidence < 0.6
    assert v.review and v.review_reason.startswith("confidence 0.")


def test_csv_output_has_the_review_columns(pipeline, tmp_path):
    from workers.scoring.writers import CsvWriter

    [r] = pipeline.score_items(
        [(Post("p", None, "Great job officers, thank you!"), image_bytes(RED))]
    )
    buf = io.StringIO()
    CsvWriter(buf, pipeline.scenes.names, True).write(r.row().as_record())
    [flat] = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert flat["review"] == "True" and "sincere-looking" in flat["review_reason"]


def test_report_lists_posts_to_review_first(tmp_path):
    from tests.support.report_gen import make_run
    from workers.report import build_report

    run = make_run(tmp_path, n=60, hours=5)
    flagged = [r for r in run.rows if r["status"] == "ok"][:4]
    for r in flagged:
        r.update(review=True, review_reason="confidence 0.51 below 0.60")
    model, html = build_report(run.rows, base_dir=tmp_path)
    assert model.review_total == 4 and len(model.to_review) >= 1
    sections = [s.split('"')[0] for s in html.split('<section id="')[1:]]
    assert sections.index("to-review") < sections.index("top-backlash")
    assert sections[1] == "to-review"  # right after the verdict counts
    assert "Posts to review (4)" in html and "Review: confidence 0.51 below 0.60" in html
