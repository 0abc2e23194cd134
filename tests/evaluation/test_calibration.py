"""`backfire calibrate` against a deliberately mis-set scenes.yaml, with a fake encoder whose
embeddings follow known labels: out-of-sample ECE goes down and F1 up, the fitted YAML is used
by `score` (new pipeline_version, same probabilities as the calibration computed), a second run
costs no model time, and another model refuses the calibrated file."""

from __future__ import annotations

import pytest
import yaml

from tests.support.fakes import LatentSceneEncoder, write_labelled
from workers.cli.evaluate import Source, run_calibrate, run_eval
from workers.errors import ConfigError
from workers.net.guard import FetchPolicy
from workers.scenes.prompts import load_prompt_set

FOUR = ("arrest", "restraint", "weapon_drawn", "friendly")


@pytest.fixture
def calibrated(tmp_path, eval_settings, encoder, names, console, capsys):
    train = write_labelled(tmp_path / "train", names, 300, seed=0, scenes=FOUR)
    out = tmp_path / "mine" / "my-scenes.yaml"
    result = run_calibrate(eval_settings, Source(train), console, out, encoder=encoder)
    result["printed"] = capsys.readouterr().out
    return out, result


def test_calibrate_lowers_out_of_sample_ece_and_raises_f1(calibrated, console):
    out, result = calibrated
    for name in ("restraint", "arrest"):
        fit = result["scenes"][name]
        assert fit["method"] == "platt" and fit["folds"] == 5
        before, after = fit["before"], fit["after_cv"]
        assert after["ece"] < before["ece"] - 0.1, (name, before, after)
        assert after["f1"] > before["f1"] + 0.05, (name, before, after)
    # Scenes nobody labelled present are left alone, and the output says why.
    injury = result["scenes"]["injury"]
    assert injury["method"] == "unchanged" and "0 labelled positive" in injury["reason"]
    text = result["printed"]
    assert "300 encoded" in console.file.getvalue()
    assert "injury: left as it is" in text and "BACKFIRE_SCENES_FILE" in text

    # The YAML carries the fitted values and their provenance, and loads back.
    ps = load_prompt_set(out)
    assert ps.calibration is not None and ps.calibration.model_id == "fake-latent-encoder"
    assert ps.calibration.samples == 300 and ps.scenes["restraint"].bias < 4.0
    raw = yaml.safe_load(out.read_text())
    assert raw["calibration"]["scenes"]["restraint"]["after_cv"]["f1"] == (
        result["scenes"]["restraint"]["after_cv"]["f1"]
    )
    assert out.read_text().startswith("# Calibrated by `backfire calibrate`")


def test_held_out_sample_is_better_with_the_calibrated_yaml(
    calibrated, tmp_path, eval_settings, encoder, names, console
):
    out, _ = calibrated
    held = write_labelled(tmp_path / "held", names, 200, seed=50_000, scenes=FOUR)
    before = run_eval(eval_settings, Source(held), console, rounds=0, encoder=encoder)
    encoded = encoder.images_encoded
    after = run_eval(
        eval_settings.model_copy(update={"scenes_file": out}), Source(held), console,
        rounds=0, encoder=encoder,
    )  # fmt: skip
    # The second run took every embedding from the disk cache: no model time.
    assert encoder.images_encoded == encoded
    assert after["timing"]["encoded"] == 0 and after["timing"]["from_cache"] == 200
    for name in ("restraint", "arrest"):
        b, a = before["scenes"][name], after["scenes"][name]
        assert a["ece"] < b["ece"] and a["f1"] > b["f1"], (name, b, a)
    assert after["pipeline_version"] != before["pipeline_version"]
    assert after["calibrated_for"] == "fake-latent-encoder"


def test_the_fitted_yaml_round_trips_through_score(calibrated, tmp_path, eval_settings,
                                                    encoder, names):  # fmt: skip
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.scorer import SceneScorer
    from workers.scoring.pipeline import Pipeline
    from workers.scoring.runner import Runner
    from workers.scoring.verdict import load_policy
    from workers.sources import open_reader

    out, _ = calibrated
    held = write_labelled(tmp_path / "score-me", names, 40, seed=90_000, scenes=FOUR)
    settings = eval_settings.model_copy(update={"scenes_file": out})
    prompts = load_prompt_set(out)
    pipe = Pipeline(encoder, prompts, CueCaptionScorer(), load_policy(settings.policy_file),
                    settings)  # fmt: skip
    rows: list[dict] = []
    Runner(pipe, FetchPolicy.from_settings(settings)).run(open_reader(held), rows.append)
    assert len(rows) == 40 and all(r["status"] == "ok" for r in rows)
    assert {r["pipeline_version"] for r in rows} == {pipe.version}
    # Each row's probabilities are the calibrated scorer's, as `eval` computes them.
    scorer = SceneScorer(encoder, prompts)
    from PIL import Image

    for r in rows[:10]:
        img = Image.open(r["image"])
        x = encoder.encode_images([encoder.prepare(img)])
        want = scorer.score(x)[0]
        assert r["scenes"] == pytest.approx({k: round(v, 4) for k, v in want.items()}, abs=1e-4)


def test_another_model_refuses_the_calibrated_yaml(calibrated, tmp_path, eval_settings, names,
                                                    console):  # fmt: skip
    out, _ = calibrated
    other = LatentSceneEncoder(load_prompt_set(out), model_id="ViT-B-32@other-weights")
    held = write_labelled(tmp_path / "held", names, 10, seed=70_000, scenes=FOUR)
    settings = eval_settings.model_copy(update={"scenes_file": out})
    with pytest.raises(ConfigError) as ei:
        run_eval(settings, Source(held), console, rounds=0, encoder=other)
    msg = ei.value.message
    assert "calibrated for the model 'fake-latent-encoder'" in msg
    assert "ViT-B-32@other-weights" in msg and "backfire calibrate" in msg
    with pytest.raises(ConfigError, match="calibrated for the model"):
        run_calibrate(settings, Source(held), console, tmp_path / "x.yaml", encoder=other)


def test_target_precision_is_reached_out_of_sample(tmp_path, eval_settings, encoder, names,
                                                    console):  # fmt: skip
    train = write_labelled(tmp_path / "train", names, 300, seed=0, scenes=FOUR)
    result = run_calibrate(eval_settings, Source(train), console, tmp_path / "p.yaml",
                           target_precision=0.95, encoder=encoder)  # fmt: skip
    best = run_calibrate(eval_settings, Source(train), console, tmp_path / "f.yaml",
                         encoder=encoder)["scenes"]["restraint"]  # fmt: skip
    fit = result["scenes"]["restraint"]
    assert fit["threshold_rule"] == "target precision 0.95" and best["threshold_rule"] == "best F1"
    # Chosen on the training folds: out of sample it lands a little below, well above best F1's.
    assert fit["after_cv"]["precision"] >= 0.75
    assert fit["after_cv"]["precision"] > best["after_cv"]["precision"] + 0.05
    assert fit["after_cv"]["threshold"] > best["after_cv"]["threshold"]
