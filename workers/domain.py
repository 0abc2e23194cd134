"""Domain types shared by the CLI, the API and the workers. Plain dataclasses, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

VerdictLabel = Literal["backlash", "supportive", "neutral", "off_topic"]
VERDICTS: tuple[VerdictLabel, ...] = ("backlash", "supportive", "neutral", "off_topic")


@dataclass(frozen=True)
class Post:
    """One post under a hashtag. `image` is a local path or an http(s) URL."""

    post_id: str
    image: str | None
    caption: str = ""
    hashtag: str | None = None
    created_at: str | None = None
    author: str | None = None
    alt_text: str | None = None
    #: Extra reader-specific fields kept for reports (reposts, platform ids...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptionScores:
    """What the caption scorer says. `sarcasm` in [0, 1]; `sentiment` VADER compound in [-1, 1]."""

    sarcasm: float
    sentiment: float
    cues: tuple[str, ...] = ()
    model: str = "cues-v0"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cues"] = list(self.cues)
        return d


@dataclass(frozen=True)
class Verdict:
    label: VerdictLabel
    confidence: float
    reasons: tuple[str, ...]
    #: Intermediate scores the policy computed (force, incongruity...), for reports and debugging.
    signals: dict[str, float] = field(default_factory=dict)


@dataclass
class PostResult:
    """One output row: a verdict or an error for one post."""

    post: Post
    pipeline_version: str
    verdict: Verdict | None = None
    scenes: dict[str, float] | None = None
    caption: CaptionScores | None = None
    media_sha256: str | None = None
    error: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_record(self) -> dict[str, Any]:
        """The JSON-ready row written by the CLI and returned by the API."""
        p = self.post
        row: dict[str, Any] = {
            "post_id": p.post_id,
            "status": "ok" if self.ok else "error",
            "hashtag": p.hashtag,
            "created_at": p.created_at,
            "author": p.author,
            "image": p.image,
            "caption_text": p.caption,
            "media_sha256": self.media_sha256,
            "pipeline_version": self.pipeline_version,
        }
        if self.verdict is not None:
            row.update(
                verdict=self.verdict.label,
                confidence=round(self.verdict.confidence, 4),
                reasons=list(self.verdict.reasons),
                signals={k: round(v, 4) for k, v in self.verdict.signals.items()},
            )
        if self.scenes is not None:
            row["scenes"] = {k: round(v, 4) for k, v in self.scenes.items()}
        if self.caption is not None:
            row["caption"] = self.caption.as_dict()
        if self.error is not None:
            row["error"] = self.error
        if p.extra:
            row["extra"] = p.extra
        return row
