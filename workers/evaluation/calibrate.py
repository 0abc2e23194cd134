"""Per-scene calibration on a labelled sample (`backfire calibrate`).

For each scene, Platt scaling on the scene's current logit z = logit_scale · scale · margin +
bias: p = sigmoid(a·z + b), i.e. a new `scale` (× a) and `bias` (a·bias + b) for the YAML.
Isotonic regression on top only where there are many positives, and only if it wins under
cross-validation. The threshold is the lowest reaching `target_precision` (most recall), else
the best-F1 one.

The "after" figures are out-of-sample: k-fold cross-validation, stratified, where each fold's
scale, bias and threshold are fitted on the other folds and judged on it. "Before" is the
current YAML on the same posts (nothing fitted, so nothing to hold out). Scenes with too few
labelled positives (or negatives) are left as they are, and the result says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from workers.evaluation.metrics import brier, ece, r4, roc_auc, threshold_for_precision
from workers.scenes.prompts import Calibration, PromptSet, Scene
from workers.scenes.scorer import sigmoid

MIN_POSITIVES = 5
MIN_NEGATIVES = 5
ISOTONIC_MIN_POSITIVES = 100
#: Isotonic replaces Platt only if it lowers the cross-validated Brier score by this much.
ISOTONIC_GAIN = 0.002


def platt(z: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a·z + b) by Newton's method on the log loss (step halved until the
    loss falls, so it converges from any start), with Platt's smoothed targets ((N₊+1)/(N₊+2)
    and 1/(N₋+2)) so a small or separable sample gets finite values."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pos, neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))

    def loss(a: float, b: float) -> float:
        f = a * z + b
        # log(1 + e^f) − t·f, computed stably
        return float(np.sum(np.logaddexp(0.0, f) - t * f))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iters):
        p = sigmoid(a * z + b)
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        step = np.linalg.solve(h + np.eye(2) * 1e-9, g)
        scale = 1.0
        while scale > 1e-8:
            na, nb = a - scale * step[0], b - scale * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            scale /= 2
        else:
            break
        done = abs(current - new) < 1e-12 * max(1.0, abs(current))
        a, b, current = na, nb, new
        if done:
            break
    return float(a), float(b)


def isotonic_knots(p: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    xs, ys = iso.X_thresholds_, iso.y_thresholds_
    knots = [(round(float(x), 6), round(float(v), 6)) for x, v in zip(xs, ys, strict=True)]
    # Guarantee the validator's shape (increasing, two or more), whatever the rounding did.
    out: list[tuple[float, float]] = []
    for x, v in knots:
        if out and x <= out[-1][0]:
            continue
        out.append((x, max(v, out[-1][1]) if out else v))
    if len(out) < 2:
        out = [(0.0, out[0][1] if out else 0.0), (1.0, out[0][1] if out else 0.0)]
    return out


def folds_of(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per sample, stratified: positives and negatives dealt out in turn."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


@dataclass
class SceneFit:
    name: str
    scene: Scene
    method: str
    reason: str | None = None
    labelled: int = 0
    positives: int = 0
    folds: int = 0
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.method != "unchanged"

    def provenance(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "method": self.method, "labelled": self.labelled, "positives": self.positives,
        }  # fmt: skip
        if self.reason:
            d["reason"] = self.reason
        if self.changed:
            d.update(folds=self.folds, before=self.before, after_cv=self.after)
        return d


def _figures(y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
    tp = float(np.sum(decided & (y == 1)))
    fp = float(np.sum(decided & (y == 0)))
    fn = float(np.sum(~decided & (y == 1)))
    return {
        "ece": r4(ece(y, p)), "brier": r4(brier(y, p)), "roc_auc": r4(roc_auc(y, p)),
        "precision": r4(tp / (tp + fp) if tp + fp else 0.0),
        "recall": r4(tp / (tp + fn) if tp + fn else 0.0),
        "f1": r4(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0),
    }  # fmt: skip


def _fit(
    z: np.ndarray, y: np.ndarray, target: float | None, isotonic: bool
) -> tuple[float, float, list[tuple[float, float]] | None, float]:
    """(a, b, isotonic knots or None, threshold) fitted on (z, y)."""
    a, b = platt(z, y)
    p = sigmoid(a * z + b)
    knots = None
    if isotonic:
        knots = isotonic_knots(p, y)
        xs, ys = zip(*knots, strict=True)
        p = np.interp(p, xs, ys)
    if target is not None:
        thr, _ = threshold_for_precision(y, p, target)
    else:
        from workers.evaluation.metrics import best_f1_threshold

        thr = best_f1_threshold(y, p)[0]
    return a, b, knots, float(min(max(thr, 0.0), 1.0))


def _apply(z: np.ndarray, a: float, b: float, knots: list[tuple[float, float]] | None) -> Any:
    p = sigmoid(a * z + b)
    if knots:
        xs, ys = zip(*knots, strict=True)
        p = np.interp(p, xs, ys)
    return p


def calibrate_scene(
    name: str, scene: Scene, margins: np.ndarray, y: np.ndarray, logit_scale: float,
    *, target_precision: float | None = None, folds: int = 5, seed: int = 0,
) -> SceneFit:  # fmt: skip
    y = np.asarray(y, dtype=np.int8)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    fit = SceneFit(name, scene, "unchanged", labelled=len(y), positives=pos)
    if pos < MIN_POSITIVES or neg < MIN_NEGATIVES:
        fit.reason = (
            f"left as it is: {pos} labelled positive(s) and {neg} negative(s); calibration "
            f"needs at least {MIN_POSITIVES} of each"
        )
        return fit
    z = logit_scale * scene.scale * np.asarray(margins, dtype=np.float64) + scene.bias
    before_p = sigmoid(z)
    if scene.isotonic:
        before_p = _apply(z, 1.0, 0.0, scene.isotonic)
    fit.before = _figures(y, before_p, before_p >= scene.threshold)
    fit.before["threshold"] = r4(scene.threshold)

    k = int(min(folds, pos, neg))
    fit.folds = k
    fold = folds_of(y, k, seed)
    use_iso = pos >= ISOTONIC_MIN_POSITIVES and neg >= ISOTONIC_MIN_POSITIVES
    oof = {False: np.zeros(len(y)), True: np.zeros(len(y))}
    decided = {False: np.zeros(len(y), bool), True: np.zeros(len(y), bool)}
    platt_slopes = []
    for f in range(k):
        train, test = fold != f, fold == f
        for iso in (False, True) if use_iso else (False,):
            a, b, knots, thr = _fit(z[train], y[train], target_precision, iso)
            if not iso:
                platt_slopes.append(a)
            oof[iso][test] = _apply(z[test], a, b, knots)
            decided[iso][test] = oof[iso][test] >= thr
    iso = bool(
        use_iso and (brier(y, oof[True]) or 0.0) + ISOTONIC_GAIN < (brier(y, oof[False]) or 0.0)
    )
    a, b, knots, thr = _fit(z, y, target_precision, iso)
    if a <= 0 or min(platt_slopes) <= 0:
        fit.reason = (
            "left as it is: the prompts' margin does not rank this scene's photos (a higher "
            "margin is not more often the scene); no scale and bias can fix that: teach it "
            "with `backfire scenes fit`"
        )
        return fit
    fit.after = _figures(y, oof[iso], decided[iso])
    fit.after["threshold"] = r4(thr)
    fit.method = "platt+isotonic" if iso else "platt"
    fit.scene = Scene.model_validate({
        **scene.model_dump(), "scale": max(round(scene.scale * a, 6), 1e-6),
        "bias": round(a * scene.bias + b, 6), "threshold": round(thr, 4), "isotonic": knots,
    })  # fmt: skip
    return fit


def calibrated_prompt_set(
    prompts: PromptSet, fits: list[SceneFit], *, model_id: str, source: str, samples: int,
    target_precision: float | None,
) -> PromptSet:  # fmt: skip
    scenes = dict(prompts.scenes)
    for f in fits:
        scenes[f.name] = f.scene
    provenance = dict(prompts.calibration.scenes) if prompts.calibration else {}
    for f in fits:
        provenance[f.name] = {
            "tool": "calibrate",
            "threshold_rule": (
                f"target precision {target_precision}" if target_precision is not None
                else "best F1"
            ),
            **f.provenance(),
        }  # fmt: skip
    cal = Calibration(
        model_id=model_id, fitted_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool="backfire calibrate", source=source, samples=samples, scenes=provenance,
    )  # fmt: skip
    return prompts.replaced(scenes=scenes, calibration=cal)
