"""The shipped caption sarcasm models (v3 MPNet adapter, the default; v2 MiniLM adapter; v1
linear): they load, they
read captions the way users write them, and a score is a property of the caption alone (not of
the batch around it)."""

from __future__ import annotations

import random
import sys

import pytest

from workers.caption import (
    LINEAR_MODEL_FILE,
    MINILM_MODEL_FILE,
    SHIPPED_MODEL_FILE,
    load_caption_scorer,
    load_model_file,
)
from workers.caption.calibrated import EMPTY_CUE, UNSUPPORTED_SCRIPT_CUE
from workers.caption.linear import SarcasmModel
from workers.config import Settings
from workers.domain import CaptionScores
from workers.errors import ConfigError

SARCASTIC = "Oh wonderful, my flight got cancelled again. Love it!"
SINCERE = "Looking forward to the game tonight with my brother"

EDGE_CASES = {
    "empty": "",
    "whitespace": "   \n\t ",
    "emoji only": "😂😂😂🙄",
    "url only": "https://t.co/abc123",
    "mentions only": "@user @someone_else",
    "rt prefix": "RT @nypd: Proud to serve #myNYPD",
    "very long": "so great " * 6000,  # 54k characters
    "japanese": "今日は本当に素晴らしい一日でした",
    "arabic": "شكرا للشرطة على هذا اليوم الرائع",
    "spanish": "Qué maravilla, otra vez sin luz en casa",
    "control chars": "tab\there\x00null\u2028line",
    "lone surrogate-free symbols": "→ ★ ♥ ✓",
}


FILES = {"v3": SHIPPED_MODEL_FILE, "v2": MINILM_MODEL_FILE, "v1": LINEAR_MODEL_FILE}
#: Every shipped file, and v3 also in int8 (the default precision): a user meets all of them.
MODELS = {"v3": (SHIPPED_MODEL_FILE, "float32"), "v3-int8": (SHIPPED_MODEL_FILE, "int8"),
          "v2": (MINILM_MODEL_FILE, "float32"), "v1": (LINEAR_MODEL_FILE, "float32")}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    path, precision = MODELS[request.param]
    return load_model_file(path, precision=precision)


def _valid(s: CaptionScores) -> None:
    assert 0.0 <= s.sarcasm <= 1.0
    assert -1.0 <= s.sentiment <= 1.0
    assert isinstance(s.cues, tuple)
    assert s.model.startswith("caption-sarcasm-v")


def test_shipped_v3_model_in_int8_is_the_default_and_loads_once():
    first = load_caption_scorer(Settings())
    assert first.model_id.startswith("caption-sarcasm-v3-") and first.model_id.endswith("-int8")
    assert load_caption_scorer(Settings()) is first


@pytest.mark.parametrize("path", list(FILES.values()), ids=list(FILES))
def test_shipped_model_files_are_small_and_not_pickles(path):
    data = path.read_bytes()
    assert len(data) < 5_000_000
    assert not data.startswith(b"\x80")  # pickle protocol marker
    assert not data.startswith(b"PK")  # nor a zip (torch.save's format)


def test_caption_model_file_setting_picks_another_file(tmp_path):
    copy = tmp_path / "mine.safetensors"
    copy.write_bytes(LINEAR_MODEL_FILE.read_bytes())
    scorer = load_caption_scorer(Settings(caption_model_file=copy))
    assert scorer.model_id == SarcasmModel.load(LINEAR_MODEL_FILE).model_id
    assert scorer.model_id.startswith("caption-sarcasm-v1-")
    assert load_caption_scorer(Settings(caption_model_file="cues-v0")).model_id == "cues-v0"
    with pytest.raises(ConfigError, match="not found"):
        load_caption_scorer(Settings(caption_model_file=tmp_path / "missing.safetensors"))


