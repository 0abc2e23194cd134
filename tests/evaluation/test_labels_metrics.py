"""Labelled input as a user writes it (clear, line-numbered errors; skipped rows counted) and
the metrics against scikit-learn's definitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workers.errors import InputFormatError
from workers.evaluation import metrics
from workers.evaluation.labels import read_labelled

NAMES = ["arrest", "restraint", "friendly"]


def test_csv_labels_are_read_and_bad_lines_named(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text(
        "post_id,image,caption,scenes,verdict,ironic\n"
        "a,a.jpg,Free delivery,arrest;restraint,backlash,1\n"
        "b,b.jpg,hi,none,supportive,0\n"
        "c,c.jpg,x,kettle,,\n"
        "d,d.jpg,x,,sarcastic,\n"
        "e,e.jpg,x,,,maybe\n"
        "f,f.jpg,no labels at all,,,\n"
        "a,a.jpg,again,arrest,,\n"
        ",g.jpg,no id,arrest,,\n"
    )
    with pytest.raises(InputFormatError) as ei:
        read_labelled(path, NAMES)
    msg = ei.value.message
    assert f"{path}:4: unknown scene 'kettle'" in msg and "write `none`" in msg
    assert f"{path}:5: unknown verdict 'sarcastic'" in msg
    assert f"{path}:6: ironic must be 0 or 1" in msg
    assert f"{path}:8: post id 'a' again (first at {path}:2)" in msg
    assert f"{path}:9: missing post_id" in msg
    assert "--skip-bad" in msg

    got = read_labelled(path, NAMES, skip_bad=True)
    assert [p.post.post_id for p in got.posts] == ["a", "b"]
    assert got.posts[0].labels.scenes == {"arrest", "restraint"}
    assert got.posts[0].labels.verdict == "backlash" and got.posts[0].labels.ironic is True
    assert got.posts[1].labels.scenes == frozenset() and got.posts[1].labels.ironic is False
    assert got.unlabelled == 1 and len(got.skipped) == 5
    assert got.posts[0].post.image == str((tmp_path / "a.jpg").resolve())
    assert "scenes" not in got.posts[0].post.extra


def test_jsonl_labels_take_lists_and_booleans(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text(
        json.dumps({"post_id": "1", "image": "x.png", "scenes": ["friendly"], "ironic": True})
        + "\n{broken\n"
    )
    with pytest.raises(InputFormatError, match=r"labelled.jsonl:2: not valid JSON"):
        read_labelled(path, NAMES)
    got = read_labelled(path, NAMES, skip_bad=True)
    assert got.posts[0].labels.scenes == {"friendly"} and got.posts[0].labels.ironic is True


def test_metrics_equal_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 150)
        s = np.round(rng.random(150) * 0.6 + y * 0.3, 1)  # many ties
        assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert metrics.average_precision(y, s) == pytest.approx(
            average_precision_score(y, s), abs=1e-12
        )


def test_thresholds_ece_and_confusion():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9, 0.7, 0.3])
    thr, f1 = metrics.best_f1_threshold(y, p)
    assert metrics.prf(y, p, thr)["f1"] == pytest.approx(f1)
    assert f1 == pytest.approx(max(metrics.prf(y, p, t)["f1"] for t in p))
    thr90, reached = metrics.threshold_for_precision(y, p, 0.99)
    assert reached and metrics.prf(y, p, thr90)["precision"] == 1.0
    perfect = np.array([0.0, 0.0, 1.0, 1.0])
    assert metrics.ece([0, 0, 1, 1], perfect) == 0.0
    assert metrics.ece([0, 0, 1, 1], [0.95, 0.95, 0.95, 0.95]) == pytest.approx(0.45)
    rep = metrics.confusion_report(
        ["backlash", "backlash", "neutral", "supportive"],
        ["backlash", "neutral", "neutral", "supportive"],
        ["backlash", "supportive", "neutral", "off_topic"],
    )
    assert rep["confusion"][0] == [1, 0, 1, 0] and rep["per_class"]["off_topic"]["f1"] is None
    assert rep["macro_f1"] == pytest.approx(round((2 / 3 + 1 + 2 / 3) / 3, 4))
    ci = metrics.binary_report(y, p, 0.5, rounds=100)["ci95"]
    assert ci["roc_auc"][0] <= metrics.roc_auc(y, p) <= ci["roc_auc"][1]


def test_isotonic_only_with_many_positives_and_only_when_it_wins():
    """A probability curve Platt cannot follow (a step): with ≥ 100 positives and negatives,
    isotonic on top wins under cross-validation and its knots load and apply; with few
    positives the same data get Platt only."""
    from workers.config import MODEL_CARDS_DIR
    from workers.evaluation.calibrate import calibrate_scene
    from workers.scenes.prompts import load_prompt_set

    rng = np.random.default_rng(0)
    m = rng.random(1200)
    y = (rng.random(1200) < np.where(m < 0.6, 0.05, 0.95)).astype(int)
    ps = load_prompt_set(MODEL_CARDS_DIR / "scenes.yaml")
    scene = ps.scenes["arrest"]
    fit = calibrate_scene("arrest", scene, m * 10 - 5, y, 1.0)
    assert fit.method == "platt+isotonic" and fit.scene.isotonic
    assert fit.after["ece"] < 0.05
    few = calibrate_scene("arrest", scene, (m * 10 - 5)[:150], y[:150], 1.0)
    assert few.method == "platt" and few.scene.isotonic is None

    fitted = ps.replaced(scenes={**ps.scenes, "arrest": fit.scene})
    again = type(ps).model_validate(__import__("yaml").safe_load(fitted.to_yaml()))
    assert again.scenes["arrest"].isotonic == fit.scene.isotonic
    assert again.hash == fitted.hash != ps.hash
