"""Domain types shared by the CLI, the API and the workers, and the small parsers they share.

`ResultRow` is THE output row: `as_record()` is its one serialiser (JSONL/CSV writers, the
verdict store, reports, alerts and the API all read what it writes) and `from_record()` its one
parser. Plain dataclasses, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from workers.errors import UsageError

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


StanceLabel = Literal["critical", "supportive", "neutral"]
STANCES: tuple[StanceLabel, ...] = ("critical", "supportive", "neutral")


@dataclass(frozen=True)
class Stance:
    """The caption's calibrated stance toward the campaign's sender (the police, for now): three
    probabilities that sum to 1 (model_cards/caption-sarcasm.md, "Stance")."""

    critical: float
    supportive: float
    neutral: float
    target: str = "police"

    @property
    def label(self) -> StanceLabel:
        return max(STANCES, key=lambda k: getattr(self, k))

    def as_dict(self) -> dict[str, Any]:
        return {"critical": self.critical, "supportive": self.supportive,
                "neutral": self.neutral, "target": self.target, "label": self.label}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stance:
        return cls(float(d["critical"]), float(d["supportive"]), float(d["neutral"]),
                   str(d.get("target") or "police"))


#: What a person can label a post with (CSV/JSONL columns, `PUT /v1/posts/{id}/labels` keys).
LABEL_KEYS = ("scenes", "verdict", "ironic")


@dataclass(frozen=True)
class Labels:
    """A person's labels of one post. None: not labelled. `scenes` is the complete set of scenes
    the photo shows (empty: none of them), so every other scene is labelled absent."""

    scenes: frozenset[str] | None = None
    verdict: VerdictLabel | None = None
    ironic: bool | None = None

    @property
    def empty(self) -> bool:
        return self.scenes is None and self.verdict is None and self.ironic is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenes": sorted(self.scenes) if self.scenes is not None else None,
            "verdict": self.verdict,
            "ironic": self.ironic,
        }


@dataclass(frozen=True)
class CaptionScores:
    """What the caption scorer says. `sarcasm` in [0, 1]; `sentiment` VADER compound in [-1, 1];
    `stance` None when the model has no stance head or could not read the caption (empty, not
    Latin script): the policy then takes no stance evidence from it."""

    sarcasm: float
    sentiment: float
    cues: tuple[str, ...] = ()
    model: str = "cues-v0"
    stance: Stance | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cues"] = list(self.cues)
        d["stance"] = self.stance.as_dict() if self.stance is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaptionScores:
        """The inverse of `as_dict` (the caption-score cache stores that JSON)."""
        stance = d.get("stance")
        return cls(
            float(d["sarcasm"]), float(d["sentiment"]), tuple(d.get("cues") or ()),
            str(d.get("model") or "cues-v0"), Stance.from_dict(stance) if stance else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    label: VerdictLabel
    confidence: float
    reasons: tuple[str, ...]
    #: Intermediate scores the policy computed (force, incongruity...), for reports and debugging.
    signals: dict[str, float] = field(default_factory=dict)
    #: Weak or conflicting evidence: a person should check this post (and label it).
    review: bool = False
    review_reason: str | None = None


@dataclass(frozen=True)
class ResultRow:
    """One output row: a post's verdict, or its error. README "Output" documents the fields.

    `image` is the post's image as it was given (a path or URL; None for an upload), never a
    path inside the media store; `created_at` is the post's own time as given (None if unknown).
    `scored_at` is set only on rows read back from the store (reports show it).
    """

    post_id: str
    status: Literal["ok", "error"]
    hashtag: str | None = None
    created_at: str | None = None
    author: str | None = None
    image: str | None = None
    caption_text: str = ""
    media_sha256: str | None = None
    pipeline_version: str | None = None
    verdict: str | None = None
    confidence: float | None = None
    reasons: tuple[str, ...] = ()
    signals: dict[str, float] | None = None
    #: ok rows: whether a person should check the verdict, and why.
    review: bool | None = None
    review_reason: str | None = None
    scenes: dict[str, float] | None = None
    #: `CaptionScores.as_dict()`: sarcasm, sentiment, cues, model.
    caption: dict[str, Any] | None = None
    #: `{"type": code, "message": text}` for an error row.
    error: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    scored_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stance(self) -> Stance | None:
        """The caption's stance, typed (it travels inside `caption`, as the scorer wrote it)."""
        raw = (self.caption or {}).get("stance")
        return Stance.from_dict(raw) if raw else None

    def as_record(self) -> dict[str, Any]:
        """THE serialiser: the JSON-ready row every writer, store, report, alert and the API use.
        Score fields appear only when the row has them, so an error row stays short."""
        row: dict[str, Any] = {
            "post_id": self.post_id,
            "status": self.status,
            "hashtag": self.hashtag,
            "created_at": self.created_at,
            "author": self.author,
            "image": self.image,
            "caption_text": self.caption_text,
            "media_sha256": self.media_sha256,
            "pipeline_version": self.pipeline_version,
        }
        if self.verdict is not None:
            row.update(
                verdict=self.verdict,
                confidence=self.confidence,
                reasons=list(self.reasons),
                signals=self.signals,
                review=bool(self.review),
                review_reason=self.review_reason,
            )
        if self.scenes is not None:
            row["scenes"] = self.scenes
        if self.caption is not None:
            row["caption"] = self.caption
        if self.error is not None:
            row["error"] = self.error
        if self.extra:
            row["extra"] = self.extra
        if self.scored_at is not None:
            row["scored_at"] = self.scored_at
        return row

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> ResultRow:
        """The row a record stands for: a line of a JSONL output, a stored verdict record, or a
        partial one (missing fields take their defaults)."""
        confidence = rec.get("confidence")
        return cls(
            post_id=str(rec.get("post_id") or ""),
            status=rec.get("status") or ("error" if rec.get("error") else "ok"),
            hashtag=rec.get("hashtag"),
            created_at=rec.get("created_at"),
            author=rec.get("author"),
            image=rec.get("image"),
            caption_text=rec.get("caption_text") or "",
            media_sha256=rec.get("media_sha256"),
            pipeline_version=rec.get("pipeline_version"),
            verdict=rec.get("verdict") or None,
            confidence=float(confidence) if confidence not in (None, "") else None,
            reasons=tuple(rec.get("reasons") or ()),
            signals=rec.get("signals"),
            review=_flag(rec.get("review")),
            review_reason=rec.get("review_reason") or None,
            scenes=rec.get("scenes"),
            caption=rec.get("caption"),
            error=rec.get("error"),
            extra=rec.get("extra") or None,
            scored_at=rec.get("scored_at"),
        )

    @classmethod
    def of(cls, row: ResultRow | Mapping[str, Any]) -> ResultRow:
        """`row` itself, or the row a record stands for (callers may hand either)."""
        return row if isinstance(row, ResultRow) else cls.from_record(row)

    def slim(self) -> ResultRow:
        """The row without its score details (scenes, signals, caption scores, extra): what an
        alert window keeps of each post, so a long run holds little memory."""
        return replace(self, scenes=None, signals=None, caption=None, extra=None)


