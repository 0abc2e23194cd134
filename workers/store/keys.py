"""API keys: `bf_<id>_<secret>`. Only sha256(secret) is stored; the id finds the row and the
hashes are compared in constant time, so neither a timing nor a database leak reveals a key."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from workers.errors import KeyRevoked, NotFound, Unauthenticated
from workers.store.db import Database
from workers.store.models import ApiKey, utcnow

_KEY = re.compile(r"^bf_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str) -> str:
    """Create a key and return it: the only time the full key exists outside its owner."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with db.write() as s:
        s.add(ApiKey(id=key_id, name=name, secret_hash=_hash(secret)))
    return f"bf_{key_id}_{secret}"


def revoke_key(db: Database, key_id_or_name: str) -> int:
    """Revoke by key id (or by name: every active key of that name). Returns how many."""
    with db.write() as s:
        rows = s.scalars(
            select(ApiKey).where(
                (ApiKey.id == key_id_or_name) | (ApiKey.name == key_id_or_name),
                ApiKey.revoked_at.is_(None),
            )
        ).all()
        for row in rows:
            row.revoked_at = utcnow()
    if not rows:
        raise NotFound(f"No active API key with id or name {key_id_or_name!r}.")
    return len(rows)


def list_keys(db: Database) -> list[ApiKey]:
    with db.read() as s:
        return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def authenticate(db: Database, key: str | None) -> Principal:
    """The key's owner, or `Unauthenticated` (401) / `KeyRevoked` (403)."""
    if not key:
        raise Unauthenticated("This endpoint needs an API key: send `Authorization: Bearer KEY`.")
    m = _KEY.match(key.strip())
    row = None
    if m:
        with db.read() as s:
            row = s.get(ApiKey, m.group(1))
    # Compare even when the id is unknown so both failures take the same time.
    expected = row.secret_hash if row is not None else "0" * 64
    given = _hash(m.group(2)) if m else "1" * 64
    if not hmac.compare_digest(expected, given) or row is None:
        raise Unauthenticated("The API key is not valid.")
    if row.revoked_at is not None:
        raise KeyRevoked("This API key has been revoked; ask for a new one.")
    return Principal(row.id, row.name)
