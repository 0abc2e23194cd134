"""The caption stance head: p(critical), p(supportive), p(neutral) toward the campaign's sender
(the police), read from the same forward pass as the irony head. numpy only (no torch).

    f_k    = cos(pooled, prototype_k)             one number per prototype (class anchors)
    p      = softmax(W · (scale · f) + b)         W: (3, K), b: (3,), fitted on stance data

`pooled` is the caption encoder's mean-pooled token states after `layer` of its layers (the
irony head reads the last layer; the stance head may tap an earlier one of the same pass, which
the irony fine-tune moved less). The prototypes are the normalised means of hand-written anchor
captions' embeddings (model_cards/caption-stance-anchors.yaml). Why prototypes and a handful of
calibration numbers instead of a head trained on the embedding: the stance data's labels come
mostly from stance hashtags of a few events, one class per event, and a head with hundreds of
weights learns the event instead of the stance (model card, "Stance").

Stored in the caption model file: tensors `stance.prototypes`, `stance.weight`, `stance.bias`,
and the header entry `stance` (JSON: layer, scale, prototype names, anchors, figures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.domain import STANCES, Stance

#: Tensor-name prefix and header key of the stance head in a caption model file.
PREFIX = "stance."
HEADER = "stance"


@dataclass
class StanceHead:
    prototypes: np.ndarray  # (K, d), unit rows
    weight: np.ndarray  # (3, K), rows in STANCES order
    bias: np.ndarray  # (3,)
    #: How many encoder layers the pooled vector has passed (the encoder's depth = the last).
    layer: int
    names: tuple[str, ...]  # one per prototype
    scale: float = 10.0
    target: str = "police"
    anchors: dict[str, list[str]] = field(default_factory=dict)
    #: Training record and held-out figures (model card, "Stance").
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, pooled: np.ndarray) -> np.ndarray:
        """Cosines of each pooled row (n, d) to each prototype: (n, K)."""
        x = np.asarray(pooled, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return x @ self.prototypes.T.astype(np.float64)

    def probabilities(self, pooled: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities in STANCES order."""
        z = self.scale * self.features(pooled) @ self.weight.T.astype(np.float64) + self.bias
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def stance(self, pooled: np.ndarray) -> Stance:
        p = self.probabilities(np.asarray(pooled).reshape(1, -1))[0]
        return Stance(float(p[0]), float(p[1]), float(p[2]), self.target)

    # --- storage -------------------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {
            f"{PREFIX}prototypes": np.ascontiguousarray(self.prototypes, dtype=np.float32),
            f"{PREFIX}weight": np.ascontiguousarray(self.weight, dtype=np.float32),
            f"{PREFIX}bias": np.ascontiguousarray(self.bias, dtype=np.float32),
        }

    def header(self) -> str:
        return json.dumps({
            "layer": self.layer, "names": list(self.names), "scale": self.scale,
            "classes": list(STANCES), "target": self.target, "anchors": self.anchors,
            "info": self.info,
        }, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_stored(cls, tensors: dict[str, Any], header: str) -> StanceHead:
        meta = json.loads(header)
        if tuple(meta.get("classes", ())) != STANCES:
            raise ValueError(f"stance head classes {meta.get('classes')} are not {list(STANCES)}")
        arrays = {k[len(PREFIX):]: np.asarray(v, dtype=np.float32)
                  for k, v in tensors.items() if k.startswith(PREFIX)}
        head = cls(
            prototypes=arrays["prototypes"], weight=arrays["weight"], bias=arrays["bias"],
            layer=int(meta["layer"]), names=tuple(meta["names"]), scale=float(meta["scale"]),
            target=str(meta.get("target", "police")), anchors=meta.get("anchors", {}),
            info=meta.get("info", {}),
        )
        k = len(head.names)
        if head.prototypes.shape[0] != k or head.weight.shape != (3, k) or head.bias.shape != (3,):
            raise ValueError("stance head tensors do not fit its header")
        return head

    def digest(self) -> str:
        h = hashlib.sha256(repr((self.layer, self.names, self.scale, self.target)).encode())
        for a in (self.prototypes, self.weight, self.bias):
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return h.hexdigest()