@dataclass
class PostResult:
    """What the pipeline made of one post: a verdict or an error, with the objects behind it."""

    post: Post
    #: None when no pipeline ran (an image refused before scoring).
    pipeline_version: str | None
    verdict: Verdict | None = None
    scenes: dict[str, float] | None = None
    caption: CaptionScores | None = None
    media_sha256: str | None = None
    error: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> ResultRow:
        """The output row, with scores rounded to 4 places as they are published."""
        p, v = self.post, self.verdict
        return ResultRow(
            post_id=p.post_id,
            status="ok" if self.ok else "error",
            hashtag=p.hashtag,
            created_at=p.created_at,
            author=p.author,
            image=p.image,
            caption_text=p.caption,
            media_sha256=self.media_sha256,
            pipeline_version=self.pipeline_version,
            verdict=v.label if v is not None else None,
            confidence=round(v.confidence, 4) if v is not None else None,
            reasons=v.reasons if v is not None else (),
            signals=_rounded(v.signals) if v is not None else None,
            review=v.review if v is not None else None,
            review_reason=v.review_reason if v is not None else None,
            scenes=_rounded(self.scenes),
            caption=self.caption.as_dict() if self.caption is not None else None,
            error=self.error,
            extra=p.extra or None,
        )

    def as_record(self) -> dict[str, Any]:
        return self.row().as_record()


