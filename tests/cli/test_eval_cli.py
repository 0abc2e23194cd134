"""`backfire eval`, `calibrate` and `scenes fit` as a user runs them, with the tiny real open_clip
model (random weights: the code path, not accuracy), then `score` with the fitted YAML."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import image_bytes


def _labelled(tmp_path: Path, n: int = 24) -> Path:
    lines = ["post_id,image,caption,scenes,verdict,ironic"]
    for i in range(n):
        colour = (200 - 6 * i, 30 + 5 * i, (40 * i) % 255)
        (tmp_path / f"i{i}.jpg").write_bytes(image_bytes(colour, size=(120 + i, 100)))
        scenes = ["restraint;kettling" if i % 2 else "none", "arrest", "friendly"][i % 3]
        verdict = ["backlash", "neutral", "supportive"][i % 3]
        lines.append(f"p{i},i{i}.jpg,Free delivery {i},{scenes},{verdict},{i % 2}")
    path = tmp_path / "labelled.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_calibrate_fit_then_score_with_the_tiny_real_model(run_cli, tmp_path):
    _labelled(tmp_path)
    res = run_cli("eval", "labelled.csv", "--json", "--out", "eval.html", "--skip-bad")
    assert res.returncode == 0, res.stderr
    # `kettling` is no scene of the shipped YAML: those rows are left out and counted.
    assert "unreadable rows left out" in res.stderr
    data = json.loads(res.stdout)
    assert data["posts"]["scored"] == 20 and data["posts"]["skipped"] == 4
    assert {"arrest", "restraint", "friendly"} <= set(data["scenes"])
    assert data["verdicts"]["labelled"] == 20 and data["captions"]["ironic"]["labelled"] == 20
    assert data["model_id"].startswith("TinyCLIP-test@sha256:")
    html = (tmp_path / "eval.html").read_text()
    assert html.count('class="mini pr-curve"') == len(data["scenes"])

    # Again: every embedding comes from the disk cache.
    again = run_cli("eval", "labelled.csv", "--skip-bad")
    assert again.returncode == 0, again.stderr
    assert "20 from the embedding cache, 0 encoded" in again.stderr
    assert "20 from the caption-score cache, 0 scored" in again.stderr
    assert "Scenes on 20 labelled posts" in again.stdout

    res = run_cli("calibrate", "labelled.csv", "--skip-bad", "--out", "my-scenes.yaml",
                  "--folds", "3")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Wrote my-scenes.yaml" in res.stdout and "0 encoded" in res.stderr
    assert (tmp_path / "my-scenes.yaml").is_file()

    res = run_cli("scenes", "fit", "kettling", "--from", "labelled.csv", "--group", "force",
                  "--out", "fit.yaml", "--no-shots")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "fit.kettling.safetensors").is_file()

    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.jpg").write_bytes(image_bytes((200, 30, 30)))
    plain = run_cli("score", "posts", "--out", "plain.jsonl")
    fitted = run_cli("score", "posts", "--out", "fitted.jsonl",
                     env={"BACKFIRE_SCENES_FILE": str(tmp_path / "fit.yaml")})  # fmt: skip
    assert plain.returncode == 0 and fitted.returncode == 0, fitted.stderr
    [a] = [json.loads(x) for x in (tmp_path / "plain.jsonl").read_text().splitlines()]
    [b] = [json.loads(x) for x in (tmp_path / "fitted.jsonl").read_text().splitlines()]
    assert "kettling" in b["scenes"] and "kettling" not in a["scenes"]
    assert a["pipeline_version"] != b["pipeline_version"]
    assert "review" in b


def test_labelled_file_errors_exit_2_naming_the_line(run_cli, tmp_path):
    _labelled(tmp_path, 4)
    res = run_cli("eval", "labelled.csv")
    assert res.returncode == 2
    assert "labelled.csv:5: unknown scene 'kettling'" in res.stderr and "--skip-bad" in res.stderr
    res = run_cli("calibrate", "labelled.csv", "--from-store")
    assert res.returncode == 2 and "not both" in res.stderr
    res = run_cli("eval", "--help")
    assert res.returncode == 0 and "backfire eval labelled.csv --out eval.html" in res.stdout
    assert "--compare-precision" in res.stdout
    for cmd in (("calibrate",), ("scenes", "fit")):  # int8 is calibrated for its own model id
        res = run_cli(*cmd, "--help")
        assert res.returncode == 0 and "--image-precision" in res.stdout


def test_eval_compares_the_int8_image_tower_with_float32(run_cli, tmp_path):
    _labelled(tmp_path)
    res = run_cli("eval", "labelled.csv", "--skip-bad", "--json", "--bootstrap", "0",
                  "--compare-precision", "int8", "--out", "eval.html")  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    c = data["precision_comparison"]
    assert c["base"]["precision"] == "float32" and c["other"]["precision"] == "int8"
    assert c["other"]["model_id"] == data["model_id"] + "-int8"
    assert c["base"]["pipeline_version"] == data["pipeline_version"]
    assert c["other"]["pipeline_version"] != data["pipeline_version"]
    assert c["posts"] == 20 and 0.0 <= c["verdict_agreement"] <= 1.0
    differ = round(20 * (1 - c["verdict_agreement"]))
    assert c["verdicts_differing"] == len(c["differing"]) == differ
    assert 0.9 < c["embedding_cosine"]["min"] <= c["embedding_cosine"]["mean"] <= 1.0
    assert c["verdict_macro_f1"]["labelled"] == 20
    assert c["scenes"]["restraint"]["auc_difference"] is None  # no positive left: no AUC
    for name in ("arrest", "friendly"):
        s = c["scenes"][name]
        assert s["roc_auc"] == data["scenes"][name]["roc_auc"]  # the run's own figure
        assert 0.0 <= s["roc_auc_other"] <= 1.0 and 0.0 <= s["decision_agreement"] <= 1.0
        assert abs(s["auc_difference"] - (s["roc_auc_other"] - s["roc_auc"])) < 2e-4
    assert "20 encoded" in res.stderr and "Comparing with the int8 image tower" in res.stderr
    html = (tmp_path / "eval.html").read_text()
    assert 'id="precision"' in html
    assert f'data-metric="verdict_agreement">{c["verdict_agreement"]:.4f}<' in html

    # A precision against itself: the same embeddings (one cache), so full agreement.
    res = run_cli("eval", "labelled.csv", "--skip-bad", "--compare-precision", "float32")
    assert res.returncode == 0, res.stderr
    assert "Image precision float32 vs float32 on 20 posts: verdict agreement 1.000 (0 verdicts " \
           "differ)" in res.stdout  # fmt: skip
    res = run_cli("eval", "labelled.csv", "--skip-bad", "--json", "--bootstrap", "0",
                  "--compare-precision", "float32")  # fmt: skip
    same = json.loads(res.stdout)["precision_comparison"]
    assert same["verdict_agreement"] == 1.0 and same["verdicts_differing"] == 0
    assert same["embedding_cosine"]["min"] == 1.0
    for s in same["scenes"].values():
        assert s["decision_agreement"] == 1.0 and s["mean_abs_p_difference"] == 0.0
        assert s["auc_difference"] in (0.0, None)

    bad = run_cli("eval", "labelled.csv", "--skip-bad", "--compare-precision", "fp16")
    assert bad.returncode == 2 and "--compare-precision is one of float32, int8" in bad.stderr
