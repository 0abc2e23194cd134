"""The caption model's stance head (issue 16): p(critical/supportive/neutral) toward the police
from the same forward pass as the irony head.

`make test`: the shipped v3 file carries the head; it reads hand-written captions (none of them
an anchor) on the right side, answers no stance where it cannot read, keeps the irony scores
exactly, does not depend on the batch; the CLI shows and evaluates it; the shipped head scores
a fixed subset of the held-out stance rows as recorded. `make reproduce`: the full held-out parts
against the documented figures, and refitting the head with its stored recipe.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.caption.reference import REFERENCE_FILE, stance_subset, stance_subset_scores
from workers.caption import SHIPPED_MODEL_FILE, load_model_file
from workers.caption.calibrated import EMPTY_CUE, UNSUPPORTED_SCRIPT_CUE
from workers.caption.stance import StanceHead
from workers.caption.training.stance_data import (
    load_stance,
    parts,
    roc_auc,
    stance_figures,
)
from workers.domain import STANCES

BACKFIRE = str(Path(sys.executable).parent / "backfire")
STANCE_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "police-stance"
needs_data = pytest.mark.skipif(not (STANCE_DATA / "stance.tsv").is_file(),
                                reason="shared stance data not found beside the checkout")

# Hand-written, not anchors (model_cards/caption-stance-anchors.yaml) and not from any dataset.
CRITICAL = [
    "Watched officers drag a woman out of her car for nothing. Sickening.",
    "cops in this city think they are above the law",
    "Why does it take a viral video for a cop to face any consequences?",
]
SUPPORTIVE = [
    "Thanks NYPD for keeping us safe",
    "Much respect to the officers who stayed all night at the flood shelter",
    "God bless our police, they never get the credit they deserve",
]
NEUTRAL = [
    "Police closed the bridge for two hours this morning after a crash",
    "Officers will be at the library on Tuesday to answer questions about the new parking rules",
]


@pytest.fixture(scope="module", params=["float32", "int8"])
def v3(request):
    return load_model_file(SHIPPED_MODEL_FILE, precision=request.param)


def test_the_shipped_model_has_a_stance_head_beside_its_irony_head(v3):
    assert v3.stance_head is not None and v3.stance_head.target == "police"
    assert "+stance-" in v3.model_id  # a new head is a new model id: never mixed in verdicts


def test_hand_written_captions_land_on_their_side(v3):
    crit = [s.stance for s in v3.score_batch(CRITICAL)]
    sup = [s.stance for s in v3.score_batch(SUPPORTIVE)]
    for st in crit + sup:
        assert st is not None
        assert st.critical + st.supportive + st.neutral == pytest.approx(1.0, abs=1e-6)
    assert [st.label for st in crit] == ["critical"] * len(crit), crit
    # "God bless our police, they never get the credit they deserve" reads as critical (0.53 vs
    # 0.42): a documented failure mode (grievance words in a supportive caption).
    assert [st.label for st in sup] == ["supportive", "supportive", "critical"], sup
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean([st.critical - st.supportive for st in crit]) > 0.5
    assert mean([st.supportive - st.critical for st in sup]) > 0.2


def test_news_style_captions_are_not_read_as_a_stance(v3):
    for st in (s.stance for s in v3.score_batch(NEUTRAL)):
        assert st is not None and st.neutral > min(st.critical, st.supportive), st


def test_empty_and_unreadable_captions_have_no_stance(v3):
    for text, cue in (("", EMPTY_CUE), ("  ", EMPTY_CUE),
                      ("شكرا للشرطة على هذا اليوم الرائع", UNSUPPORTED_SCRIPT_CUE)):
        s = v3.score_one(text)
        assert s.stance is None and cue in s.cues
    for text in ("😂😂😂🙄", "https://t.co/abc123", "Gracias a la policía por todo"):
        assert v3.score_one(text).stance is not None  # read, as the irony head reads them


def test_stance_does_not_depend_on_batch_order_or_size(v3):
    texts = CRITICAL + SUPPORTIVE + NEUTRAL + ["", "RT @x: thanks officers"]
    v3.clear_cache()
    single = [v3.score_one(t) for t in texts]
    v3.clear_cache()
    order = list(range(len(texts)))
    random.Random(5).shuffle(order)
    shuffled = v3.score_batch([texts[i] for i in order])
    assert [shuffled[order.index(i)] for i in range(len(texts))] == single


def test_the_stance_head_leaves_the_irony_scores_exactly_as_they_were(tmp_path):
    """The file without its stance head scores irony identically (same pass, same head)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(SHIPPED_MODEL_FILE), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("stance.")}  # noqa: SIM118
    meta.pop("stance")
    meta["model_id"] = meta["model_id"].split("+stance-")[0]
    bare = tmp_path / "irony-only.safetensors"
    save_file(tensors, str(bare), metadata=meta)
    texts = CRITICAL + SUPPORTIVE + NEUTRAL
    with_head = load_model_file(SHIPPED_MODEL_FILE, precision="float32").score_batch(texts)
    without = load_model_file(bare, precision="float32").score_batch(texts)
    assert [s.sarcasm for s in with_head] == [s.sarcasm for s in without]
    assert all(s.stance is None for s in without)


