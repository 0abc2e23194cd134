"""Alert rules and their deliveries (moved from data_dir/alerts.json into the store).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from workers.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Alert windows: a hashtag's recent posts, case-insensitively.
    op.create_index("ix_posts_tag_time", "posts", [sa.text("lower(hashtag)"), "posted_at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(16), nullable=True),
        sa.Column("hashtag", sa.String(200), nullable=False),
        sa.Column("hashtag_key", sa.String(200), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_s", sa.Integer, nullable=False),
        sa.Column("min_posts", sa.Integer, nullable=False),
        sa.Column("webhook", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("armed", sa.Boolean, nullable=False),
        sa.Column("fired", sa.Integer, nullable=False),
        sa.Column("evaluated_until", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alert_rules_tag", "alert_rules", ["hashtag_key"])
    op.create_index("ix_alert_rules_owner", "alert_rules", ["owner"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "rule_id",
            sa.String(16),
            sa.ForeignKey("alert_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("posts", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alert_deliveries_rule", "alert_deliveries", ["rule_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_rule", "alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_rules_owner", "alert_rules")
    op.drop_index("ix_alert_rules_tag", "alert_rules")
    op.drop_table("alert_rules")
    op.drop_index("ix_posts_tag_time", "posts")
