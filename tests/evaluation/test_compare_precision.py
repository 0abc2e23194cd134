"""`eval --compare-precision` at the seam: a second, noisier fake tower stands in for int8, so the
comparison has something to find (the tiny real model's int8 path is in
tests/cli/test_eval_cli.py)."""

from __future__ import annotations

from tests.support.fakes import LatentSceneEncoder, write_labelled
from workers.cli.evaluate import Source, run_eval
from workers.scenes.prompts import load_prompt_set

FOUR = ("arrest", "restraint", "weapon_drawn", "friendly")


def test_a_noisier_tower_loses_auc_and_some_verdicts(
    tmp_path, eval_settings, encoder, names, console, misset_yaml, capsys
):
    labelled = write_labelled(tmp_path / "l", names, 120, seed=0, scenes=FOUR)
    noisy = LatentSceneEncoder(load_prompt_set(misset_yaml), noise=0.45,
                               model_id="fake-latent-encoder-int8")  # fmt: skip
    result = run_eval(eval_settings, Source(labelled), console, rounds=0, encoder=encoder,
                      compare_precision="int8", compare_encoder=noisy)  # fmt: skip
    c = result["precision_comparison"]
    assert c["base"] == {"precision": "float32", "model_id": "fake-latent-encoder",
                         "pipeline_version": result["pipeline_version"]}  # fmt: skip
    assert c["other"]["model_id"] == "fake-latent-encoder-int8" and noisy.images_encoded == 120
    assert c["posts"] == 120 and 0.0 < c["verdict_agreement"] < 1.0
    assert c["verdict_agreement"] == round(1 - c["verdicts_differing"] / 120, 4)
    assert len(c["differing"]) == min(20, c["verdicts_differing"])
    assert all(d["base"] != d["other"] for d in c["differing"])
    assert c["verdict_macro_f1"] is None  # no verdict labels: agreement needs none
    diffs = []
    for name in FOUR:
        s = c["scenes"][name]
        assert s["roc_auc"] == result["scenes"][name]["roc_auc"]
        assert abs(s["auc_difference"] - (s["roc_auc_other"] - s["roc_auc"])) < 2e-4
        assert 0.0 <= s["decision_agreement"] <= 1.0 and s["mean_abs_p_difference"] > 0
        diffs.append(s["auc_difference"])
    assert sum(diffs) < 0  # more noise ranks worse
    assert c["scenes"]["injury"]["auc_difference"] is None  # never labelled present
    out = capsys.readouterr().out
    assert "Image precision float32 vs int8 on 120 posts: verdict agreement" in out
    assert "Scenes, int8 − float32" in out
