"""How right the pipeline is on a labelled sample: per-scene ranking, threshold and calibration
figures, the verdict confusion matrix, the caption's irony, and the worst mistakes.

The result is one JSON-ready dict: `backfire eval --json` prints it and the HTML page is drawn
from it, so the page's numbers are the JSON's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from workers.domain import VERDICTS
from workers.evaluation.collect import Collected, scene_labels
from workers.evaluation.labels import LabelledPost, LabelledSet
from workers.evaluation.metrics import binary_report, confusion_report, pr_curve, r4, reliability

if TYPE_CHECKING:
    from workers.scoring.pipeline import Pipeline

#: Points kept of each precision-recall curve (the page draws them; the JSON carries them).
CURVE_POINTS = 120


def _thin(points: list[tuple[float, float, float]], keep: int) -> list[list[float | None]]:
    if len(points) > keep:
        idx = np.unique(np.linspace(0, len(points) - 1, keep).round().astype(int))
        points = [points[i] for i in idx]
    return [[r4(r), r4(p), r4(t)] for r, p, t in points]


def _post_ref(lp: LabelledPost, sha: str | None) -> dict[str, Any]:
    return {
        "post_id": lp.post.post_id, "location": lp.location, "image": lp.post.image,
        "media_sha256": sha, "caption": lp.post.caption,
    }  # fmt: skip


def evaluate(
    labelled: LabelledSet,
    collected: Collected,
    pipeline: Pipeline,
    *,
    rounds: int = 200,
    seed: int = 0,
    max_mistakes: int = 12,
) -> dict[str, Any]:
    scorer = pipeline.scenes
    names = scorer.names
    margins = scorer.margins(collected.embeddings) if collected.posts else np.zeros((0, 0))
    probs = scorer.probabilities_from_margins(margins) if collected.posts else margins
    y, mask = scene_labels(collected.posts, names)

    scenes: dict[str, Any] = {}
    mistakes: list[tuple[float, dict[str, Any]]] = []
    for j, name in enumerate(names):
        rows = mask[:, j]
        if not rows.any():
            continue
        thr = scorer.thresholds[name]
        yj, pj = y[rows, j], probs[rows, j]
        rep = binary_report(yj, pj, thr, rounds=rounds, seed=seed + j)
        rep["group"] = scorer.prompts.scenes[name].group
        rep["reliability"] = [
            {k: (r4(v) if isinstance(v, float) else v) for k, v in b.items()}
            for b in reliability(yj, pj)
        ]
        rep["pr_curve"] = _thin(pr_curve(yj, pj), CURVE_POINTS)
        scenes[name] = rep
        for i in np.flatnonzero(rows):
            label, p = int(y[i, j]), float(probs[i, j])
            if (p >= thr) != bool(label):
                mistakes.append((abs(label - p), {
                    **_post_ref(collected.posts[i], collected.shas[i]), "kind": "scene",
                    "scene": name, "label": bool(label), "p": r4(p), "threshold": r4(thr),
                }))  # fmt: skip

    verdicts, captions = _verdicts_and_captions(collected, probs, pipeline, mistakes, rounds, seed)
    mistakes.sort(key=lambda m: (-m[0], m[1]["post_id"]))
    return {
        "source": labelled.source,
        "model_id": pipeline.encoder.model_id,
        "pipeline_version": pipeline.version,
        "prompt_set": scorer.prompts.hash,
        "calibrated_for": (
            scorer.prompts.calibration.model_id if scorer.prompts.calibration else None
        ),
        "posts": {
            "labelled": len(labelled.posts), "scored": len(collected.posts),
            "failed": len(collected.failed), "unlabelled": labelled.unlabelled,
            "skipped": len(labelled.skipped),
        },  # fmt: skip
        "failed": [
            {"post_id": lp.post.post_id, "location": lp.location, "error": err}
            for lp, err in collected.failed[:50]
        ],
        "scenes": scenes,
        "verdicts": verdicts,
        "captions": captions,
        "mistakes": [m for _, m in mistakes[:max_mistakes]],
    }


def _verdicts_and_captions(
    collected: Collected, probs: np.ndarray, pipeline: Pipeline,
    mistakes: list[tuple[float, dict[str, Any]]], rounds: int, seed: int,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:  # fmt: skip
    """Verdicts (and caption scores) for the posts labelled with a verdict or irony: only those
    pay for the caption model."""
    idx = [
        i for i, lp in enumerate(collected.posts)
        if lp.labels.verdict is not None or lp.labels.ironic is not None
    ]  # fmt: skip
    if not idx:
        return None, None
    names = pipeline.scenes.names
    results = pipeline.results(
        [collected.posts[i].post for i in idx],
        [dict(zip(names, map(float, probs[i]), strict=True)) for i in idx],
        [collected.shas[i] for i in idx],
    )
    truth, pred = [], []
    ironic_y, ironic_p = [], []
    for i, r in zip(idx, results, strict=True):
        lp = collected.posts[i]
        assert r.verdict is not None and r.caption is not None
        if lp.labels.verdict is not None:
            truth.append(lp.labels.verdict)
            pred.append(r.verdict.label)
            if r.verdict.label != lp.labels.verdict:
                mistakes.append((r.verdict.confidence, {
                    **_post_ref(lp, collected.shas[i]), "kind": "verdict",
                    "label": lp.labels.verdict, "predicted": r.verdict.label,
                    "confidence": r4(r.verdict.confidence), "reasons": list(r.verdict.reasons),
                }))  # fmt: skip
        if lp.labels.ironic is not None:
            ironic_y.append(int(lp.labels.ironic))
            ironic_p.append(r.caption.sarcasm)
    verdicts = confusion_report(truth, pred, VERDICTS) if truth else None
    captions = None
    if ironic_y:
        captions = {
            "model": pipeline.caption_scorer.model_id,
            "ironic": binary_report(ironic_y, ironic_p, 0.5, rounds=rounds, seed=seed + 99),
        }
    return verdicts, captions
