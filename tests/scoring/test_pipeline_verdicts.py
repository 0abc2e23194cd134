"""End-to-end wiring with a deterministic fake encoder at the seam: reader → runner → pipeline
(real scorer maths, caption scorer, policy) → writer."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BLUE, GREEN, GREY, RED, image_bytes
from tests.support.fakes import ColourSceneEncoder
from workers.config import Settings
from workers.domain import Post
from workers.net.guard import FetchPolicy
from workers.scoring.pipeline import Pipeline
from workers.scoring.runner import Runner
from workers.sources import open_reader


@pytest.fixture
def fake_pipeline(settings: Settings) -> Pipeline:
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(settings.scenes_file)
    colours = {
        RED: "restraint",
        GREEN: "friendly",
        BLUE: "off_topic",
        GREY: "police_present_neutral",
    }
    # The caption side is pinned to the rule-based scorer: these tests are about the wiring and
    # the policy, not about what the trained caption model (tested on its own) thinks.
    return Pipeline(
        ColourSceneEncoder(prompts, colours),
        prompts,
        CueCaptionScorer(),
        load_policy(settings.policy_file),
        settings,
    )


def test_restraint_scene_with_cheerful_caption_is_backlash(fake_pipeline):
    [r] = fake_pipeline.score_items(
        [(Post("p1", None, "Need a lift? The #NYPD's got you! Free Delivery, only at #myNYPD"),
          image_bytes(RED))]
    )  # fmt: skip
    assert r.verdict.label == "backlash"
    assert r.verdict.confidence > 0.8
    assert any(reason.startswith("restraint 0.") for reason in r.verdict.reasons)
    assert any(
        "caption positive over force scene (restraint): incongruity" in x for x in r.verdict.reasons
    )
    assert r.scenes["restraint"] > 0.9 and r.scenes["friendly"] < 0.1


def test_friendly_scene_with_warm_caption_is_supportive(fake_pipeline):
    [r] = fake_pipeline.score_items(
        [(Post("p2", None, "Great to meet these wonderful officers at the parade, thank you!"),
          image_bytes(GREEN))]
    )  # fmt: skip
    assert r.verdict.label == "supportive"
    assert any(x.startswith("friendly 0.") for x in r.verdict.reasons)


def test_no_police_scene_is_off_topic(fake_pipeline):
    [r] = fake_pipeline.score_items(
        [(Post("p3", None, "Best bagel in town #myNYPD"), image_bytes(BLUE))]
    )
    assert r.verdict.label == "off_topic"
    assert "no police scene" in r.verdict.reasons[0]


def test_every_row_carries_the_pipeline_version(fake_pipeline):
    rows = [r.as_record() for r in fake_pipeline.score_items(
        [(Post("a", None, "x"), image_bytes(RED)), (Post("b", None, "y"), b"")]
    )]  # fmt: skip
    assert {row["pipeline_version"] for row in rows} == {fake_pipeline.version}
    assert fake_pipeline.version.startswith("bf1-")
    assert rows[1]["status"] == "error" and rows[1]["error"]["type"] == "image-empty"


def _write_folder(folder, items):
    folder.mkdir()
    for name, data, caption in items:
        (folder / name).write_bytes(data)
        if caption:
            (folder / name).with_suffix(".txt").write_text(caption)


def test_runner_folder_bad_inputs_become_error_rows_and_batch_completes(fake_pipeline, tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'
    good = image_bytes(RED)
    _write_folder(tmp_path / "in", [
        ("a.jpg", good, "Free delivery #myNYPD"),
        ("b.jpg", b"", None),
        ("c.jpg", good[: len(good) // 2], None),
        ("d.jpg", b"just some text", None),
        ("e.jpg", svg, None),
        ("f.jpg", image_bytes(GREEN, fmt="WEBP"), "thank you officers!"),
    ])  # fmt: skip
    rows: list[dict] = []
    runner = Runner(fake_pipeline, FetchPolicy.from_settings(fake_pipeline.settings))
    stats = runner.run(open_reader(tmp_path / "in", "auto", "myNYPD"), rows.append)
    by_id = {r["post_id"]: r for r in rows}
    assert set(by_id) == set("abcdef")
    assert by_id["a"]["verdict"] == "backlash" and by_id["a"]["caption_text"]
    assert by_id["f"]["verdict"] == "supportive"
    assert by_id["b"]["error"]["type"] == "image-empty"
    assert by_id["c"]["error"]["type"] == "image-truncated"
    assert by_id["d"]["error"]["type"] == "image-unsupported-format"
    assert "SVG" in by_id["e"]["error"]["message"]
    assert (stats.ok, stats.failed) == (2, 4)
    assert all(r["hashtag"] == "myNYPD" for r in rows)
    json.dumps(rows)  # every row is JSON-ready


def test_runner_decodes_a_shared_image_once(fake_pipeline, tmp_path, monkeypatch):
    (tmp_path / "img.jpg").write_bytes(image_bytes(RED))
    manifest = tmp_path / "posts.csv"
    manifest.write_text(
        "post_id,image,caption\n" + "".join(f"p{i},img.jpg,caption {i}\n" for i in range(5))
    )
    calls = []
    real_prepare = fake_pipeline.prepare
    monkeypatch.setattr(
        fake_pipeline, "prepare", lambda data: calls.append(1) or real_prepare(data)
    )
    rows: list[dict] = []
    stats = Runner(fake_pipeline, FetchPolicy.from_settings(fake_pipeline.settings)).run(
        open_reader(manifest), rows.append
    )
    assert len(rows) == 5 and all(r["verdict"] == "backlash" for r in rows)
    assert len(calls) == 1
    assert (stats.decoded, stats.images_scored, stats.reused) == (1, 1, 4)
    assert len({r["media_sha256"] for r in rows}) == 1


def test_duplicate_post_ids_and_broken_manifest_lines_are_reported(fake_pipeline, tmp_path):
    (tmp_path / "img.jpg").write_bytes(image_bytes(GREY))
    manifest = tmp_path / "posts.jsonl"
    manifest.write_text(
        '{"post_id": "1", "image": "img.jpg"}\n{not json\n'
        '{"post_id": "1", "image": "img.jpg"}\n{"image": "img.jpg"}\n'
    )
    problems = []
    rows: list[dict] = []
    Runner(
        fake_pipeline, FetchPolicy.from_settings(fake_pipeline.settings), on_problem=problems.append
    ).run(open_reader(manifest), rows.append)
    assert [r["post_id"] for r in rows] == ["1"]
    assert [p.location.rsplit(":", 1)[-1] for p in problems[:1]] == ["2"]
    assert any("duplicate post id" in p.message for p in problems)
    assert any("missing post_id" in p.message for p in problems)
