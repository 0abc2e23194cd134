"""Which verdicts a person should check: weak or conflicting evidence.

A post needs review when a scene that drives verdicts (force, friendly) sits close to its
threshold (a small change of photo or calibration would flip it), when a force scene is seen
under a caption that reads as sincere (no irony, warm words: either a supportive post about an
arrest or a backlash post the caption hides), or when the verdict's confidence is below the
policy's level. Those are the posts a team checks by hand, and the ones worth labelling for
`backfire calibrate`. The levels are data in `model_cards/verdict.yaml` (`review:`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from workers.domain import CaptionScores, Verdict


class ReviewRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A force or friendly scene within this distance of its threshold.
    scene_margin: float = Field(0.05, ge=0.0, le=0.5)
    #: Force scene over a caption at least this positive (VADER) ...
    sincere_sentiment: float = Field(0.3, ge=-1.0, le=1.0)
    #: ... with less sarcasm evidence than this.
    sincere_sarcasm: float = Field(0.2, ge=0.0, le=1.0)
    #: Verdict confidence below this.
    confidence_below: float = Field(0.6, ge=0.0, le=1.0)


def review_reasons(
    verdict: Verdict,
    scenes: dict[str, float],
    caption: CaptionScores,
    sarcasm_evidence: float,
    groups: Mapping[str, tuple[str, float]],
    rules: ReviewRules,
) -> list[str]:
    """Why `verdict` should be checked by a person ([] when it need not be). `groups` maps a
    scene to (group, threshold)."""
    out: list[str] = []
    near = [
        (n, p, groups[n][1]) for n, p in scenes.items()
        if n in groups and groups[n][0] in ("force", "friendly")
        and abs(p - groups[n][1]) <= rules.scene_margin
    ]  # fmt: skip
    for n, p, thr in sorted(near, key=lambda t: abs(t[1] - t[2])):
        out.append(f"{n} {p:.2f} near its threshold {thr:.2f}")
    force = [(n, p) for n, p in scenes.items()
             if n in groups and groups[n][0] == "force" and p >= groups[n][1]]  # fmt: skip
    if (
        force
        and caption.sentiment >= rules.sincere_sentiment
        and sarcasm_evidence < rules.sincere_sarcasm
    ):
        name, p = max(force, key=lambda t: t[1])
        out.append(
            f"force scene ({name} {p:.2f}) under a sincere-looking caption "
            f"(positive {caption.sentiment:.2f}, sarcasm evidence {sarcasm_evidence:.2f})"
        )
    if verdict.confidence < rules.confidence_below:
        out.append(f"confidence {verdict.confidence:.2f} below {rules.confidence_below:.2f}")
    return out
