"""Verdict policy: scene probabilities + caption scores → backlash | supportive | neutral |
off_topic, with a confidence and the reasons that drove it. Weights live in
model_cards/verdict.yaml; every term is documented, with worked examples, in
model_cards/verdict-policy.md. `VerdictPolicy.explain` returns every term and its value (what
`backfire explain` prints); `decide` is its verdict, so the two never disagree."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.domain import CaptionScores, Verdict
from workers.errors import ConfigError
from workers.scenes.prompts import PromptSet
from workers.scoring.review import ReviewRules, review_reasons

Weight = Field(ge=0.0, le=1.0)
#: The policy file format this code reads (model_cards/verdict-policy.md).
POLICY_VERSION = 2


class BacklashWeights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    force: float = Weight
    critical_over_police: float = Weight
    mock_praise_over_police: float = Weight
    incongruity: float = Weight


class SupportiveWeights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    friendly: float = Weight
    sincere_over_police: float = Weight
    mock_praise_damping: float = Weight


class CaptionRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sarcasm_floor: float = Field(ge=0.0, lt=1.0)
    sarcasm_full: float = Field(gt=0.0, le=1.0)
    strong_cues: list[str] = Field(default_factory=list)
    strong_cue_evidence: float = Weight
    stance_floor: float = Field(ge=-1.0, lt=1.0)
    stance_full: float = Field(gt=0.0, le=1.0)
    #: Captions scored by a model without a stance head (v1, v2, cues-v0): VADER sentiment
    #: stands in for the stance, times this weight.
    sentiment_stance_weight: float = Weight

    @model_validator(mode="after")
    def _ramps_rise(self) -> CaptionRules:
        if self.sarcasm_full <= self.sarcasm_floor or self.stance_full <= self.stance_floor:
            raise ValueError("sarcasm_full / stance_full must be above sarcasm_floor / "
                             "stance_floor")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backlash: float = Weight
    supportive: float = Weight
    off_topic: float = Weight
    police_presence: float = Weight
    stance_reason: float = Weight
    sarcasm_reason: float = Weight
    incongruity_reason: float = Weight


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
        if isinstance(raw, dict) and raw.get("version") != POLICY_VERSION:
            raise ConfigError(
                f"Verdict policy file {path} is version {raw.get('version')!r}; this Backfire "
                f"reads version {POLICY_VERSION} (the caption's stance is a term of its own: "
                "model_cards/verdict-policy.md lists the terms, model_cards/verdict.yaml is an "
                "example)"
            )
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


def _ramp(x: float, floor: float, full: float) -> float:
    return max(0.0, min(1.0, (x - floor) / (full - floor)))


@dataclass(frozen=True)
class Term:
    """One piece of evidence: `value` in [0, 1] (how strong it is), `weight` from the YAML; its
    contribution to the noisy-OR is weight × value."""

    name: str
    formula: str
    value: float
    weight: float

    @property
    def weighted(self) -> float:
        return self.weight * self.value


@dataclass(frozen=True)
class Explanation:
    """Every input, derived quantity and term of one decision (what `backfire explain` prints)."""

    inputs: dict[str, float]
    derived: dict[str, float]
    backlash_terms: list[Term]
    supportive_terms: list[Term]
    backlash: float
    supportive: float
    rule: str  # which decision rule fired
    verdict: Verdict
    stance_source: str = "model"
    notes: list[str] = field(default_factory=list)


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
        return self.explain(scenes, caption).verdict

    def sarcasm_evidence(self, caption: CaptionScores) -> float:
        """The irony probability above `sarcasm_floor`, ramped to 1 at `sarcasm_full`, or the
        strong-cue evidence (#sarcasm, /s, eye-roll emoji), whichever is larger."""
        rules = self.policy.caption
        ramp = _ramp(caption.sarcasm, rules.sarcasm_floor, rules.sarcasm_full)
        cue = rules.strong_cue_evidence if set(caption.cues) & set(rules.strong_cues) else 0.0
        return max(ramp, cue)

    def stance_evidence(self, caption: CaptionScores) -> tuple[float, float, str]:
        """(critical, supportive) evidence in [0, 1] and where it came from: the caption model's
        stance margin (p_critical − p_supportive, and its opposite) ramped from `stance_floor`
        to `stance_full`; without a stance (a model without a
        stance head), VADER negativity and sincere positivity times `sentiment_stance_weight`;
        none for an empty or unreadable caption. An explicit sarcasm marker scales the
        supportive evidence by (1 − strong_cue_evidence)."""
        rules = self.policy.caption
        st = caption.stance
        if st is not None:
            # The margin of one stance over the other: a caption the head finds both critical
            # and supportive (0.45 / 0.40) is evidence of neither.
            lean = st.critical - st.supportive
            sup = _ramp(-lean, rules.stance_floor, rules.stance_full)
            if set(caption.cues) & set(rules.strong_cues):
                # "#sarcasm", "/s": the writer says the literal (supportive) reading is wrong.
                sup *= 1.0 - rules.strong_cue_evidence
            return _ramp(lean, rules.stance_floor, rules.stance_full), sup, "model"
        if {"empty caption", "non-latin script (not scored)"} & set(caption.cues):
            return 0.0, 0.0, "none (caption not read)"
        v, w = caption.sentiment, rules.sentiment_stance_weight
        sincere = 1.0 - self.sarcasm_evidence(caption)
        return w * max(-v, 0.0), w * max(v, 0.0) * sincere, "sentiment (no stance head)"

    def explain(self, scenes: dict[str, float], caption: CaptionScores) -> Explanation:
        p, t = self.policy, self.policy.thresholds
        bw, sw = p.backlash, p.supportive
        force_name, force = _argmax(scenes, self.force)
        _, friendly = _argmax(scenes, self.friendly)
        _, police = _argmax(scenes, self.police)
        _, off = _argmax(scenes, self.off_topic)
        crit, sup, source = self.stance_evidence(caption)
        s = self.sarcasm_evidence(caption)
        v = caption.sentiment
        positivity = max(v, 0.0)
        # A neutral caption (v = 0) is half warm: "just a photo with a member of the NYPD" over
        # an arrest is how the #myNYPD photos were posted.
        warmth = (v + 1.0) / 2.0
        # Irony counts as criticism only as mock praise: ironic AND literally positive AND not
        # sincerely supportive (the irony head reads sincere police praise as irony).
        mock = s * positivity * (1.0 - sup)
        # A warm caption over a force scene that is neither critical (counted on its own) nor
        # sincerely supportive: sincere thanks over an ambiguous photo is not backlash evidence.
        incongruity = force * warmth * (1.0 - crit) * (1.0 - sup)

        b_terms = [
            Term("force", "max force-scene probability", force, bw.force),
            Term("critical_over_police", "critical evidence × police presence",
                 crit * police, bw.critical_over_police),
            Term("mock_praise_over_police", "sarcasm evidence × positivity × "
                 "(1 − supportive evidence) × police presence", mock * police,
                 bw.mock_praise_over_police),
            Term("incongruity", "force × warmth × (1 − critical evidence) × "
                 "(1 − supportive evidence)", incongruity, bw.incongruity),
        ]
        s_terms = [
            Term("friendly", "friendly × (1 − critical evidence) × "
                 "(1 − mock_praise_damping × mock praise)",
                 friendly * (1.0 - crit) * (1.0 - sw.mock_praise_damping * mock), sw.friendly),
            Term("sincere_over_police", "supportive evidence × police presence × (1 − force) × "
                 "(1 − mock praise)", sup * police * (1.0 - force) * (1.0 - mock),
                 sw.sincere_over_police),
        ]
        backlash = _noisy_or(*(x.weighted for x in b_terms))
        supportive = _noisy_or(*(x.weighted for x in s_terms))
        st = caption.stance
        inputs = {
            "force": force, "friendly": friendly, "police_presence": police, "off_topic": off,
            "sarcasm": caption.sarcasm, "sentiment": v,
        }
        if st is not None:
            inputs |= {"p_critical": st.critical, "p_supportive": st.supportive,
                       "p_neutral": st.neutral}
        derived = {
            "critical_evidence": crit, "supportive_evidence": sup, "sarcasm_evidence": s,
            "positivity": positivity, "warmth": warmth, "mock_praise": mock,
            "incongruity": incongruity,
        }
        signals = {
            "force": force, "police_presence": police, "off_topic": off,
            "critical_evidence": crit, "supportive_evidence": sup, "sarcasm_evidence": s,
            "mock_praise": mock, "incongruity": incongruity,
            "backlash_score": backlash, "supportive_score": supportive,
        }

        def done(rule: str, verdict: Verdict) -> Explanation:
            return Explanation(inputs, derived, b_terms, s_terms, backlash, supportive, rule,
                               verdict, source)

        reasons: list[str] = []
        stance_reason = self._stance_reason(caption, crit, sup, source)
        if off >= t.off_topic and police < t.police_presence:
            reasons.append(f"no police scene (off_topic {off:.2f}, police {police:.2f})")
            return done(f"off_topic ≥ {t.off_topic} and police presence < {t.police_presence}",
                        Verdict("off_topic", off * (1.0 - police), tuple(reasons), signals))

        if backlash >= t.backlash and backlash >= supportive:
            reasons += self._scene_reasons(scenes, self.force)
            reasons += stance_reason
            if mock * police * bw.mock_praise_over_police >= 0.1 and s >= t.sarcasm_reason:
                cues = f" ({', '.join(caption.cues)})" if caption.cues else ""
                reasons.append(f"caption mock praise: sarcasm {caption.sarcasm:.2f}{cues}, "
                               f"positive {positivity:.2f}")
            if incongruity >= t.incongruity_reason:
                tone = "positive" if v > 0.05 else "neutral"
                reasons.append(f"caption {tone} over force scene ({force_name}): "
                               f"incongruity {incongruity:.2f}")
            return done(f"backlash ≥ {t.backlash} and backlash ≥ supportive",
                        Verdict("backlash", backlash, tuple(reasons), signals))

        if supportive >= t.supportive:
            reasons += self._scene_reasons(scenes, self.friendly)
            reasons += stance_reason
            return done(f"supportive ≥ {t.supportive}",
                        Verdict("supportive", supportive, tuple(reasons), signals))

        reasons += self._scene_reasons(scenes, self.police) or [f"police presence {police:.2f}"]
        reasons += stance_reason
        reasons.append(f"weak evidence (backlash {backlash:.2f}, supportive {supportive:.2f})")
        return done("neither score reached its threshold",
                    Verdict("neutral", 1.0 - max(backlash, supportive), tuple(reasons), signals))

    def _stance_reason(self, caption: CaptionScores, crit: float, sup: float,
                       source: str) -> list[str]:
        """"caption critical of the police 0.86": the stance the caption model read, when one
        class reaches `stance_reason`; for stance-less models the sentiment that stood in."""
        t = self.policy.thresholds
        st = caption.stance
        if st is not None:
            label = st.label
            prob = getattr(st, label)
            if prob < t.stance_reason:
                return [f"caption stance unclear (critical {st.critical:.2f}, supportive "
                        f"{st.supportive:.2f})"]
            what = {"critical": "critical of", "supportive": "supportive of",
                    "neutral": "neutral toward"}[label]
            return [f"caption {what} the {st.target} {prob:.2f}"]
        if source.startswith("sentiment"):  # VADER stood in (weighted): name what it read
            if crit >= max(sup, 0.2):
                return [f"caption negative {-caption.sentiment:.2f} (no stance model)"]
            if sup >= 0.2:
                return [f"caption positive {caption.sentiment:.2f} (no stance model)"]
        return []

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

    def _scene_reasons(self, scenes: dict[str, float], names: list[str]) -> list[str]:
        hits = [
            (n, scenes[n]) for n in names if scenes[n] >= self.prompts.scenes[n].threshold
        ]
        return [f"{n} {prob:.2f}" for n, prob in sorted(hits, key=lambda x: -x[1])]


def _argmax(scenes: dict[str, float], names: list[str]) -> tuple[str | None, float]:
    best = max(names, key=lambda n: scenes.get(n, 0.0), default=None)
    return best, (scenes.get(best, 0.0) if best else 0.0)
