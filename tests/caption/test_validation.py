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
from workers.caption.calibrated import VALIDATED_PRECISIONS, validation_key
from workers.caption.linear import SarcasmModel
from workers.caption.training.data import load_split
from workers.caption.training.metrics import evaluate

IRONY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "irony"
needs_data = pytest.mark.skipif(
    not (IRONY / "val_text.txt").is_file(),
    reason=f"irony data not found at {IRONY} (SemEval-2018 3A via TweetEval; never in the repo)",
)
TOLERANCE = 0.005
#: A retrain follows another trajectory on another CPU (other float kernels: AVX2, AVX-512, AMX),
#: so its figures agree with the shipped file's only within seed noise. Measured: v3 (trained
#: on an Intel AMX machine) retrained on an AMD AVX-512 one, float32 ironic-F1 0.7281 against
#: 0.7212, macro-F1 0.7339 against 0.7286, ECE 0.0504 against 0.0604; v2 on an AMD AVX2 one,
#: int8 ECE 0.0326 against 0.0415. On one machine a retrain gives the same file. A broken
#: recipe moves them by far more (a member that never learns scores at chance, 0.5).
RETRAIN_TOLERANCE = 0.015


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
    """The recipe stored in the shipped file, run again (v3 about 10-12 minutes on 2 cores, v2
    about 5), lands within seed noise of the documented validation figures: a change that breaks
    training can't pass unnoticed (the shipped files themselves are re-checked within ±0.005)."""
    from workers.caption.training.adapter import AdapterTrainConfig, train_adapter

    shipped = load_model_file(path)
    cfg = AdapterTrainConfig(**shipped.metadata["config"])
    model = train_adapter(load_split(IRONY, "train"), cfg, load_split(IRONY, "val"))
    for figures in map(validation_key, VALIDATED_PRECISIONS):
        documented, got = shipped.metadata[figures], model.metadata[figures]
        for key in ("ironic_f1", "macro_f1", "accuracy", "ece"):
            assert got[key] == pytest.approx(documented[key], abs=RETRAIN_TOLERANCE), (figures, key)


@needs_data
@pytest.mark.slow
def test_v1_training_is_seeded_and_reproduces_the_shipped_weights():
    from workers.caption.training.linear import TrainConfig, train

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
