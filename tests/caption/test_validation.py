"""The shipped caption models still score as recorded, and training still learns.

`make test`: each shipped file, in each precision it documents, scores a fixed subset of the
irony validation split as recorded (a changed file or inference code moves them); the figures
stored in each file are the model card's; the trainer, on a tiny recipe, learns and is seeded.
`make reproduce` (marker `reproduce`): the full 955-caption re-evaluation against the documented
figures, and retraining each shipped model with its stored recipe. Needs ../shared/data/irony
and ../shared/data/police-stance (present in CI).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.caption.reference import (
    IRONY,
    REFERENCE_FILE,
    SHIPPED,
    SHIPPED_IDS,
    key,
    scores,
)
from workers.caption import (
    LINEAR_MODEL_FILE,
    MINILM_MODEL_FILE,
    SHIPPED_MODEL_FILE,
    load_model_file,
)
from workers.caption.calibrated import VALIDATED_PRECISIONS, validation_key
from workers.caption.training.data import LabelledCaptions, load_split
from workers.caption.training.metrics import evaluate

STANCE = IRONY.parent / "police-stance" / "stance.tsv"
needs_data = pytest.mark.skipif(
    not (IRONY / "val_text.txt").is_file() or not STANCE.is_file(),
    reason=f"shared data not found beside the checkout ({IRONY.parent}; never in the repo)",
)
TOLERANCE = 0.005
#: A retrain follows another trajectory on another CPU (other float kernels: AVX2, AVX-512, AMX),
#: so its figures agree with the shipped file's only within seed noise. Measured: v3 (trained
#: on an Intel AMX machine) retrained on an AMD AVX-512 one, float32 ironic-F1 0.7281 against
#: 0.7212, macro-F1 0.7339 against 0.7286, ECE 0.0504 against 0.0604; v2 on an AMD AVX2 one,
#: int8 ECE 0.0326 against 0.0415. On one machine a retrain gives the same file. A broken
#: recipe moves them by far more (a member that never learns scores at chance, 0.5).
RETRAIN_TOLERANCE = 0.015
#: Per-caption agreement with the recorded scores: (largest, mean) absolute difference.
#: float32 differs between CPUs only in the order of float sums. int8 also differs by kernel:
#: fbgemm's AVX2 path adds u8*s8 pairs in saturating int16, the AVX-512 VNNI path in int32, so
#: the same file scores a few captions up to 0.03 apart on the two machine types (v3: mean
#: 0.004). A changed file or a broken forward pass moves scores by far more.
SCORE_TOLERANCE = {"float32": (1e-3, 1e-4), "int8": (0.05, 0.01)}

SHIPPED_PARAMS = pytest.mark.parametrize("path,precision", SHIPPED, ids=SHIPPED_IDS)


def _stored_metadata(path: Path) -> dict:
    """The JSON metadata in a model file's header, read without loading the model."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
    return json.loads(meta["info"])


@needs_data
@SHIPPED_PARAMS
def test_shipped_model_scores_its_reference_captions_as_recorded(path, precision):
    recorded = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))["models"][
        key(path, precision)
    ]
    model_id, got = scores(path, precision)
    assert model_id == recorded["model_id"], (
        "the shipped file changed: record its scores again (python -m tests.caption.reference)"
    )
    want = np.array(recorded["scores"])
    assert len(got) == len(want) == 60
    moved = np.abs(np.array(got) - want)
    worst_allowed, mean_allowed = SCORE_TOLERANCE[precision]
    assert moved.max() <= worst_allowed, f"a reference score moved by {moved.max():.4f}"
    assert moved.mean() <= mean_allowed, f"the scores moved by {moved.mean():.4f} on average"


@needs_data
@SHIPPED_PARAMS
def test_documented_figures_match_the_model_card(path, precision):
    documented = _stored_metadata(path)[validation_key(precision)]
    assert documented["n"] == 955
    card = (SHIPPED_MODEL_FILE.parent / "caption-sarcasm.md").read_text(encoding="utf-8")
    for k in ("ironic_f1", "macro_f1", "accuracy", "ece"):
        assert f"{documented[k]:.4f}" in card, k


