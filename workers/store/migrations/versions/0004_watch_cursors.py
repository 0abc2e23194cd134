"""Durable cursors of `backfire watch`: the last position per (source, query).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from workers.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_cursors",
        sa.Column("source", sa.String(300), primary_key=True),
        sa.Column("query", sa.String(500), primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watch_cursors")
