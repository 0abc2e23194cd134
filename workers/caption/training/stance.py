"""Fitting the stance head of a caption model (workers/caption/stance.py) over its encoder.

Recipe (model card, "Stance"): the anchors' embeddings (after `layer` layers of the model's own
encoder, run in int8 as scoring runs it) averaged per class into prototypes; each caption's
cosines to them, times `scale`, into
a multinomial logistic regression (C = `c`, classes balanced, hashtag-labelled rows weighted
`hashtag_weight` against 1 for a human-labelled one) fitted on the `fit` part of the stance data
(stance_data.parts): 3 x K + 3 numbers. The irony head is left exactly as it was,
so the irony figures (and SemEval's sealed test) cannot move; only the model id changes.
The held-out figures of both precisions the file runs in are stored in the head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
    #: Encoder depth whose pooled states the head reads (0 = the last). 11 of v3's 12 was the
    #: best by 5-fold cross-validation on the human-labelled rows (model card, "Stance").
    layer: int = 11
    #: Weight of a hashtag-labelled row in the calibration (a human-labelled row weighs 1). At
    #: full weight the three-number-a-class calibration learns the two events (Brooklyn Center
    #: critical, Ferguson supportive): human-row ROC-AUC fell to 0.82 (cross-validated), at 0.02
    #: they are a weak prior beside the ~200 human rows: 0.93.
    hashtag_weight: float = 0.02
    scale: float = 10.0
    c: float = 1.0
    #: The precision the prototypes and the calibration's features are read in.
    precision: str = "int8"


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


def fit_calibration(features: np.ndarray, y: np.ndarray, scale: float, c: float,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    fit.fit(scale * features, y, sample_weight=weights)
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
    """A copy of the float32 `model` with a stance head fitted on `rows`' `fit` part, read in
    `cfg.precision` (int8 by default: what scoring runs in); its held-out figures in float32 and
    int8 are stored in the head's `info`."""
    if model.precision != "float32":
        raise ValueError("give the float32 model (load it with precision float32)")
    if cfg.precision not in VALIDATED_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(VALIDATED_PRECISIONS)}")
    layer = cfg.layer or model.encoder.shape.layers
    if not 1 <= layer <= model.encoder.shape.layers:
        raise ValueError(f"--layer must be in 1..{model.encoder.shape.layers}, not {layer}")
    target, anchors = load_anchors(anchors_file)
    masks = parts(rows)
    fit = rows.subset(masks["fit"])
    y = fit.y()
    if len(set(y.tolist())) < 2:
        raise ValueError("the stance data's fitted part needs at least two classes")
    runs = {"float32": model}
    for precision in VALIDATED_PRECISIONS:
        if precision != "float32":  # a copy: `model` itself stays float32
            runs[precision] = replace(model, encoder=copy.deepcopy(model.encoder))
            runs[precision].use_precision(precision)
    reader = runs[cfg.precision]
    progress(f"prototypes from {sum(map(len, anchors.values()))} anchors, layer {layer}, "
             f"{cfg.precision}")
    protos = prototypes(reader, anchors, layer)
    head = StanceHead(protos, np.zeros((3, len(anchors)), np.float32), np.zeros(3, np.float32),
                      layer, tuple(anchors), cfg.scale, target, anchors)
    progress(f"embedding {len(fit)} captions to fit the calibration on")
    weights = np.array([1.0 if src == "human" else cfg.hashtag_weight
                        for src in fit.label_sources])
    head.weight, head.bias = fit_calibration(head.features(reader.pooled(fit.texts, layer)), y,
                                             cfg.scale, cfg.c, weights)
    head.info = {
        "train": {"source": Path(rows.source).name, "fitted_on": len(fit),
                  "counts": {s: int((y == k).sum()) for k, s in enumerate(STANCES)}},
        "config": asdict(replace(cfg, layer=layer)),
    }
    for precision, run in runs.items():
        progress(f"held-out stance figures, {precision}")
        key = "heldout" if precision == "float32" else f"heldout_{precision}"
        head.info[key] = heldout_figures(run, head, rows, masks)
    out = replace(model, stance_head=head, metadata=dict(model.metadata))
    out.model_id = f"{model.model_id.split('+stance-')[0]}+stance-{head.digest()[:8]}"
    return out