def test_a_stance_head_round_trips_through_its_stored_form():
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(3, 16)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    head = StanceHead(protos, rng.normal(size=(3, 3)).astype(np.float32),
                      rng.normal(size=3).astype(np.float32), 12, STANCES,
                      anchors={"critical": ["a"]}, info={"x": 1})
    again = StanceHead.from_stored(head.tensors(), head.header())
    x = rng.normal(size=(5, 16))
    assert np.allclose(head.probabilities(x), again.probabilities(x))
    assert again.digest() == head.digest()
    assert np.allclose(head.probabilities(x).sum(axis=1), 1.0)
    # The cosine ignores the length of the pooled vector.
    assert np.allclose(head.probabilities(3 * x), head.probabilities(x))


def test_roc_auc_and_figures_are_what_sklearn_and_hand_counts_say():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # ties included
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    f = stance_figures(np.array([0, 0, 1, 2]), np.array([[.8, .1, .1], [.2, .7, .1],
                                                           [.1, .8, .1], [.3, .3, .4]]))
    assert f.confusion == [[1, 1, 0], [0, 1, 0], [0, 0, 1]] and f.accuracy == 0.75
    assert f.auc == 1.0


@needs_data
def test_the_held_out_parts_are_the_documented_ones():
    rows = load_stance(STANCE_DATA)
    masks = parts(rows)
    assert not (masks["fit"] & (masks["human"] | masks["events"])).any()
    assert int(masks["human"].sum()) + int(masks["events"].sum()) == \
        len(rows) - int(masks["fit"].sum())
    doc = load_model_file(SHIPPED_MODEL_FILE, precision="float32").stance_head.info["heldout"]
    assert doc["human"]["n"] == int(masks["human"].sum())
    assert doc["events"]["n"] == int(masks["events"].sum())


@needs_data
@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_shipped_stance_head_scores_its_reference_rows_as_recorded(precision):
    recorded = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))["stance"][precision]
    model_id, probs = stance_subset_scores(precision)
    assert model_id == recorded["model_id"], "record again: python -m tests.caption.reference"
    want = np.array(recorded["probabilities"])
    assert probs.shape == want.shape
    worst, mean = (0.05, 0.01) if precision == "int8" else (1e-3, 1e-4)
    moved = np.abs(probs - want)
    assert moved.max() <= worst and moved.mean() <= mean
    rows = stance_subset()
    got = stance_figures(rows.y(), probs)
    assert got.auc == pytest.approx(recorded["auc"], abs=0.005)
    assert got.macro_f1 == pytest.approx(recorded["macro_f1"], abs=0.005)


