"""Posts, verdicts, scene cache, API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from workers.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "posts",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("owner", sa.String(16), nullable=False),
        sa.Column("post_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("hashtag", sa.String(200), nullable=True),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=True),
        sa.Column("created_at", sa.String(64), nullable=True),
        sa.Column("posted_at", UTCDateTime(), nullable=False),
        sa.Column("image_url", sa.Text, nullable=True),
        sa.Column("callback_url", sa.Text, nullable=True),
        sa.Column("media_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.JSON, nullable=True),
        sa.Column("pipeline_version", sa.String(64), nullable=True),
        sa.Column("accepted_at", UTCDateTime(), nullable=False),
        sa.Column("touched_at", UTCDateTime(), nullable=False),
        sa.Column("enqueued_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("webhook_status", sa.String(16), nullable=True),
        sa.Column("webhook_attempts", sa.Integer, nullable=False),
        sa.UniqueConstraint("owner", "post_id", name="uq_posts_owner_post_id"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_posts_owner_idem"),
    )
    op.create_index("ix_posts_status_touched", "posts", ["status", "touched_at"])
    op.create_index("ix_posts_owner_seq", "posts", ["owner", "seq"])
    op.create_index("ix_posts_hashtag", "posts", ["hashtag"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "post_seq", sa.Integer, sa.ForeignKey("posts.seq", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("detected", sa.JSON, nullable=False),
        sa.Column("scoring_s", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("post_seq", "pipeline_version", name="uq_verdicts_post_version"),
    )
    op.create_table(
        "scene_cache",
        sa.Column("media_sha256", sa.String(64), primary_key=True),
        sa.Column("pipeline_version", sa.String(64), primary_key=True),
        sa.Column("scenes", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scene_cache")
    op.drop_table("verdicts")
    op.drop_index("ix_posts_hashtag", "posts")
    op.drop_index("ix_posts_owner_seq", "posts")
    op.drop_index("ix_posts_status_touched", "posts")
    op.drop_table("posts")
    op.drop_table("api_keys")
