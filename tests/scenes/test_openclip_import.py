"""open_clip imports without Hugging Face `transformers` when the architecture has no HF part
(a second or two of every worker's and CLI run's start-up), and with it when it has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.scenes.openclip import _needs_transformers


@pytest.mark.parametrize(
    "model_name,needs",
    [
        ("ViT-B-32", False),
        ("ViT-L-14", False),
        ("roberta-ViT-B-32", True),  # an HF text tower
        ("ViT-B-16-SigLIP", True),  # an HF tokenizer
        ("coca_ViT-B-32", True),  # caption generation uses transformers
        ("No-Such-Arch", True),  # unknown beforehand: import as usual
        (None, True),
    ],
)
def test_which_bundled_architectures_need_transformers(model_name, needs):
    assert _needs_transformers(model_name, None) is needs


def test_a_config_file_decides_for_itself(tmp_path):
    plain, hf = tmp_path / "Plain.json", tmp_path / "Hf.json"
    plain.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}, "text_cfg": {"width": 8}}))
    hf.write_text(json.dumps({"embed_dim": 8, "text_cfg": {"hf_model_name": "roberta-base"}}))
    assert _needs_transformers("Plain", plain) is False
    assert _needs_transformers("Hf", hf) is True
    assert _needs_transformers("Broken", tmp_path / "missing.json") is True


def test_the_scene_encoder_starts_without_transformers_and_still_works(tiny_settings):
    """In a fresh process, as a worker or `backfire score` starts: the tiny architecture loads
    from its checkpoint and embeds a prompt, and `transformers` was never imported."""
    code = f"""
import sys
from pathlib import Path
from workers.config import Settings
from workers.scenes.encoder import ClipEncoder
settings = Settings(model_config_file=Path({str(tiny_settings.model_config_file)!r}),
                    checkpoint=Path({str(tiny_settings.checkpoint)!r}),
                    cache_dir=Path({str(tiny_settings.cache_dir)!r}))
enc = ClipEncoder(settings)
vec = enc.encode_texts(["a photo of a police officer"])
assert vec.shape[0] == 1 and abs(float((vec ** 2).sum()) - 1) < 1e-4, vec
print("transformers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
