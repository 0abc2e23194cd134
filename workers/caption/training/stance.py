"""Fitting the stance head of a caption model (workers/caption/stance.py) over its encoder.

Recipe (model card, "Stance"): the anchors' embeddings (after `layer` layers of the model's own
encoder) averaged per class into prototypes; each caption's cosines to them, times `scale`, into
a multinomial logistic regression (C = `c`, classes balanced) fitted on the `fit` part of the
stance data (stance_data.parts): 3 x K + 3 numbers. The irony head is left exactly as it was,
so the irony figures (and SemEval's sealed test) cannot move; only the model id changes.
The held-out figures of both precisions the file runs in are stored in the head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from workers.caption.adapter import AdapterSarcasmModel
from workers.caption.calibrated import VALIDATED_PRECISIONS
from workers.caption.stance import StanceHead
from workers.caption.training.stance_data import PARTS, StanceRows, parts, stance_figures
from workers.config import MODEL_CARDS_DIR
from workers.domain import STANCES
from workers.errors import ConfigError

ANCHORS_FILE = MODEL_CARDS_DIR / "caption-stance-anchors.yaml"


@dataclass(frozen=True)
class StanceTrainConfig:
    layer: int = 0  # 0 = the encoder's last layer
    scale: float = 10.0
    c: float = 1.0


def load_anchors(path: Path = ANCHORS_FILE) -> tuple[str, dict[str, list[str]]]:
    """(target, anchors by prototype name); the three classes must each have anchors."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        target, anchors = str(raw.get("target", "police")), dict(raw["anchors"])
    except (OSError, yaml.YAMLError, KeyError, AttributeError, TypeError) as exc:
        raise ConfigError(f"cannot read stance anchors {path}: {exc}") from exc
    missing = [s for s in STANCES if not anchors.get(s)]
    if missing:
        raise ConfigError(f"{path}: no anchors for {', '.join(missing)}")
    return target, {k: [str(t) for t in v] for k, v in anchors.items()}


def prototypes(model: AdapterSarcasmModel, anchors: dict[str, list[str]], layer: int) -> np.ndarray:
    rows = []
    for name in anchors:
        e = model.pooled(anchors[name], layer)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = e.mean(axis=0)
        rows.append(m / np.linalg.norm(m))
    return np.stack(rows).astype(np.float32)


def fit_calibration(features: np.ndarray, y: np.ndarray, scale: float, c: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    fit.fit(scale * features, y)
    weight = np.zeros((3, features.shape[1]))
    bias = np.full(3, -30.0)  # a class absent from the data stays (nearly) impossible
    for row, k in enumerate(fit.classes_):
        weight[k], bias[k] = fit.coef_[row], fit.intercept_[row]
    if len(fit.classes_) == 2:  # sklearn's binary form: one row for the second class
        a, b = fit.classes_
        weight[a], bias[a] = -fit.coef_[0] / 2, -fit.intercept_[0] / 2
        weight[b], bias[b] = fit.coef_[0] / 2, fit.intercept_[0] / 2
    return weight.astype(np.float32), bias.astype(np.float32)


def heldout_figures(model: AdapterSarcasmModel, head: StanceHead, rows: StanceRows,
                    masks: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for part in PARTS:
        sub = rows.subset(masks[part])
        if len(sub):
            probs = head.probabilities(model.pooled(sub.texts, head.layer))
            out[part] = {"source": Path(rows.source).name,
                         **stance_figures(sub.y(), probs).as_dict()}
    return out


def train_stance_head(
    model: AdapterSarcasmModel,
    rows: StanceRows,
    cfg: StanceTrainConfig = StanceTrainConfig(),
    anchors_file: Path = ANCHORS_FILE,
    progress: Callable[[str], None] = lambda _m: None,
) -> AdapterSarcasmModel:
    """A copy of the float32 `model` with a stance head fitted on `rows`' `fit` part; its
    held-out figures (float32 and int8) are stored in the head's `info`."""
    if model.precision != "float32":
        raise ValueError("fit a stance head on the float32 model (load it with precision float32)")
    layer = cfg.layer or model.encoder.shape.layers
    if not 1 <= layer <= model.encoder.shape.layers:
        raise ValueError(f"--layer must be in 1..{model.encoder.shape.layers}, not {layer}")
    target, anchors = load_anchors(anchors_file)
    masks = parts(rows)
    fit = rows.subset(masks["fit"])
    y = fit.y()
    if len(set(y.tolist())) < 2:
        raise ValueError("the stance data's fitted part needs at least two classes")
    progress(f"prototypes from {sum(map(len, anchors.values()))} anchors, layer {layer}")
    protos = prototypes(model, anchors, layer)
    head = StanceHead(protos, np.zeros((3, len(anchors)), np.float32), np.zeros(3, np.float32),
                      layer, tuple(anchors), cfg.scale, target, anchors)
    progress(f"embedding {len(fit)} captions to fit the calibration on")
    head.weight, head.bias = fit_calibration(head.features(model.pooled(fit.texts, layer)), y,
                                             cfg.scale, cfg.c)
    irony_id = model.model_id.split("+stance-")[0]
    out = replace(model, stance_head=head, metadata=dict(model.metadata))
    head.info = {
        "train": {"source": Path(rows.source).name, "fitted_on": len(fit),
                  "counts": {s: int((y == k).sum()) for k, s in enumerate(STANCES)}},
        "config": {"layer": layer, "scale": cfg.scale, "c": cfg.c},
    }
    for precision in VALIDATED_PRECISIONS:
        progress(f"held-out stance figures, {precision}")
        run = out
        if precision != "float32":
            run = replace(out, encoder=copy.deepcopy(out.encoder))
            run.use_precision(precision)
        key = "heldout" if precision == "float32" else f"heldout_{precision}"
        head.info[key] = heldout_figures(run, head, rows, masks)
    out.model_id = f"{irony_id}+stance-{head.digest()[:8]}"
    out.clear_cache()
    return out
