"""The durable store: the database is the source of truth (posts, verdicts, API keys); the
media blobs live next to it, content-addressed. Light: SQLAlchemy only, never torch."""

from workers.store.db import Database, open_database

__all__ = ["Database", "open_database"]
