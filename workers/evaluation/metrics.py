"""Metrics of scores against labels, in numpy (fast enough to bootstrap: a few hundred
resamples of 2,000 posts × 8 scenes take about a second).

Definitions follow scikit-learn's (tests compare them): ROC-AUC from average ranks (ties count
half), average precision as Σ (Rₖ − Rₖ₋₁)·Pₖ over distinct thresholds, F1 of `p ≥ threshold`.
Expected calibration error: 10 equal-width probability bins, |fraction positive − mean
probability| weighted by the bin's share of posts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BINS = 10
#: Below this many labelled posts a figure comes with a bootstrap 95 % interval.
BOOTSTRAP_BELOW = 5000


def _arrays(y: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y, dtype=np.int8).reshape(-1), np.asarray(s, dtype=np.float64).reshape(-1)


def roc_auc(y: Any, s: Any) -> float | None:
    y, s = _arrays(y, s)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return None
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, threshold) at each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps, s_sorted[last]


def average_precision(y: Any, s: Any) -> float | None:
    y, s = _arrays(y, s)
    pos = int(y.sum())
    if pos == 0:
        return None
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_curve(y: Any, s: Any) -> list[tuple[float, float, float]]:
    """(recall, precision, threshold) points, highest threshold first."""
    y, s = _arrays(y, s)
    pos = int(y.sum())
    if pos == 0:
        return []
    tps, fps, thr = _curve(y, s)
    return [
        (float(r), float(p), float(t))
        for r, p, t in zip(tps / pos, tps / (tps + fps), thr, strict=True)
    ]


def prf(y: Any, p: Any, threshold: float) -> dict[str, float]:
    y, p = _arrays(y, p)
    pred = p >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def best_f1_threshold(y: Any, p: Any) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of `p ≥ threshold`. The threshold is half-way between the
    deciding score and the next lower one, so it survives rounding and small shifts."""
    y, p = _arrays(y, p)
    pos = int(y.sum())
    if pos == 0 or len(y) == 0:
        return 0.5, 0.0
    tps, fps, thr = _curve(y, p)
    f1 = 2 * tps / (2 * tps + fps + (pos - tps))
    k = int(np.argmax(f1))
    lower = thr[k + 1] if k + 1 < len(thr) else 0.0
    return float((thr[k] + lower) / 2.0), float(f1[k])


def threshold_for_precision(y: Any, p: Any, target: float) -> tuple[float, bool]:
    """The lowest threshold whose precision reaches `target` (most recall); (best-F1 threshold,
    False) when no threshold does."""
    y, p = _arrays(y, p)
    pos = int(y.sum())
    if pos:
        tps, fps, thr = _curve(y, p)
        ok = np.flatnonzero(tps / (tps + fps) >= target)
        if len(ok):
            k = int(ok[-1])
            lower = thr[k + 1] if k + 1 < len(thr) else 0.0
            return float((thr[k] + lower) / 2.0), True
    return best_f1_threshold(y, p)[0], False


def reliability(y: Any, p: Any, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width bin: its range, posts, mean probability and fraction positive."""
    y, p = _arrays(y, p)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        out.append({
            "lo": b / bins, "hi": (b + 1) / bins, "n": n,
            "mean_p": float(p[mask].mean()) if n else 0.0,
            "frac_pos": float(y[mask].mean()) if n else 0.0,
        })  # fmt: skip
    return out


def ece(y: Any, p: Any, bins: int = BINS) -> float | None:
    y, p = _arrays(y, p)
    if len(y) == 0:
        return None
    total = sum(b["n"] * abs(b["frac_pos"] - b["mean_p"]) for b in reliability(y, p, bins))
    return float(total / len(y))


def brier(y: Any, p: Any) -> float | None:
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2)) if len(y) else None


def bootstrap(
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float | None]],
    y: np.ndarray, p: np.ndarray, rounds: int, seed: int = 0,
) -> dict[str, list[float] | None]:  # fmt: skip
    """Percentile 95 % intervals of each figure over `rounds` resamples of the posts."""
    rng = np.random.default_rng(seed)
    n = len(y)
    values: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        i = rng.integers(0, n, n)
        for k, fn in fns.items():
            v = fn(y[i], p[i])
            if v is not None:
                values[k].append(v)
    return {
        k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) >= 20 else None
        for k, v in values.items()
    }


def r4(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def binary_report(
    y: Any, p: Any, threshold: float, *, rounds: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Every figure `backfire eval` prints for one scene (or the caption's irony)."""
    y, p = _arrays(y, p)
    pos = int(y.sum())
    at = prf(y, p, threshold)
    best_thr, best_f1 = best_f1_threshold(y, p)
    out: dict[str, Any] = {
        "labelled": len(y), "positives": pos,
        "roc_auc": r4(roc_auc(y, p)), "average_precision": r4(average_precision(y, p)),
        "threshold": r4(threshold), "precision": r4(at["precision"]),
        "recall": r4(at["recall"]), "f1": r4(at["f1"]),
        "best_f1_threshold": r4(best_thr), "best_f1": r4(best_f1),
        "ece": r4(ece(y, p)), "brier": r4(brier(y, p)),
    }  # fmt: skip
    if rounds and 0 < len(y) < BOOTSTRAP_BELOW:
        ci = bootstrap(
            {"roc_auc": roc_auc, "average_precision": average_precision,
             "f1": lambda a, b: prf(a, b, threshold)["f1"], "ece": ece},
            y, p, rounds, seed,
        )  # fmt: skip
        out["ci95"] = {k: [r4(v[0]), r4(v[1])] if v else None for k, v in ci.items()}
    return out


def confusion_report(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Confusion matrix (rows: label, columns: predicted), per-class P/R/F1, macro F1 over the
    classes that occur in the labels or the predictions."""
    index = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=int)
    for t, q in zip(truth, pred, strict=True):
        if t in index and q in index:
            m[index[t], index[q]] += 1
    per: dict[str, dict[str, float | int | None]] = {}
    f1s = []
    for c, i in index.items():
        tp = int(m[i, i])
        fp = int(m[:, i].sum() - tp)
        fn = int(m[i, :].sum() - tp)
        support = int(m[i, :].sum())
        if support == 0 and tp + fp == 0:
            per[c] = {"support": 0, "precision": None, "recall": None, "f1": None}
            continue
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        f1s.append(f1)
        per[c] = {
            "support": support,
            "precision": r4(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": r4(tp / (tp + fn)) if tp + fn else 0.0,
            "f1": r4(f1),
        }
    n = int(m.sum())
    return {
        "labelled": n,
        "labels": list(labels),
        "confusion": m.tolist(),
        "per_class": per,
        "macro_f1": r4(float(np.mean(f1s))) if f1s else None,
        "accuracy": r4(float(np.trace(m)) / n) if n else None,
    }