def _flag(value: Any) -> bool | None:
    """A review flag as JSON or a CSV cell wrote it."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _rounded(scores: dict[str, float] | None) -> dict[str, float] | None:
    return None if scores is None else {k: round(x, 4) for k, x in scores.items()}


# --- the small parsers every boundary shares ---------------------------------------------------
def clean_hashtag(tag: str | None) -> str | None:
    """A hashtag as stored and shown: without '#' and surrounding blanks; None when empty."""
    return (tag or "").strip().lstrip("#").strip() or None


def hashtag_key(tag: str | None) -> str:
    """What hashtags are matched on: the clean tag, lower-cased ('' for none)."""
    return (clean_hashtag(tag) or "").lower()


#: The longest rolling window of an alert rule: an early warning looks at hours, not months, and
#: the store keeps the window in a 32-bit integer column.
MAX_WINDOW_S = 30 * 86_400

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | int | float, what: str = "duration") -> float:
    """'90s', '30m', '2h', '1d', '250ms' or plain seconds -> seconds (`what` names it in the
    error: "window", "period"...)."""
    m = _DURATION.match(str(text).lower())
    if not m:
        raise UsageError(f"Cannot read the {what} {text!r}; write it like 30m, 2h, 1d or 90s.")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: int) -> str:
    """Whole seconds in the largest unit that divides them: 1800 -> '30m'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (with Z or offset) or epoch seconds -> aware UTC datetime; None if unparseable."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        s = str(value).strip()
        if s.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(s), UTC)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


#: RFC 3339 `date-time` (what OpenAPI's `format: date-time` means): a date, `T`, a time with
#: seconds, and an offset or `Z`. Letters in either case, as the RFC allows; no leap second.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$",
    re.ASCII,
)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 date-time -> aware datetime; ValueError (saying what is expected) if `value`
    is not one, so an API field documented as `date-time` accepts exactly that."""
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError("must be an RFC 3339 date-time such as 2014-04-22T17:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zulu, sign, off_h, off_m = m.groups()[6:]
    bad_offset = not zulu and (int(off_h) > 23 or int(off_m) > 59)
    if hour > 23 or minute > 59 or second > 59 or bad_offset:
        raise ValueError("has an hour, minute, second or offset out of range")
    micro = int((frac or "0")[:6].ljust(6, "0"))
    offset = timedelta(0) if zulu else timedelta(hours=int(off_h), minutes=int(off_m))
    if sign == "-":
        offset = -offset
    try:
        return datetime(year, month, day, hour, minute, second, micro, timezone(offset))
    except ValueError as e:  # day 31 of April, year 0, ...
        raise ValueError(f"is not a calendar date-time ({e})") from None


def clamp_utc(dt: datetime) -> datetime:
    """`dt` in UTC; the first or last representable instant when the offset carries it past
    year 1 or 9999 (valid RFC 3339, e.g. 9999-12-31T23:59:59-23:59, yet no Python datetime)."""
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if dt.year > 1 else datetime.min.replace(tzinfo=UTC)


def iso_utc(dt: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC with a Z: how every time leaves the system."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt is not None else None