def test_importing_the_caption_package_does_not_import_torch():
    import subprocess

    # The v1 model and the package itself stay numpy-only (the API process imports them).
    code = (
        "import sys, workers.caption, workers.caption.linear\n"
        "from workers.caption import LINEAR_MODEL_FILE, load_model_file\n"
        "load_model_file(LINEAR_MODEL_FILE).score_batch(['hi'])\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sarcastic_and_sincere_land_on_the_right_sides(model):
    sarcastic, sincere = model.score_batch([SARCASTIC, SINCERE])
    assert sarcastic.sarcasm > 0.5 > sincere.sarcasm
    assert sarcastic.sentiment > 0  # the words are positive: that is what makes it sarcasm


def test_scores_do_not_depend_on_batch_order_or_size(model):
    texts = [SARCASTIC, SINCERE, *EDGE_CASES.values(), "Great, another Monday."]
    single = [model.score_one(t) for t in texts]
    assert model.score_batch(texts) == single
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    shuffled = model.score_batch([texts[i] for i in order])
    assert [shuffled[order.index(i)] for i in range(len(texts))] == single
    for k in (1, 2, 5):
        chunks = [model.score_batch(texts[i : i + k]) for i in range(0, len(texts), k)]
        assert [s for chunk in chunks for s in chunk] == single


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_case_captions_get_valid_scores(model, name):
    _valid(model.score_one(EDGE_CASES[name]))


def test_empty_caption_answers_the_prior_and_says_so(model):
    s = model.score_one("")
    assert s.sarcasm == pytest.approx(model.prior)
    assert s.sentiment == 0.0
    assert EMPTY_CUE in s.cues


def test_non_latin_script_is_not_scored_and_says_so(model):
    for text in (EDGE_CASES["japanese"], EDGE_CASES["arabic"]):
        s = model.score_one(text)
        assert s.sarcasm == pytest.approx(model.prior)
        assert UNSUPPORTED_SCRIPT_CUE in s.cues


def test_rt_prefix_and_mention_handles_do_not_change_the_score(model):
    plain = model.score_one("Proud to serve #myNYPD").sarcasm
    assert model.score_one("RT @nypd: Proud to serve #myNYPD").sarcasm == pytest.approx(plain)
    assert model.score_one("RT @someone_else: Proud to serve #myNYPD").sarcasm == pytest.approx(
        plain
    )


def test_very_long_caption_is_scored_from_its_start(model):
    head = "so great " * 200
    assert model.score_one(head * 30).sarcasm == pytest.approx(model.score_one(head * 3).sarcasm)


def test_whitespace_runs_do_not_change_the_score(model):
    # The SemEval collection left double spaces where #not/#sarcasm was removed; the model must
    # not be able to read that artefact.
    assert model.score_one("I love Mondays  ").sarcasm == model.score_one("I love Mondays").sarcasm
    assert model.score_one("I  love   Mondays").sarcasm == model.score_one("I love Mondays").sarcasm


def test_explicit_cues_are_reported(model):
    assert "#sarcasm" in model.score_one("Great job guys #sarcasm").cues


def test_a_foreign_file_is_refused_with_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot read caption model"):
        SarcasmModel.load(bad)


def test_bfloat16_precision_is_close_to_float32_and_says_so_in_the_model_id():
    texts = [SARCASTIC, SINCERE, "Free delivery, only at #myNYPD 😂", "Thanks NYPD, stay safe"]
    full = load_model_file(SHIPPED_MODEL_FILE)
    half = load_caption_scorer(Settings(caption_precision="bfloat16"))
    assert half.model_id == full.model_id + "-bf16"  # never mixed with float32 verdicts
    for a, b in zip(full.score_batch(texts), half.score_batch(texts), strict=True):
        assert b.sarcasm == pytest.approx(a.sarcasm, abs=0.02)
        assert b.sentiment == a.sentiment
    assert half.score_batch(texts[::-1])[::-1] == half.score_batch(texts)
    with pytest.raises(ConfigError, match="caption precision must be one of"):
        load_model_file(SHIPPED_MODEL_FILE, precision="int4")


def test_int8_precision_is_close_to_float32_and_says_so_in_the_model_id():
    texts = [SARCASTIC, SINCERE, "Free delivery, only at #myNYPD 😂", "Thanks NYPD, stay safe",
             "RT @user: Police arrest protester outside city hall http://t.co/abc123"]
    full = load_model_file(SHIPPED_MODEL_FILE)
    fast = load_model_file(SHIPPED_MODEL_FILE, precision="int8")
    assert fast.model_id == full.model_id + "-int8"  # never mixed with float32 verdicts
    assert load_model_file(SHIPPED_MODEL_FILE) is full  # each precision is its own model
    for a, b in zip(full.score_batch(texts), fast.score_batch(texts), strict=True):
        # Validation: 97 % of captions on the same side of 0.5, largest move 0.19.
        assert b.sarcasm == pytest.approx(a.sarcasm, abs=0.12)
        assert b.sentiment == a.sentiment
    fast.clear_cache()
    assert fast.score_batch(texts[::-1])[::-1] == fast.score_batch(texts)


def test_int8_needs_the_ranges_a_trained_file_carries(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(MINILM_MODEL_FILE), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("int8_range.")}  # noqa: SIM118
    old = tmp_path / "before-int8.safetensors"
    save_file(tensors, str(old), metadata=meta)
    assert load_model_file(old).model_id == load_model_file(MINILM_MODEL_FILE).model_id
    with pytest.raises(ConfigError, match="carries no int8 activation ranges.*use float32"):
        load_model_file(old, precision="int8")
