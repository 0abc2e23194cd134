"""Verdict policy: scene probabilities + caption scores → backlash | supportive | neutral |
off_topic, with a confidence and the reasons that drove it. Weights live in
model_cards/verdict.yaml; the reasoning is documented in model_cards/verdict-policy.md."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workers.domain import CaptionScores, Verdict
from workers.errors import ConfigError
from workers.scenes.prompts import PromptSet
from workers.scoring.review import ReviewRules, review_reasons

Weight = Field(ge=0.0, le=1.0)


class BacklashWeights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    force: float = Weight
    incongruity: float = Weight
    sarcasm_over_police: float = Weight
    negative_over_police: float = Weight


class SupportiveWeights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    friendly: float = Weight
    warm_over_police: float = Weight
    sarcasm_damping: float = Weight


class CaptionRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sarcasm_floor: float = Field(ge=0.0, lt=1.0)
    strong_cues: list[str] = Field(default_factory=list)
    strong_cue_evidence: float = Weight


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backlash: float = Weight
    supportive: float = Weight
    off_topic: float = Weight
    police_presence: float = Weight
    sarcasm_reason: float = Weight
    incongruity_reason: float = Weight
    sentiment_reason: float = Weight


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    backlash: BacklashWeights
    supportive: SupportiveWeights
    caption: CaptionRules
    thresholds: Thresholds
    #: When a verdict is flagged for a person to check (workers/scoring/review.py).
    review: ReviewRules = Field(default_factory=ReviewRules)

    @cached_property
    def hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_policy(path: Path) -> Policy:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Policy.model_validate(raw)
    except FileNotFoundError as e:
        raise ConfigError(f"Verdict policy file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"Verdict policy file {path} is not valid YAML: {e}") from e
    except ValidationError as e:
        raise ConfigError(f"Verdict policy file {path} is invalid:\n{e}") from e


def _noisy_or(*terms: float) -> float:
    miss = 1.0
    for t in terms:
        miss *= 1.0 - min(1.0, max(0.0, t))
    return 1.0 - miss


class VerdictPolicy:
    """Applies a `Policy` using the scene groups of a `PromptSet`."""

    def __init__(self, policy: Policy, prompts: PromptSet) -> None:
        self.policy = policy
        self.prompts = prompts
        self.force = prompts.in_group("force")
        self.friendly = prompts.in_group("friendly")
        self.police = self.force + self.friendly + prompts.in_group("police")
        self.off_topic = prompts.in_group("off_topic")

    def decide(self, scenes: dict[str, float], caption: CaptionScores) -> Verdict:
        p, t = self.policy, self.policy.thresholds
        force_name, force = _argmax(scenes, self.force)
        _, friendly = _argmax(scenes, self.friendly)
        _, police = _argmax(scenes, self.police)
        _, off = _argmax(scenes, self.off_topic)
        s = self.sarcasm_evidence(caption)
        v = caption.sentiment
        positivity, negativity = max(v, 0.0), max(-v, 0.0)
        # A neutral caption (v = 0) over a force scene is already half-incongruous: that is how
        # the #myNYPD photos were posted, "just a photo with a member of the NYPD".
        warmth = (v + 1.0) / 2.0
        incongruity = force * warmth * (1.0 - negativity)

        backlash = _noisy_or(
            p.backlash.force * force,
            p.backlash.incongruity * incongruity,
            p.backlash.sarcasm_over_police * s * police,
            p.backlash.negative_over_police * negativity * police,
        )
        supportive = _noisy_or(
            p.supportive.friendly * friendly * (1.0 - p.supportive.sarcasm_damping * s),
            p.supportive.warm_over_police * positivity * police * (1.0 - s) * (1.0 - force),
        )
        signals = {
            "force": force,
            "police_presence": police,
            "off_topic": off,
            "incongruity": incongruity,
            "sarcasm_evidence": s,
            "backlash_score": backlash,
            "supportive_score": supportive,
        }

        reasons: list[str] = []
        if off >= t.off_topic and police < t.police_presence:
            reasons.append(f"no police scene (off_topic {off:.2f}, police {police:.2f})")
            return Verdict("off_topic", off * (1.0 - police), tuple(reasons), signals)

        if backlash >= t.backlash and backlash >= supportive:
            reasons += self._scene_reasons(scenes, self.force)
            if incongruity >= t.incongruity_reason and v >= 0.0:
                tone = "positive" if v > 0.05 else "neutral"
                reasons.append(
                    f"caption {tone} over force scene ({force_name}): "
                    f"incongruity {incongruity:.2f}"
                )
            reasons += self._caption_reasons(caption)
            return Verdict("backlash", backlash, tuple(reasons), signals)

        if supportive >= t.supportive:
            reasons += self._scene_reasons(scenes, self.friendly)
            if positivity >= t.sentiment_reason:
                reasons.append(f"caption positive {positivity:.2f}")
            if caption.sarcasm < t.sarcasm_reason:
                reasons.append(f"caption sincere (sarcasm {caption.sarcasm:.2f})")
            return Verdict("supportive", supportive, tuple(reasons), signals)

        reasons += self._scene_reasons(scenes, self.police) or [f"police presence {police:.2f}"]
        reasons.append(f"weak evidence (backlash {backlash:.2f}, supportive {supportive:.2f})")
        return Verdict("neutral", 1.0 - max(backlash, supportive), tuple(reasons), signals)

    def judge(self, scenes: dict[str, float], caption: CaptionScores) -> Verdict:
        """`decide`, with the review flag: whether a person should check the verdict."""
        verdict = self.decide(scenes, caption)
        groups = {n: (s.group, s.threshold) for n, s in self.prompts.scenes.items()}
        why = review_reasons(
            verdict, scenes, caption, self.sarcasm_evidence(caption), groups, self.policy.review
        )
        if not why:
            return verdict
        return replace(verdict, review=True, review_reason="; ".join(why))

    def sarcasm_evidence(self, caption: CaptionScores) -> float:
        rules = self.policy.caption
        excess = (caption.sarcasm - rules.sarcasm_floor) / (1.0 - rules.sarcasm_floor)
        cue = rules.strong_cue_evidence if set(caption.cues) & set(rules.strong_cues) else 0.0
        return max(0.0, min(1.0, excess), cue)

    def _scene_reasons(self, scenes: dict[str, float], names: list[str]) -> list[str]:
        hits = [
            (n, scenes[n]) for n in names if scenes[n] >= self.prompts.scenes[n].threshold
        ]
        return [f"{n} {prob:.2f}" for n, prob in sorted(hits, key=lambda x: -x[1])]

    def _caption_reasons(self, caption: CaptionScores) -> list[str]:
        t = self.policy.thresholds
        out = []
        if self.sarcasm_evidence(caption) >= t.sarcasm_reason:
            cues = f" ({', '.join(caption.cues)})" if caption.cues else ""
            out.append(f"caption sarcasm {caption.sarcasm:.2f}{cues}")
        if -caption.sentiment >= t.sentiment_reason:
            out.append(f"caption negative {-caption.sentiment:.2f}")
        return out


def _argmax(scenes: dict[str, float], names: list[str]) -> tuple[str | None, float]:
    best = max(names, key=lambda n: scenes.get(n, 0.0), default=None)
    return best, (scenes.get(best, 0.0) if best else 0.0)
