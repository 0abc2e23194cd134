"""SQLAlchemy 2 tables. Changing them needs a migration in `migrations/versions/`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Post lifecycle. `failed`: the pipeline ran and the image was unusable (error row);
#: `quarantined`: the post crashed its worker, or its task raised, `max_attempts` times.
STATUSES = ("queued", "running", "done", "failed", "quarantined")
TERMINAL = ("done", "failed", "quarantined")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: sha256 of the secret part; the key itself is shown once and never stored.
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class PostRow(Base):
    __tablename__ = "posts"
    __table_args__ = (
        # Idempotency: one post per (owner, client post id) and per (owner, Idempotency-Key).
        UniqueConstraint("owner", "post_id", name="uq_posts_owner_post_id"),
        UniqueConstraint("owner", "idempotency_key", name="uq_posts_owner_idem"),
        Index("ix_posts_status_touched", "status", "touched_at"),
        Index("ix_posts_owner_seq", "owner", "seq"),
        Index("ix_posts_hashtag", "hashtag"),
    )

    #: Monotonic sequence: cursor paging order.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Public id (URL path); random so ids of other tenants cannot be guessed.
    id: Mapped[str] = mapped_column(String(32), unique=True)
    #: API key id that created it; "cli" for `backfire score --queue`.
    owner: Mapped[str] = mapped_column(String(16))
    post_id: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    hashtag: Mapped[str | None] = mapped_column(String(200))
    caption: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[str | None] = mapped_column(String(64))
    #: created_at parsed, else the acceptance time: what `since=` filters on.
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)
    image_url: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    media_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pipeline_version: Mapped[str | None] = mapped_column(String(64))
    accepted_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Last time the message was published or the status changed: the reconciler's clock.
    touched_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)


class VerdictRow(Base):
    __tablename__ = "verdicts"
    __table_args__ = (
        # Exactly-once effect: a re-delivered task finds this row and returns.
        UniqueConstraint("post_seq", "pipeline_version", name="uq_verdicts_post_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_seq: Mapped[int] = mapped_column(ForeignKey("posts.seq", ondelete="CASCADE"))
    pipeline_version: Mapped[str] = mapped_column(String(64))
    #: The PostResult record (verdict, confidence, reasons, scenes, caption, error).
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    verdict: Mapped[str | None] = mapped_column(String(16))
    #: Scenes at or above their threshold, for summaries.
    detected: Mapped[list[Any]] = mapped_column(JSON, default=list)
    scoring_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The verdict's evidence is weak or conflicting: a person should look (`?review=true`).
    review: Mapped[bool | None] = mapped_column(Boolean)


class LabelRow(Base):
    """A person's label of a post, one row per key (scenes, verdict, ironic), with who gave it
    and when: `PUT /v1/posts/{id}/labels`, read back by `backfire eval --from-store`."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("post_seq", "key", name="uq_labels_post_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_seq: Mapped[int] = mapped_column(ForeignKey("posts.seq", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(16))
    value: Mapped[Any] = mapped_column(JSON)
    #: The API key id that gave the label.
    labelled_by: Mapped[str] = mapped_column(String(16))
    labelled_at: Mapped[datetime] = mapped_column(default=utcnow)


class SceneCacheRow(Base):
    """Scene probabilities per (image, pipeline): identical images are scored once."""

    __tablename__ = "scene_cache"

    media_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    scenes: Mapped[dict[str, Any]] = mapped_column(JSON)


#: Alert windows read a hashtag's recent posts, matched case-insensitively (workers/notify/).
Index("ix_posts_tag_time", func.lower(PostRow.hashtag), PostRow.posted_at)


class AlertRuleRow(Base):
    """An early-warning rule (workers/notify/rules.py) and its crossing state.

    `owner` is the API key that created it; NULL for rules added with `backfire alert add`, which
    watch every owner's posts (the operator's view). Rules of a key see only that key's posts.
    """

    __tablename__ = "alert_rules"
    __table_args__ = (
        Index("ix_alert_rules_tag", "hashtag_key"),
        Index("ix_alert_rules_owner", "owner"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(16))
    #: As given (without #), for display; `hashtag_key` is its lower-case form, for matching.
    hashtag: Mapped[str] = mapped_column(String(200))
    hashtag_key: Mapped[str] = mapped_column(String(200))
    threshold: Mapped[float] = mapped_column(Float)
    window_s: Mapped[int] = mapped_column(Integer)
    min_posts: Mapped[int] = mapped_column(Integer)
    webhook: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    armed: Mapped[bool] = mapped_column(Boolean, default=True)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    #: Newest post time evaluated: posts at or before it never fire this rule again.
    evaluated_until: Mapped[datetime | None] = mapped_column()


class AlertDeliveryRow(Base):
    """One firing of a rule: the message (kept so a worker can send it by id) and its fate."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_rule", "rule_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    #: pending (queued for a worker) | sent | failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    share: Mapped[float] = mapped_column(Float)
    posts: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class WatchCursorRow(Base):
    """Where a `backfire watch` poller is in one (source, query): saved after each batch of
    posts is stored, so a watcher killed at any instant resumes without gaps (workers/live/)."""

    __tablename__ = "watch_cursors"

    #: e.g. "mastodon:https://mastodon.social", "bluesky:https://public.api.bsky.app".
    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    #: The hashtag or search query, as the platform is asked it.
    query: Mapped[str] = mapped_column(String(500), primary_key=True)
    #: The platform's own position (min_id, since_id, cursor...) and any catch-up in progress.
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
