"""Two image towers of one model (float32 and int8) on the same labelled posts: how often they
give the same verdict, and what the cheaper one costs per scene in ranking (ROC-AUC).

int8 runs the image tower 2-3x faster, at a published cost of about 1.5 points of zero-shot
accuracy for ViT-B/32; whether that cost matters is a question about a team's own posts, so it
is answered on them: `backfire eval labelled.csv --compare-precision int8`.

Both sides share the caption scores (read once) and the verdict policy, so every difference
comes from the image side. Agreement is over every post both sides scored, labelled or not; AUC
differences (other − base) need the scene labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from workers.domain import VERDICTS
from workers.evaluation.collect import Collected, scene_labels
from workers.evaluation.metrics import confusion_report, r4, roc_auc

if TYPE_CHECKING:
    from workers.scoring.pipeline import Pipeline

#: Posts whose verdicts differ listed in the result (the count covers all).
MAX_LISTED = 20


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else r4(b - a)


def compare(
    base: Collected, base_pipe: Pipeline, base_precision: str,
    other: Collected, other_pipe: Pipeline, other_precision: str,
) -> dict[str, Any]:  # fmt: skip
    """The comparison, JSON-ready: `base` and `other` are the same labelled set collected
    through each pipeline's encoder."""
    where = {id(lp): i for i, lp in enumerate(other.posts)}
    pairs = [(i, where[id(lp)]) for i, lp in enumerate(base.posts) if id(lp) in where]
    bi = np.array([i for i, _ in pairs], dtype=int)
    oi = np.array([j for _, j in pairs], dtype=int)
    posts = [base.posts[i] for i in bi]
    sides = {
        "base": {"precision": base_precision, "model_id": base_pipe.encoder.model_id,
                 "pipeline_version": base_pipe.version},
        "other": {"precision": other_precision, "model_id": other_pipe.encoder.model_id,
                  "pipeline_version": other_pipe.version},
    }  # fmt: skip
    if not pairs:
        return {**sides, "posts": 0, "verdict_agreement": None, "verdicts_differing": 0,
                "differing": [], "embedding_cosine": None, "verdict_macro_f1": None,
                "scenes": {}}  # fmt: skip
    xa, xb = base.embeddings[bi], other.embeddings[oi]
    cosine = (xa * xb).sum(axis=1) / np.maximum(
        np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1), 1e-12
    )
    pa = base_pipe.scenes.probabilities(xa)
    pb = other_pipe.scenes.probabilities(xb)
    names = base_pipe.scenes.names
    if other_pipe.scenes.names != names:
        raise ValueError("both sides must score the same scenes")
    y, mask = scene_labels(posts, names)
    scenes: dict[str, Any] = {}
    for j, name in enumerate(names):
        thr_a, thr_b = base_pipe.scenes.thresholds[name], other_pipe.scenes.thresholds[name]
        rows = mask[:, j]
        auc_a = roc_auc(y[rows, j], pa[rows, j]) if rows.any() else None
        auc_b = roc_auc(y[rows, j], pb[rows, j]) if rows.any() else None
        scenes[name] = {
            "labelled": int(rows.sum()), "positives": int(y[rows, j].sum()),
            "roc_auc": r4(auc_a), "roc_auc_other": r4(auc_b),
            "auc_difference": _difference(auc_a, auc_b),
            # Label-free: the share of posts on the same side of the threshold.
            "decision_agreement": r4(float(np.mean((pa[:, j] >= thr_a) == (pb[:, j] >= thr_b)))),
            "mean_abs_p_difference": r4(float(np.mean(np.abs(pa[:, j] - pb[:, j])))),
        }  # fmt: skip

    # One caption pass for both sides: they differ in the image only.
    captions = base_pipe.caption_scorer.score_batch([lp.post.caption or "" for lp in posts])
    va = [base_pipe.policy.judge(_row(names, pa[k]), c).label for k, c in enumerate(captions)]
    vb = [other_pipe.policy.judge(_row(names, pb[k]), c).label for k, c in enumerate(captions)]
    differing = [
        {"post_id": lp.post.post_id, "location": lp.location, "base": a, "other": b}
        for lp, a, b in zip(posts, va, vb, strict=True) if a != b
    ]  # fmt: skip
    truth = [(k, lp.labels.verdict) for k, lp in enumerate(posts) if lp.labels.verdict]
    macro = None
    if truth:
        fa = confusion_report([t for _, t in truth], [va[k] for k, _ in truth], VERDICTS)
        fb = confusion_report([t for _, t in truth], [vb[k] for k, _ in truth], VERDICTS)
        macro = {"labelled": len(truth), "base": fa["macro_f1"], "other": fb["macro_f1"],
                 "difference": _difference(fa["macro_f1"], fb["macro_f1"])}  # fmt: skip
    return {
        **sides,
        "posts": len(posts),
        "verdict_agreement": r4(1.0 - len(differing) / len(posts)),
        "verdicts_differing": len(differing),
        "differing": differing[:MAX_LISTED],
        "embedding_cosine": {"min": r4(float(cosine.min())), "mean": r4(float(cosine.mean()))},
        "verdict_macro_f1": macro,
        "scenes": scenes,
    }


def _row(names: list[str], probs: np.ndarray) -> dict[str, float]:
    return dict(zip(names, map(float, probs), strict=True))
