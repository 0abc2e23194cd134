"""v1, the linear caption sarcasm model (TF-IDF + logistic regression) at inference time:
numpy only, no torch, no pickle.

The file is one `.safetensors`: arrays (idf, weights, dense scaler) as tensors, and the vocabulary,
calibration and documented validation figures as JSON strings in the header metadata. Scoring a
caption touches only that caption, so a score never depends on the batch it came in.

    p(ironic) = sigmoid(a * (w_terms . tfidf(terms) + w_dense . z(dense) + b) + c)

where tfidf is sublinear tf x idf over the vocabulary, L2-normalised (scikit-learn's definition,
re-implemented here so inference needs no scikit-learn) and (a, c) is a Platt calibration fitted
on out-of-fold training scores.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from workers.caption.calibrated import CalibratedScorer
from workers.caption.features import DENSE_NAMES, dense_features, terms
from workers.errors import ConfigError

FORMAT = "backfire-caption-sarcasm/1"


@dataclass
class SarcasmModel(CalibratedScorer):
    model_id: str
    vocab: dict[str, int]
    idf: np.ndarray  # (V,) float64
    w_terms: np.ndarray  # (V,) float64
    w_dense: np.ndarray  # (K,) float64
    dense_mean: np.ndarray  # (K,)
    dense_scale: np.ndarray  # (K,)
    bias: float
    platt_a: float
    platt_c: float
    #: Share of ironic captions in the training data: the answer when there is nothing to read.
    prior: float
    metadata: dict[str, Any] = field(default_factory=dict)

    # --- scoring -------------------------------------------------------------------------------
    def logit(self, text: str, vader: dict[str, float] | None = None) -> float:
        """Raw (uncalibrated) linear score of one caption (`vader`: its sentiment, if known)."""
        table = self._table
        num = 0.0
        sq = 0.0
        for term, c in Counter(terms(text)).items():
            entry = table.get(term)
            if entry is None:
                continue
            idf_sq, idf_w = entry
            if c == 1:  # most terms occur once: skip the log
                num += idf_w
                sq += idf_sq
            else:
                tf = 1.0 + math.log(c)
                num += tf * idf_w
                sq += tf * tf * idf_sq
        s = num / math.sqrt(sq) if sq > 0 else 0.0
        if self._uses_dense:
            z = (dense_features(text, vader) - self.dense_mean) / self.dense_scale
            s += float(z @ self.w_dense)
        return s + self.bias

    @property
    def _uses_dense(self) -> bool:
        # A model trained with dense_weight=0 skips computing them (a third of the time).
        return bool(np.any(self.w_dense))

    @cached_property
    def _table(self) -> dict[str, tuple[float, float]]:
        # term -> (idf², idf·w) as Python floats: one dict lookup per term and no numpy scalars
        # in the hot loop (numpy scalar indexing is ~10x slower than a tuple of floats).
        idf_sq = (self.idf * self.idf).tolist()
        idf_w = (self.idf * self.w_terms).tolist()
        return {t: (idf_sq[j], idf_w[j]) for t, j in self.vocab.items()}

    def raw_score(self, text: str, vader: dict[str, float] | None) -> float:
        return self.logit(text, vader)

    # --- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        vocab_list = [""] * len(self.vocab)
        for term, j in self.vocab.items():
            vocab_list[j] = term
        tensors = {
            "idf": self.idf.astype(np.float32),
            "w_terms": self.w_terms.astype(np.float32),
            "w_dense": self.w_dense.astype(np.float32),
            "dense_mean": self.dense_mean.astype(np.float32),
            "dense_scale": self.dense_scale.astype(np.float32),
        }
        meta = {
            "format": FORMAT,
            "model_id": self.model_id,
            "vocab": json.dumps(vocab_list, ensure_ascii=False, separators=(",", ":")),
            "dense_names": json.dumps(list(DENSE_NAMES)),
            "scalars": json.dumps(
                {
                    "bias": self.bias,
                    "platt_a": self.platt_a,
                    "platt_c": self.platt_c,
                    "prior": self.prior,
                }
            ),
            "info": json.dumps(self.metadata, ensure_ascii=False, sort_keys=True),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> SarcasmModel:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"caption model file not found: {path}. Train one with "
                "`backfire caption train --data DIR --out FILE`, or unset "
                "BACKFIRE_CAPTION_MODEL_FILE to use the shipped model."
            )
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                arrays = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # a corrupt or foreign file: say which and why
            raise ConfigError(f"cannot read caption model {path}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a {FORMAT} file (format={meta.get('format')!r})")
        if json.loads(meta["dense_names"]) != list(DENSE_NAMES):
            raise ConfigError(
                f"{path} was trained with other dense features than this code computes; retrain it"
            )
        vocab_list = json.loads(meta["vocab"])
        scalars = json.loads(meta["scalars"])
        model = cls(
            model_id=meta["model_id"],
            vocab={t: j for j, t in enumerate(vocab_list)},
            idf=arrays["idf"],
            w_terms=arrays["w_terms"],
            w_dense=arrays["w_dense"],
            dense_mean=arrays["dense_mean"],
            dense_scale=arrays["dense_scale"],
            bias=float(scalars["bias"]),
            platt_a=float(scalars["platt_a"]),
            platt_c=float(scalars["platt_c"]),
            prior=float(scalars["prior"]),
            metadata=json.loads(meta.get("info", "{}")),
        )
        model._table  # noqa: B018 - build the lookup table at load, not in the first request
        return model
