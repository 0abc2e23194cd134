"""Re-evaluating the shipped models on the irony validation split reproduces their documented
figures, and training is reproducible. Needs ../shared/data/irony (present in CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.caption import (
    LINEAR_MODEL_FILE,
    MINILM_MODEL_FILE,
    SHIPPED_MODEL_FILE,
    load_model_file,
)
from workers.caption.data import load_split
from workers.caption.metrics import VALIDATED_PRECISIONS, evaluate, validation_key
from workers.caption.model import SarcasmModel

IRONY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "irony"
needs_data = pytest.mark.skipif(
    not (IRONY / "val_text.txt").is_file(),
    reason=f"irony data not found at {IRONY} (SemEval-2018 3A via TweetEval; never in the repo)",
)
TOLERANCE = 0.005


SHIPPED = pytest.mark.parametrize(
    "path,precision",
    [(SHIPPED_MODEL_FILE, "int8"), (SHIPPED_MODEL_FILE, "float32"), (MINILM_MODEL_FILE, "int8"),
     (MINILM_MODEL_FILE, "float32"), (LINEAR_MODEL_FILE, "float32")],
    ids=["v3-mpnet-int8", "v3-mpnet", "v2-minilm-int8", "v2-minilm", "v1-linear"],
)


def _figures(model):
    val = load_split(IRONY, "val")
    return evaluate(val.labels, [s.sarcasm for s in model.score_batch(val.texts)])


@needs_data
@SHIPPED
def test_shipped_model_reproduces_its_documented_validation_figures(path, precision):
    model = load_model_file(path, precision=precision)
    documented = model.documented_validation()
    fig = _figures(model)
    assert fig.n == documented["n"] == 955
    for key in ("ironic_f1", "macro_f1", "accuracy", "ece"):
        assert getattr(fig, key) == pytest.approx(documented[key], abs=TOLERANCE), key


@needs_data
@SHIPPED
def test_documented_figures_match_the_model_card(path, precision):
    documented = load_model_file(path, precision=precision).documented_validation()
    card = (SHIPPED_MODEL_FILE.parent / "caption-sarcasm.md").read_text(encoding="utf-8")
    for key in ("ironic_f1", "macro_f1", "accuracy", "ece"):
        assert f"{documented[key]:.4f}" in card, key


@needs_data
@pytest.mark.slow
@pytest.mark.timeout(3600)  # v3 on 2 cores: ~10 minutes a member
@pytest.mark.parametrize("path", [SHIPPED_MODEL_FILE, MINILM_MODEL_FILE], ids=["v3", "v2"])
def test_retraining_with_the_shipped_recipe_reproduces_its_figures(path):
    """A retrained file can't silently drift: the recipe stored in the shipped file, run again
    (v3 about 9 minutes on 2 cores, v2 about 5), lands on the documented validation figures."""
    from workers.caption.adapter_train import AdapterTrainConfig, train_adapter

    shipped = load_model_file(path)
    cfg = AdapterTrainConfig(**shipped.metadata["config"])
    model = train_adapter(load_split(IRONY, "train"), cfg, load_split(IRONY, "val"))
    for figures in map(validation_key, VALIDATED_PRECISIONS):
        documented, got = shipped.metadata[figures], model.metadata[figures]
        for key in ("ironic_f1", "macro_f1", "accuracy", "ece"):
            # int8 magnifies the last digits a retrain on another CPU changes, and 10-bin ECE
            # is the figure that feels it most (v2 retrained on an AMD machine: 0.0326 against
            # the shipped 0.0415); the decision figures stay within TOLERANCE.
            tol = 0.015 if (figures, key) == (validation_key("int8"), "ece") else TOLERANCE
            assert got[key] == pytest.approx(documented[key], abs=tol), (figures, key)


@needs_data
@pytest.mark.slow
def test_v1_training_is_seeded_and_reproduces_the_shipped_weights():
    from workers.caption.train import TrainConfig, train

    shipped = SarcasmModel.load(LINEAR_MODEL_FILE)
    cfg = TrainConfig(**shipped.metadata["config"])
    model = train(load_split(IRONY, "train"), cfg)
    # Same vocabulary and the same weights up to float noise (BLAS threading can move the last
    # digits of lbfgs, so the id, a digest of the exact bytes, may differ between machines).
    assert model.vocab == shipped.vocab
    assert np.abs(model.w_terms - shipped.w_terms).max() < 1e-3
    assert model.bias == pytest.approx(shipped.bias, abs=1e-3)
    assert model.platt_a == pytest.approx(shipped.platt_a, abs=1e-3)
    assert model.platt_c == pytest.approx(shipped.platt_c, abs=1e-3)


def test_csv_and_tweeteval_formats_read_the_same(tmp_path):
    (tmp_path / "train_text.txt").write_text("yay mondays \nnice day \n", encoding="utf-8")
    (tmp_path / "train_labels.txt").write_text("1\n0\n", encoding="utf-8")
    csv_text = 'text,label\n"yay mondays",1\nnice day,0\n'
    (tmp_path / "mine.csv").write_text(csv_text, encoding="utf-8")
    a = load_split(tmp_path, "train")
    b = load_split(tmp_path / "mine.csv", "train")
    assert a.texts == b.texts == ["yay mondays", "nice day"]
    assert a.labels == b.labels == [1, 0]
