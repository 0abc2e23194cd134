"""Evaluation figures for a binary irony classifier: the official SemEval-2018 3A metric (F1 of
the ironic class), macro-F1, accuracy, the confusion matrix and the expected calibration error."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Equal-width probability bins for the expected calibration error.
ECE_BINS = 10

@dataclass(frozen=True)
class EvalFigures:
    n: int
    ironic_f1: float
    macro_f1: float
    accuracy: float
    ece: float
    #: [[true 0 -> pred 0, true 0 -> pred 1], [true 1 -> pred 0, true 1 -> pred 1]]
    confusion: tuple[tuple[int, int], tuple[int, int]]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = [list(r) for r in self.confusion]
        return d


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_bins (share of items) × |observed ironic rate − mean predicted probability|."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(float(y[m].mean()) - float(p[m].mean()))
    return float(ece)


def evaluate(labels: list[int] | np.ndarray, probs: list[float] | np.ndarray) -> EvalFigures:
    """Figures at the decision threshold 0.5 of the calibrated probability."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= 0.5).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    f1_pos, f1_neg = _f1(tp, fp, fn), _f1(tn, fn, fp)
    return EvalFigures(
        n=len(y),
        ironic_f1=round(f1_pos, 4),
        macro_f1=round((f1_pos + f1_neg) / 2, 4),
        accuracy=round((tp + tn) / max(1, len(y)), 4),
        ece=round(expected_calibration_error(y, p), 4),
        confusion=((tn, fp), (fn, tp)),
    )