def _stance_captions(rows: list[dict]) -> LabelledCaptions:
    return LabelledCaptions(
        [r["text_no_tags"] for r in rows], [int(r["label"] == "critical") for r in rows], "stance"
    )


@needs_data
def test_the_trainer_learns_a_real_signal_from_a_few_hundred_captions():
    """The adapter trainer on a tiny recipe (300 real captions, one epoch, rank 4, 3 frozen
    layers, MiniLM) separates held-out captions far above chance. The task is critical vs
    supportive tweets about the police, a signal a few hundred captions carry; irony needs
    thousands (400 irony captions gave ROC-AUC 0.58-0.61). A trainer that stops learning (a
    zero learning rate, a detached head, shuffled labels) lands near 0.5."""
    from sklearn.metrics import roc_auc_score

    from workers.caption.training.adapter import AdapterTrainConfig, train_adapter

    with open(STANCE, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["label"] in ("critical", "supportive")]  # fmt: skip
    random.Random(0).shuffle(rows)
    train, held_out = _stance_captions(rows[:300]), _stance_captions(rows[300:500])
    cfg = AdapterTrainConfig(
        base="minilm", epochs=1, members=1, rank=4, frozen_layers=3, batch_size=16, seed=5
    )
    model = train_adapter(train, cfg)
    auc = roc_auc_score(held_out.labels, [s.sarcasm for s in model.score_batch(held_out.texts)])
    print(f"tiny recipe: held-out ROC-AUC {auc:.3f} (model {model.model_id})")
    assert auc >= 0.8


# --- make reproduce -------------------------------------------------------------------------


def _figures(model):
    val = load_split(IRONY, "val")
    return evaluate(val.labels, [s.sarcasm for s in model.score_batch(val.texts)])


def _table(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}\n  {'figure':<24} {'documented':>10} {'measured':>10}")
    for name, documented, got in rows:
        print(f"  {name:<24} {documented:>10.4f} {got:>10.4f}")


@needs_data
@pytest.mark.reproduce
@SHIPPED_PARAMS
def test_shipped_model_reproduces_its_documented_validation_figures(path, precision):
    model = load_model_file(path, precision=precision)
    documented = model.documented_validation()
    fig = _figures(model)
    _table(f"{model.model_id} on the 955 validation captions",
           [(k, documented[k], getattr(fig, k)) for k in ("ironic_f1", "macro_f1", "ece")])
    assert fig.n == documented["n"] == 955
    for k in ("ironic_f1", "macro_f1", "accuracy", "ece"):
        assert getattr(fig, k) == pytest.approx(documented[k], abs=TOLERANCE), k


@needs_data
@pytest.mark.reproduce
@pytest.mark.timeout(3600)  # v3 on 2 cores: ~10 minutes a member
@pytest.mark.parametrize("path", [SHIPPED_MODEL_FILE, MINILM_MODEL_FILE], ids=["v3", "v2"])
def test_retraining_with_the_shipped_recipe_reproduces_its_figures(path):
    """The recipe stored in the shipped file, run again (v3 about 10-12 minutes on 2 cores, v2
    about 5), lands within seed noise of the documented validation figures."""
    from workers.caption.training.adapter import AdapterTrainConfig, train_adapter

    shipped = load_model_file(path)
    cfg = AdapterTrainConfig(**shipped.metadata["config"])
    model = train_adapter(load_split(IRONY, "train"), cfg, load_split(IRONY, "val"))
    for figures in map(validation_key, VALIDATED_PRECISIONS):
        documented, got = shipped.metadata[figures], model.metadata[figures]
        _table(f"{shipped.model_id} retrained ({figures})",
               [(k, documented[k], got[k]) for k in ("ironic_f1", "macro_f1", "ece")])
        for k in ("ironic_f1", "macro_f1", "accuracy", "ece"):
            assert got[k] == pytest.approx(documented[k], abs=RETRAIN_TOLERANCE), (figures, k)


@needs_data
@pytest.mark.reproduce
def test_v1_training_is_seeded_and_reproduces_the_shipped_weights():
    from workers.caption.linear import SarcasmModel
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
