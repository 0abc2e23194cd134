"""Per-scene probabilities from image embeddings.

Scenes are multi-label: "none of these" is the usual answer, so a softmax across scenes would be
wrong. Each scene has its own positive and contrast prompt ensembles (averaged, then normalised, as
open_clip builds zero-shot heads); its probability is a two-way softmax between the two using the
model's own logit scale:

    margin = cos(img, pos) − cos(img, contrast)          (or img · head, for a few-shot scene)
    p      = sigmoid(logit_scale · scale · margin + bias)   (then isotonic knots, if fitted)

`scale` and `bias` default to 1 and 0; `backfire calibrate` fits them per scene (Platt scaling
on the margin) and `backfire scenes fit` replaces a scene's direction by a few-shot head.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from workers.errors import ConfigError
from workers.scenes.encoder import ImageTextEncoder
from workers.scenes.prompts import PromptSet

log = logging.getLogger(__name__)


def _mean_normalised(rows: np.ndarray) -> np.ndarray:
    v = rows.mean(axis=0)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


class SceneScorer:
    def __init__(
        self, encoder: ImageTextEncoder, prompts: PromptSet, cache_dir: Path | None = None
    ) -> None:
        prompts.check_model(encoder.model_id)
        self.encoder = encoder
        self.prompts = prompts
        self.names = prompts.names
        self.cache_hit = False
        self.positive, self.contrast = self._prompt_matrices(cache_dir)
        #: One direction per scene: the margin is image · direction.
        self.directions = (self.positive - self.contrast).astype(np.float32)
        for i, name in enumerate(self.names):
            if prompts.scenes[name].head is not None:
                from workers.scenes.heads import load_head

                self.directions[i] = load_head(prompts, name, encoder.model_id, self.dim)
        self.bias = np.array([prompts.scenes[n].bias for n in self.names], dtype=np.float32)
        self.scale = np.array([prompts.scenes[n].scale for n in self.names], dtype=np.float32)
        self.thresholds = {n: prompts.scenes[n].threshold for n in self.names}

    @property
    def dim(self) -> int:
        return int(self.positive.shape[1])

    @property
    def cache_key(self) -> str:
        """Keyed by the model and the prompt texts only: a calibrated copy of the prompt set
        (other biases, thresholds, heads) reuses the same prompt embeddings."""
        texts = [
            [self.prompts.positive_texts(n), self.prompts.contrast_texts(n)] for n in self.names
        ]
        raw = f"{self.encoder.model_id}\n{json.dumps(texts, ensure_ascii=False)}".encode()
        return hashlib.sha256(raw).hexdigest()[:24]

    def _prompt_matrices(self, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        path = cache_dir / "prompt-embeddings" / f"{self.cache_key}.npz" if cache_dir else None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    pos, con = z["positive"], z["contrast"]
                if pos.shape[0] == con.shape[0] == len(self.names):
                    self.cache_hit = True
                    return pos, con
            except (OSError, ValueError, KeyError) as e:  # a damaged cache is just a miss
                log.warning("ignoring unreadable prompt cache %s: %s", path, e)
        pos, con = self._encode_prompts()
        release = getattr(self.encoder, "release_text_tower", None)
        if release is not None:
            release()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename so concurrent workers never read half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, positive=pos, contrast=con)
            os.replace(tmp, path)
        return pos, con

    def _encode_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        # One encode call for every prompt of every scene: batching matters on a CPU.
        groups: list[tuple[int, int]] = []
        texts: list[str] = []
        for name in self.names:
            for side in (self.prompts.positive_texts(name), self.prompts.contrast_texts(name)):
                groups.append((len(texts), len(texts) + len(side)))
                texts.extend(side)
        emb = self.encoder.encode_texts(texts)
        rows = [_mean_normalised(emb[a:b]) for a, b in groups]
        pos = np.stack(rows[0::2]).astype(np.float32)
        con = np.stack(rows[1::2]).astype(np.float32)
        return pos, con

    def margins(self, image_embeddings: np.ndarray) -> np.ndarray:
        """(n_images, n_scenes) raw margins: what calibration fits its scale and bias on."""
        x = np.asarray(image_embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(
                f"Image embeddings of width {x.shape[-1]} do not fit the prompt embeddings "
                f"of width {self.dim}: they come from another model."
            )
        return x @ self.directions.T

    def probabilities_from_margins(self, margins: np.ndarray) -> np.ndarray:
        logits = self.encoder.logit_scale * self.scale * margins + self.bias
        probs = sigmoid(logits)
        for i, name in enumerate(self.names):
            knots = self.prompts.scenes[name].isotonic
            if knots:
                xs, ys = zip(*knots, strict=True)
                probs[:, i] = np.interp(probs[:, i], xs, ys)
        return probs

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """(n_images, n_scenes) probabilities in [0, 1]."""
        return self.probabilities_from_margins(self.margins(image_embeddings))

    def score(self, image_embeddings: np.ndarray) -> list[dict[str, float]]:
        probs = self.probabilities(image_embeddings)
        return [dict(zip(self.names, map(float, row), strict=True)) for row in probs]
