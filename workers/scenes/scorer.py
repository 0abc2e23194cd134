"""Per-scene probabilities from image embeddings.

Scenes are multi-label: "none of these" is the usual answer, so a softmax across scenes would be
wrong. Each scene has its own positive and contrast prompt ensembles (averaged, then normalised, as
open_clip builds zero-shot heads); its probability is a two-way softmax between the two using the
model's own logit scale: p = sigmoid(scale · (cos(img, pos) − cos(img, contrast)) + bias).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from workers.scenes.encoder import ImageTextEncoder
from workers.scenes.prompts import PromptSet

log = logging.getLogger(__name__)


def _mean_normalised(rows: np.ndarray) -> np.ndarray:
    v = rows.mean(axis=0)
    return v / max(float(np.linalg.norm(v)), 1e-12)


class SceneScorer:
    def __init__(
        self, encoder: ImageTextEncoder, prompts: PromptSet, cache_dir: Path | None = None
    ) -> None:
        self.encoder = encoder
        self.prompts = prompts
        self.names = prompts.names
        self.cache_hit = False
        self.positive, self.contrast = self._prompt_matrices(cache_dir)
        self.bias = np.array([prompts.scenes[n].bias for n in self.names], dtype=np.float32)

    @property
    def cache_key(self) -> str:
        raw = f"{self.encoder.model_id}\n{self.prompts.hash}".encode()
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

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """(n_images, n_scenes) probabilities in [0, 1]."""
        x = np.asarray(image_embeddings, dtype=np.float32)
        margin = x @ self.positive.T - x @ self.contrast.T
        logits = self.encoder.logit_scale * margin + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def score(self, image_embeddings: np.ndarray) -> list[dict[str, float]]:
        probs = self.probabilities(image_embeddings)
        return [dict(zip(self.names, map(float, row), strict=True)) for row in probs]
