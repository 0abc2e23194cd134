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


class LatentSceneEncoder:
    """Image embeddings that depend on a known label plus noise, for evaluation tests.

    A picture's colour and width carry its labels and a noise seed (see `latent_image`): red is
    a bitmask of the prompt set's scenes, green one of the `hidden` scenes (which no prompt can
    express: their axes are reached by no text), blue and the width a seed. The embedding is
    `other_axis · 0.5 + Σ strength · axis(scene) + noise`, normalised; each positive prompt of a
    scene encodes to that scene's axis and every other text to `other_axis`, so zero-shot margins
    rank the known scenes well and the hidden ones not at all.
    """

    logit_scale = 10.0
    image_size = 224

    def __init__(
        self, prompts: PromptSet, hidden: tuple[str, ...] = ("kettling",), *,
        strength: float = 0.55, noise: float = 0.22, noise_dims: int = 8,
        model_id: str = "fake-latent-encoder",
    ) -> None:  # fmt: skip
        self.model_id = model_id
        self.names = prompts.names
        self.hidden = hidden
        self.other = len(self.names) + len(hidden)
        self.dim = self.other + 1 + noise_dims
        self.strength, self.noise = strength, noise
        self.prompt_axis: dict[str, int] = {}
        for i, name in enumerate(self.names):
            for text in prompts.positive_texts(name):
                self.prompt_axis.setdefault(text, i)
        self.images_encoded = 0

    def prepare(self, image: Image.Image) -> tuple[int, int, int]:
        r, g, b = image.convert("RGB").getpixel((0, 0))
        return int(r), int(g), int(b) + 256 * (image.size[0] - 16)

    def encode_images(self, prepared: list[tuple[int, int, int]]) -> np.ndarray:
        rows = []
        for known, hidden, seed in prepared:
            rng = np.random.default_rng(seed + 7919 * known + 104729 * hidden)
            v = rng.normal(0.0, self.noise, self.dim)
            v[self.other] += 0.5
            for i in range(len(self.names)):
                if known >> i & 1:
                    v[i] += self.strength
            for k in range(len(self.hidden)):
                if hidden >> k & 1:
                    v[len(self.names) + k] += self.strength
            rows.append(v / np.linalg.norm(v))
        self.images_encoded += len(rows)
        return np.stack(rows).astype(np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, t in enumerate(texts):
            out[row, self.prompt_axis.get(t, self.other)] = 1.0
        return out


def latent_image(
    names: list[str], present: set[str], seed: int, hidden: tuple[str, ...] = ("kettling",)
) -> bytes:
    """PNG bytes `LatentSceneEncoder` reads back as (scenes present, seed)."""
    import io

    known = sum(1 << i for i, n in enumerate(names) if n in present)
    secret = sum(1 << k for k, n in enumerate(hidden) if n in present)
    img = Image.new("RGB", (16 + seed // 256, 16), (known, secret, seed % 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_labelled(
    folder: Path, names: list[str], n: int, seed: int, *, rate: float = 0.3,
    scenes: tuple[str, ...] | None = None, hidden: tuple[str, ...] = ("kettling",),
    extra_columns: bool = False,
) -> Path:  # fmt: skip
    """A labelled CSV of `n` posts over `scenes` (default: all known and hidden ones), each
    present with probability `rate`; images written beside it. Seeds start at `seed`."""
    import csv
    import random

    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pool = list(scenes if scenes is not None else (*names, *hidden))
    path = folder / "labelled.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["post_id", "image", "caption", "scenes"])
        for i in range(n):
            present = {s for s in pool if rnd.random() < rate}
            img = folder / f"img{seed + i}.png"
            img.write_bytes(latent_image(names, present, seed + i, hidden))
            w.writerow([f"p{seed + i}", img.name, f"caption {i}",
                        ";".join(sorted(present)) or "none"])
    return path
