"""API keys: `bf_<id>_<secret>`. Only sha256(secret) is stored; the id finds the row and the
hashes are compared in constant time, so neither a timing nor a database leak reveals a key."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import weakref
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
    for cache in list(_CACHES):  # an id cached as unknown in this process is known now
        cache.clear()
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
    for cache in list(_CACHES):  # this process's API caches see the revocation at once
        cache.clear()
    if not rows:
        raise NotFound(f"No active API key with id or name {key_id_or_name!r}.")
    return len(rows)


def list_keys(db: Database) -> list[ApiKey]:
    with db.read() as s:
        return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def authenticate(db: Database, key: str | None) -> Principal:
    """The key's owner, or `Unauthenticated` (401) / `KeyRevoked` (403)."""
    m = _parse(key)
    row = None
    if m:
        with db.read() as s:
            row = s.get(ApiKey, m.group(1))
    entry = None if row is None else (row.secret_hash, row.name, row.revoked_at is not None)
    return _verify(m, entry)


#: (secret hash, name, revoked) of a key row, or None for an unknown key id.
_Entry = tuple[str, str, bool]


def _parse(key: str | None) -> re.Match[str] | None:
    if not key:
        raise Unauthenticated("This endpoint needs an API key: send `Authorization: Bearer KEY`.")
    return _KEY.match(key.strip())


def _verify(m: re.Match[str] | None, entry: _Entry | None) -> Principal:
    # Compare even when the id is unknown so both failures take the same time.
    expected = entry[0] if entry is not None else "0" * 64
    given = _hash(m.group(2)) if m else "1" * 64
    if not hmac.compare_digest(expected, given) or entry is None or m is None:
        raise Unauthenticated("The API key is not valid.")
    if entry[2]:
        raise KeyRevoked("This API key has been revoked; ask for a new one.")
    return Principal(m.group(1), entry[1])


_CACHES: weakref.WeakSet[KeyCache] = weakref.WeakSet()


class KeyCache:
    """`authenticate` for an API process, reusing each key row it read for `ttl_s` seconds, so
    most requests authenticate without a database round trip (or a hop to a worker thread).

    Only the row is cached, never the verdict: the given secret is hashed and compared in
    constant time on every request, and the revoked flag is cached with the row, so a revoked
    key is refused within `ttl_s` seconds in every process (at once in the process that calls
    `revoke_key`). An unknown key id is cached the same way (as "no row"), so it takes the same
    path as a known id with a wrong secret, at the same cost: which ids exist cannot be told
    from answer times, and a repeated bogus key reads the database once per `ttl_s`. At most
    `max_entries` ids are kept (the oldest go first), so random ids cannot grow it unbounded."""

    def __init__(self, db: Database, ttl_s: float, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        #: key id -> (expiry, row entry or None for "no such id"); insertion ordered.
        self._rows: dict[str, tuple[float, _Entry | None]] = {}
        _CACHES.add(self)

    def cached(self, key: str | None) -> Principal | None:
        """The key's owner (or 401/403) from the cache alone; None when the cache cannot tell
        (row not read yet or read too long ago): then call `authenticate` (database)."""
        m = _parse(key)
        if m is None:
            return _verify(None, None)
        hit = self._rows.get(m.group(1))
        if hit is None or hit[0] <= time.monotonic():
            return None
        return _verify(m, hit[1])

    def authenticate(self, key: str | None) -> Principal:
        """Like the module's `authenticate` (reads the row), remembering the row."""
        m = _parse(key)
        if m is None:
            return _verify(None, None)
        with self.db.read() as s:
            row = s.get(ApiKey, m.group(1))
        entry = None if row is None else (row.secret_hash, row.name, row.revoked_at is not None)
        if self.ttl_s > 0:
            self._remember(m.group(1), entry)
        return _verify(m, entry)

    def _remember(self, key_id: str, entry: _Entry | None) -> None:
        # Called from API worker threads: dict operations are atomic under the GIL, and a lost
        # race only costs one more database read.
        rows = self._rows
        rows.pop(key_id, None)
        while len(rows) >= self.max_entries:
            try:
                rows.pop(next(iter(rows)))
            except (StopIteration, KeyError, RuntimeError):
                break
        rows[key_id] = (time.monotonic() + self.ttl_s, entry)

    def clear(self) -> None:
        self._rows.clear()
