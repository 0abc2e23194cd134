"""Few-shot scenes (`backfire scenes fit`): teach a scene from a handful of labelled photos.

A linear probe on the image embeddings (L2-regularised logistic regression), blended with the
scene's zero-shot text direction (positive minus contrast prompt embeddings), as the CLIP
few-shot literature does: direction = normalise((1 − β)·text + β·probe), β chosen by
cross-validation among a few values (leave-one-out on small samples). With few examples β stays
near the text direction; where the prompts cannot express the scene at all, the probe carries
it. The blended direction is then Platt-scaled on the sample (smoothed targets), so its
probabilities mean something, and stored as a head (safetensors) beside the YAML.

`shots_table` reports, for 4/8/16/32 examples, held-out ranking of zero-shot vs few-shot over
repeated random draws: what a user can expect from labelling that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.evaluation.calibrate import folds_of, platt
from workers.evaluation.metrics import average_precision, r4, roc_auc

BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHOTS = (4, 8, 16, 32)
#: Inverse regularisation of the probe: strong, as a handful of examples in 512 dimensions
#: would be fitted exactly otherwise.
PROBE_C = 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else np.zeros_like(v)


def probe_direction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=PROBE_C, class_weight="balanced", max_iter=2000)
    lr.fit(x, y)
    return _unit(np.asarray(lr.coef_[0], dtype=np.float64))


def blend(text: np.ndarray | None, probe: np.ndarray, beta: float) -> np.ndarray:
    if text is None or not np.any(text):
        return probe
    return _unit((1.0 - beta) * _unit(text) + beta * probe)


@dataclass
class HeadFit:
    direction: np.ndarray
    blend: float
    #: Platt scaling of the margin x · direction: logit = a · margin + b.
    a: float
    b: float
    examples: int
    positives: int
    cv_auc: dict[float, float | None]


def choose_blend(x: np.ndarray, y: np.ndarray, text: np.ndarray | None, seed: int = 0) -> Any:
    """β with the best pooled held-out AUC (then average precision; ties go to the text)."""
    if text is None or not np.any(text):
        return 1.0, {1.0: None}
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if min(pos, neg) < 2:  # nothing to hold out while keeping both classes in training
        return 0.5, {b: None for b in BLENDS}
    held = {b: np.zeros(len(y)) for b in BLENDS}
    if len(y) <= 20:  # leave one out; the fold keeps both classes in training
        splits = [(np.arange(len(y)) != i, np.arange(len(y)) == i) for i in range(len(y))]
    else:
        fold = folds_of(y, min(5, pos, neg), seed)
        splits = [(fold != f, fold == f) for f in range(int(fold.max()) + 1)]
    for train, test in splits:
        if len(set(y[train].tolist())) < 2:
            continue
        probe = probe_direction(x[train], y[train])
        for b in BLENDS:
            held[b][test] = x[test] @ blend(text, probe, b)
    scores = {b: (roc_auc(y, held[b]) or 0.0, average_precision(y, held[b]) or 0.0)
              for b in BLENDS}  # fmt: skip
    best = max(BLENDS, key=lambda b: (round(scores[b][0], 6), round(scores[b][1], 6), -b))
    return best, {b: r4(scores[b][0]) for b in BLENDS}


def fit_head(x: np.ndarray, y: np.ndarray, text: np.ndarray | None, seed: int = 0) -> HeadFit:
    """The blended, Platt-scaled head. Needs one positive and one negative at least."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int8)
    beta, cv = choose_blend(x, y, text, seed)
    direction = blend(text, probe_direction(x, y), beta)
    a, b = platt(x @ direction, y)
    return HeadFit(direction.astype(np.float32), beta, a, b, len(y), int(y.sum()), cv)


def _draw(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray | None:
    """k training indices with both classes (in the sample's proportion, at least one each)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    kp = int(min(max(1, round(k * len(pos) / len(y))), k - 1, len(pos)))
    kn = k - kp
    if kn > len(neg) or kp < 1:
        return None
    return np.r_[rng.choice(pos, kp, replace=False), rng.choice(neg, kn, replace=False)]


def shots_table(
    x: np.ndarray, y: np.ndarray, text: np.ndarray | None, *, repeats: int = 10, seed: int = 0,
    shots: tuple[int, ...] = SHOTS,
) -> list[dict[str, Any]]:  # fmt: skip
    """Zero-shot vs few-shot on held-out posts for k training examples, over random draws."""
    rng = np.random.default_rng(seed)
    out = []
    zero = x @ text if text is not None and np.any(text) else np.zeros(len(y))
    for k in shots:
        if len(y) - k < 4:
            break
        zs, fs = [], []
        for _ in range(repeats):
            train = _draw(y, k, rng)
            if train is None:
                break
            test = np.setdiff1d(np.arange(len(y)), train)
            if len(set(y[test].tolist())) < 2:
                continue
            head = fit_head(x[train], y[train], text, seed)
            zs.append(roc_auc(y[test], zero[test]))
            fs.append(roc_auc(y[test], x[test] @ head.direction))
        zs_ok = [v for v in zs if v is not None]
        fs_ok = [v for v in fs if v is not None]
        if zs_ok and fs_ok:
            out.append({
                "shots": k, "draws": len(fs_ok), "held_out": int(len(y) - k),
                "zero_shot_auc": r4(float(np.mean(zs_ok))),
                "few_shot_auc": r4(float(np.mean(fs_ok))),
            })  # fmt: skip
    return out