def test_cli_score_shows_the_stance():
    res = subprocess.run([BACKFIRE, "caption", "score", SUPPORTIVE[0], CRITICAL[0]],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    sup, crit = res.stdout.splitlines()
    assert sup.startswith("stance supportive 0.") and "sarcasm 0." in sup
    assert crit.startswith("stance critical 0.")
    js = subprocess.run([BACKFIRE, "caption", "score", "--json", SUPPORTIVE[0]],
                        capture_output=True, text=True, timeout=300)
    st = json.loads(js.stdout)["stance"]
    assert st["label"] == "supportive" and st["target"] == "police"


def test_cli_evaluates_stance_on_your_own_labels(tmp_path):
    data = tmp_path / "mine.tsv"
    lines = ["text\tlabel"] + [f"{t}\tcritical" for t in CRITICAL] + \
        [f"{t}\tsupportive" for t in SUPPORTIVE] + [f"{t}\tneutral" for t in NEUTRAL]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = subprocess.run([BACKFIRE, "caption", "eval", "--task", "stance", "--data", str(data)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ROC-AUC critical vs supportive  1.0000" in res.stdout
    assert "(8 captions: critical 3, supportive 3, neutral 2)" in res.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,angry\n", encoding="utf-8")
    res = subprocess.run([BACKFIRE, "caption", "eval", "--task", "stance", "--data", str(bad)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "label must be one of critical, supportive, neutral" in \
        res.stderr and "bad.csv:2" in res.stderr
    linear = subprocess.run(
        [BACKFIRE, "caption", "eval", "--task", "stance", "--data", str(data), "--model",
         str(SHIPPED_MODEL_FILE.parent / "caption-sarcasm-v1.safetensors")],
        capture_output=True, text=True, timeout=300)
    assert linear.returncode == 2 and "has no stance head" in linear.stderr


# --- make reproduce -------------------------------------------------------------------------


@needs_data
@pytest.mark.reproduce
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_shipped_stance_head_reproduces_its_documented_held_out_figures(precision):
    model = load_model_file(SHIPPED_MODEL_FILE, precision=precision)
    key = "heldout" if precision == "float32" else "heldout_int8"
    documented = model.stance_head.info[key]
    rows = load_stance(STANCE_DATA)
    masks = parts(rows)
    card = (SHIPPED_MODEL_FILE.parent / "caption-sarcasm.md").read_text(encoding="utf-8")
    for part in ("human", "events"):
        sub = rows.subset(masks[part])
        scores = model.score_batch(sub.texts)
        probs = np.array([[s.stance.critical, s.stance.supportive, s.stance.neutral]
                          for s in scores])
        got = stance_figures(sub.y(), probs)
        print(f"{precision} {part}: AUC {got.auc:.4f} (documented {documented[part]['auc']:.4f}),"
              f" macro-F1 {got.macro_f1:.4f} ({documented[part]['macro_f1']:.4f})")
        assert got.auc == pytest.approx(documented[part]["auc"], abs=0.005)
        # int8 kernels differ between CPUs (fbgemm's AVX2 and AVX-512 VNNI paths): on the VNNI
        # machine two of the 208 human-half predictions changed class, macro-F1 0.6170 -> 0.6251.
        # On ~25 rows per minority class one changed prediction moves macro-F1 by ~0.01.
        f1_tolerance = 0.015 if precision == "int8" else 0.005
        assert got.macro_f1 == pytest.approx(documented[part]["macro_f1"], abs=f1_tolerance)
        assert f"{documented[part]['auc']:.4f}" in card


@needs_data
@pytest.mark.reproduce
@pytest.mark.timeout(1800)
def test_refitting_the_stance_head_with_its_recipe_reproduces_it():
    from workers.caption.training.stance import StanceTrainConfig, train_stance_head

    shipped = load_model_file(SHIPPED_MODEL_FILE, precision="float32")
    cfg = StanceTrainConfig(**shipped.stance_head.info["config"])
    model = train_stance_head(shipped, load_stance(STANCE_DATA), cfg)
    for part in ("human", "events"):
        want = shipped.stance_head.info["heldout"][part]
        got = model.stance_head.info["heldout"][part]
        assert got["auc"] == pytest.approx(want["auc"], abs=0.005)
        assert got["macro_f1"] == pytest.approx(want["macro_f1"], abs=0.005)
