"""Deterministic stand-ins at the encoder seam, and tiny real open_clip models.

`ColourSceneEncoder` maps a picture's mean colour to a scene and each positive prompt to its
scene's axis, so a test can say "this red picture is a restraint scene" and exercise everything
downstream of the encoder for real (scorer maths, policy, runner, writers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from workers.scenes.prompts import PromptSet


class ColourSceneEncoder:
    model_id = "fake-colour-encoder"
    logit_scale = 10.0
    image_size = 224

    def __init__(self, prompts: PromptSet, colours: dict[tuple[int, int, int], str]) -> None:
        self.names = prompts.names
        self.dim = len(self.names) + 1  # last axis: "anything else" (contrast prompts)
        self.prompt_axis: dict[str, int] = {}
        for i, name in enumerate(self.names):
            for text in prompts.positive_texts(name):
                self.prompt_axis.setdefault(text, i)
        self.colours = colours
        self.texts_encoded = 0

    def prepare(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)

    def _axis_vector(self, axis: int) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        v[axis] = 1.0
        return v

    def encode_images(self, prepared: list[np.ndarray]) -> np.ndarray:
        rows = []
        for mean in prepared:
            colour = min(self.colours, key=lambda c: float(np.sum((np.array(c) - mean) ** 2)))
            v = self._axis_vector(self.names.index(self.colours[colour]))
            v[-1] = 0.5  # a little "ordinary scene" in every picture
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        return np.stack([self._axis_vector(self.prompt_axis.get(t, self.dim - 1)) for t in texts])


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_clip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny open_clip architecture with random weights, saved as a real safetensors
    checkpoint. Returns (config file, checkpoint file) for the real loading code."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "TinyCLIP-test.json"
    cfg.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model("TinyCLIP-test", pretrained=None)
    ckpt = folder / "tiny-clip.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(ckpt))
    return cfg, ckpt


class ScriptedCaptionScorer:
    """A caption scorer at the seam with scripted stance and irony per caption (no weights):
    `script` maps a caption to (p_critical, p_supportive, p_neutral, p_ironic). Sentiment and
    cues are the real ones (VADER, the cue rules), as every caption model reports them."""

    model_id = "scripted-caption-scorer"

    def __init__(self, script: dict[str, tuple[float, float, float, float]]) -> None:
        self.script = script

    def score_batch(self, texts: list[str]):
        from workers.caption.cues import find_cues, sentiment
        from workers.domain import CaptionScores, Stance

        out = []
        for t in texts:
            crit, sup, neu, ironic = self.script[t]
            out.append(CaptionScores(sarcasm=ironic, sentiment=sentiment(t),
                                     cues=tuple(find_cues(t)), model=self.model_id,
                                     stance=Stance(crit, sup, neu)))
        return out
