"""Alembic environment: always run with a connection handed over by `Database.upgrade`."""

from __future__ import annotations

from alembic import context

from workers.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
