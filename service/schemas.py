"""Pydantic schemas: the API contract (and the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    WithJsonSchema,
    field_validator,
)

from workers.domain import MAX_WINDOW_S, clean_hashtag, parse_rfc3339

#: The most scored posts a rule may require (a window's post count; fits a 32-bit column).
MAX_MIN_POSTS = 1_000_000

Status = Literal["queued", "running", "done", "failed", "quarantined"]
VerdictName = Literal["backlash", "supportive", "neutral", "off_topic"]
#: A string the API checks as RFC 3339, documented as `format: date-time`: the schema promises
#: exactly what the validator accepts.
def _rfc3339(value: str) -> str:
    parse_rfc3339(value)  # ValueError -> the field's 422
    return value


DateTimeText = Annotated[
    str, AfterValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]
def _no_nul(value: str | None) -> str | None:
    # PostgreSQL's text type cannot hold NUL: refused here with a 422 for every store alike,
    # rather than a 500 from the INSERT on one of them.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


#: Text the store keeps: no NUL character (see `_no_nul`), and the schema says so.
NUL_FREE_PATTERN = r"^[^\x00]*$"
_NUL_FREE: dict[str, JsonValue] = {"pattern": NUL_FREE_PATTERN}
NulFree = Annotated[str, AfterValidator(_no_nul)]

#: What the SSRF guard accepts at all (it refuses more: private addresses, credentials...).
#: Documented, not enforced here, so a refusal is the guard's own sentence naming the reason.
_HTTP_URL: dict[str, JsonValue] = {"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
#: `next_cursor` values, as the OpenAPI document describes them (and `list_posts` parses them).
CURSOR_PATTERN = r"^p[0-9]{1,18}$"


class PostFields(BaseModel):
    """Post metadata sent with the image (multipart form fields, or JSON)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    caption: NulFree = Field("", max_length=10_000, json_schema_extra=_NUL_FREE)
    post_id: NulFree | None = Field(
        None, min_length=1, max_length=200, description="Your id; re-POSTing it is idempotent.",
        json_schema_extra=_NUL_FREE,
    )
    hashtag: NulFree | None = Field(None, max_length=200, json_schema_extra=_NUL_FREE)
    created_at: DateTimeText | None = Field(
        None, description="When the post was published (RFC 3339, e.g. 2014-04-22T17:00:00Z)."
    )
    author: NulFree | None = Field(None, max_length=200, json_schema_extra=_NUL_FREE)
    callback_url: NulFree | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Webhook URL POSTed (signed) when the post finishes.",
        json_schema_extra=_HTTP_URL,
    )

    @field_validator("hashtag")
    @classmethod
    def _strip_hash(cls, v: str | None) -> str | None:
        return clean_hashtag(v)


class PostFromUrl(PostFields):
    image_url: NulFree = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="http(s) URL of the image.",
        json_schema_extra=_HTTP_URL,
    )


class PostAccepted(BaseModel):
    id: str
    post_id: str
    status: Status
    status_url: str
    duplicate: bool = Field(description="True when this post id / Idempotency-Key existed.")


class Webhook(BaseModel):
    status: str | None
    attempts: int


class PostOut(BaseModel):
    id: str
    post_id: str
    status: Status
    hashtag: str | None
    caption: str
    author: str | None
    created_at: str | None
    accepted_at: str | None
    finished_at: str | None
    attempts: int
    media_sha256: str
    image_url: str | None
    pipeline_version: str | None
    verdict: VerdictName | None
    confidence: float | None
    reasons: list[str] | None
    scenes: dict[str, float] | None
    detected_scenes: list[str] | None
    caption_scores: dict[str, Any] | None
    signals: dict[str, float] | None
    review: bool | None = Field(None, description="A person should check this verdict.")
    review_reason: str | None = None
    error: dict[str, str] | None
    webhook: Webhook | None
    links: dict[str, str]


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page.", pattern=CURSOR_PATTERN
    )


class HashtagSummary(BaseModel):
    hashtag: str
    posts: int
    by_status: dict[str, int]
    by_verdict: dict[str, int]
    by_scene: dict[str, int]
    backlash_share: float | None = Field(description="backlash / posts with a verdict.")
    first_post_at: datetime | None
    last_post_at: datetime | None


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`). `code` is the stable machine
    name (also the end of `type`); `detail` is a sentence for a person."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="Invalid requests (422): each field refused, with why."
    )


class AlertIn(BaseModel):
    """An early-warning rule: POST `webhook` when the rolling backlash share of `hashtag` (among
    this key's posts) reaches `backlash_share`; once per crossing, re-armed when it falls back."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    hashtag: NulFree = Field(
        ..., min_length=1, max_length=200, examples=["myNYPD"],
        json_schema_extra={"pattern": r"[^#\s]"},  # something besides '#' and blanks
    )  # fmt: skip
    backlash_share: float = Field(0.3, gt=0, le=1, description="Threshold share (0-1].")
    window: str | int = Field(
        "30m",
        description="Rolling window: `30m`, `2h`, `1d`, `90s` or seconds (above zero).",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
                {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_S},
            ]
        },
    )
    # Bounded so that it fits the store's integer column (a 500 on PostgreSQL otherwise).
    min_posts: int = Field(20, ge=1, le=MAX_MIN_POSTS,
                           description="Scored posts the window needs to fire.")
    webhook: NulFree = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="http(s) URL; Slack-compatible JSON is POSTed there.",
        json_schema_extra=_HTTP_URL,
    )

    @field_validator("hashtag")
    @classmethod
    def _strip_hash(cls, v: str) -> str:
        tag = clean_hashtag(v)
        if tag is None:
            raise ValueError("hashtag is empty")
        return tag

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | int) -> str | int:
        from workers.errors import UsageError
        from workers.notify.rules import parse_window

        try:
            parse_window(str(v))
        except UsageError as e:
            raise ValueError(e.message) from e
        return v


class AlertDeliveryOut(BaseModel):
    at: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    share: float
    posts: int
    status: int | None
    error: str | None


class AlertOut(BaseModel):
    id: str
    hashtag: str
    backlash_share: float
    window: str
    window_seconds: int
    min_posts: int
    webhook: str
    created_at: str
    armed: bool = Field(description="False after firing, until the share falls back.")
    fired: int = Field(description="Crossings so far.")
    last_delivery: AlertDeliveryOut | None
    links: dict[str, str]


class AlertList(BaseModel):
    items: list[AlertOut]


class LabelsIn(BaseModel):
    """A person's labels of a post; any subset of the keys (`null` removes that label)."""

    # At least one label: an empty body is refused, and the schema says so.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    scenes: list[str] | None = Field(
        None, max_length=50, description="Every scene the photo shows; [] for none of them.",
        examples=[["restraint"]],
    )
    verdict: VerdictName | None = Field(None, examples=["backlash"])
    # Strict: `0`/`1` or "yes" are refused, as the schema's boolean says.
    ironic: Annotated[bool, Strict()] | None = Field(None, description="Is the caption ironic?")


class LabelValue(BaseModel):
    value: Any
    by: str = Field(description="The API key id that gave the label.")
    at: str


class LabelsOut(BaseModel):
    post: str
    post_id: str
    labels: dict[str, LabelValue]
