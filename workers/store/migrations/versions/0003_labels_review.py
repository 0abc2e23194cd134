"""Labels of posts (per key, who and when) and the verdicts' review flag.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from workers.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "post_seq", sa.Integer, sa.ForeignKey("posts.seq", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(16), nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("labelled_by", sa.String(16), nullable=False),
        sa.Column("labelled_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("post_seq", "key", name="uq_labels_post_key"),
    )
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("review", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("review")
    op.drop_table("labels")
