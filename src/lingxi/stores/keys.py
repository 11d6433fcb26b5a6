"""API keys and tenants: who may call the gateway, and with which limits.

A key is a random secret (``lx-`` + 43 URL-safe characters, 256 bits) shown once at creation.
Only its SHA-256 is stored: a key has full entropy, so a slow password hash would add latency
to every request and no security. Each key belongs to a tenant (used for metrics, cost, cache
scope and routing), may carry knowledge-base groups (access control for ``kb:`` models), and
carries its own limits, counted per key by :mod:`lingxi.stores.limits`.

Stores behind one interface: :class:`SQLiteKeyStore` (embedded default, one file under
Lingxi's home), :class:`RedisKeyStore` and :class:`PostgresKeyStore` (shared by several
gateway replicas). Management (create/list/revoke/rotate) is synchronous, for the CLI and the
admin API; the per-request lookup is async.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lingxi.errors import NotFoundError, UsageError
from lingxi.stores.connect import connect_pg, connect_pg_async, connect_redis, open_sqlite, sqlite_tx, state_url
from lingxi.stores.migrations import migrate

KEY_PREFIX = "lx-"


@dataclass(frozen=True)
class Limits:
    """Requests and tokens per minute and per day; None = unlimited."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and value < 1:
                raise UsageError(f"{name} must be a positive number, got {value}")


@dataclass(frozen=True)
class ApiKey:
    """What the gateway knows about a caller (never the secret itself)."""

    id: str
    tenant: str
    name: str = ""
    groups: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    created: float = 0.0
    revoked: bool = False
    hint: str = ""  # the first characters of the secret, to tell keys apart in listings

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = list(self.groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiKey:
        return cls(**{**d, "groups": tuple(d.get("groups") or ()), "limits": Limits(**(d.get("limits") or {}))})


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _rotated(key: ApiKey | None, key_id: str) -> tuple[str, ApiKey]:
    """A new secret for ``key`` and the key as it will be stored with it."""
    if key is None:
        raise NotFoundError(f"no API key with id '{key_id}'")
    if key.revoked:
        raise UsageError(f"API key '{key_id}' is revoked; create a new key instead of rotating it")
    secret = _new_secret()
    return secret, replace(key, hint=secret[: len(KEY_PREFIX) + 4])


def _stored(secret: str, key: ApiKey) -> tuple:
    """The row an SQL key store inserts: id, hash, tenant, name, groups JSON, limits JSON, created, hint."""
    return (key.id, hash_secret(secret), key.tenant, key.name, json.dumps(list(key.groups)),
            json.dumps(asdict(key.limits)), key.created, key.hint)


def _new_key(tenant: str, name: str, groups: list[str] | tuple[str, ...], limits: Limits) -> tuple[str, ApiKey]:
    if not tenant or not tenant.strip():
        raise UsageError("a key needs a tenant name")
    secret = _new_secret()
    key = ApiKey(
        id="key_" + secrets.token_hex(6),
        tenant=tenant.strip(),
        name=name,
        groups=tuple(g.strip() for g in groups if g.strip()),
        limits=limits,
        created=time.time(),
        hint=secret[: len(KEY_PREFIX) + 4],
    )
    return secret, key


class KeyStore(ABC):
    """Where keys live. ``authenticate`` is on the request path and must be fast."""

    @abstractmethod
    def create(self, tenant: str, *, name: str = "", groups: list[str] | tuple[str, ...] = (),
               limits: Limits = Limits()) -> tuple[str, ApiKey]:
        """Make a key; returns ``(secret, key)``. The secret is not stored and cannot be shown again."""

    @abstractmethod
    def list(self, *, include_revoked: bool = False) -> list[ApiKey]: ...

    @abstractmethod
    def revoke(self, key_id: str) -> ApiKey:
        """Revoke by id. Raises NotFoundError for an unknown id."""

    @abstractmethod
    def rotate(self, key_id: str) -> tuple[str, ApiKey]:
        """Give key ``key_id`` a new secret; returns ``(secret, key)``. The key keeps its id,
        tenant, name, groups and limits (so its quota counters carry on); the old secret stops
        working at once. The new secret is shown once, like at creation.

        Raises:
            NotFoundError: no key has this id.
            UsageError: the key is revoked (create a new one instead).
        """

    @abstractmethod
    async def authenticate(self, secret: str) -> ApiKey | None:
        """The active key for ``secret``, or None."""

    @abstractmethod
    async def has_keys(self) -> bool:
        """Whether any active key exists (with none, the gateway serves loopback only)."""

    def has_keys_sync(self) -> bool:
        return any(True for _ in self.list())

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    async def aclose(self) -> None:
        """Release connections, async ones included (from the event loop that used them)."""
        self.close()


# ---------------------------------------------------------------- SQLite


def _m001_keys(db: Any) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS keys (
            id TEXT PRIMARY KEY, hash TEXT UNIQUE NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL,
            groups TEXT NOT NULL, limits TEXT NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
            hint TEXT NOT NULL)"""
    )


#: Ordered schema changes of the SQLite key store (see :mod:`lingxi.stores.migrations`).
KEY_MIGRATIONS = [_m001_keys]


class SQLiteKeyStore(KeyStore):
    """Keys in one SQLite file (default ``HOME/gateway/keys.db``)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._db = open_sqlite(self.path)
        migrate(self._db, "keys", KEY_MIGRATIONS)
        self._lock = threading.Lock()

    def create(self, tenant, *, name="", groups=(), limits=Limits()):
        secret, key = _new_key(tenant, name, groups, limits)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO keys (id, hash, tenant, name, groups, limits, created, revoked, hint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                _stored(secret, key),
            )
        return secret, key

    def _row(self, row: tuple) -> ApiKey:
        id_, tenant, name, groups, limits, created, revoked, hint = row
        return ApiKey(id=id_, tenant=tenant, name=name, groups=tuple(json.loads(groups)),
                      limits=Limits(**json.loads(limits)), created=created, revoked=bool(revoked), hint=hint)

    _COLUMNS = "id, tenant, name, groups, limits, created, revoked, hint"

    def list(self, *, include_revoked=False):
        where = "" if include_revoked else " WHERE revoked = 0"
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLUMNS} FROM keys{where} ORDER BY created").fetchall()
        return [self._row(r) for r in rows]

    def revoke(self, key_id):
        with self._lock, self._db:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no API key with id '{key_id}'")
            self._db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,))
        return self._row(row[:6] + (1,) + row[7:])

    def rotate(self, key_id):
        with self._lock, sqlite_tx(self._db):
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
            secret, key = _rotated(self._row(row) if row else None, key_id)
            self._db.execute("UPDATE keys SET hash = ?, hint = ? WHERE id = ?", (hash_secret(secret), key.hint, key_id))
        return secret, key

    async def authenticate(self, secret):
        # A primary-key lookup in SQLite takes microseconds: cheaper than a thread hop.
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM keys WHERE hash = ? AND revoked = 0", (hash_secret(secret),)
            ).fetchone()
        return self._row(row) if row else None

    async def has_keys(self):
        return self.has_keys_sync()

    def has_keys_sync(self):
        with self._lock:
            return self._db.execute("SELECT 1 FROM keys WHERE revoked = 0 LIMIT 1").fetchone() is not None

    def close(self):
        self._db.close()


# ---------------------------------------------------------------- Redis


class RedisKeyStore(KeyStore):
    """Keys in Redis/Valkey, shared by every gateway replica pointing at the same server.

    Layout: ``{prefix}key:{sha256}`` -> the key as JSON; ``{prefix}id:{id}`` -> its sha256;
    ``{prefix}active`` -> set of active key ids.
    """

    def __init__(self, url: str, prefix: str = "lingxi:"):
        self.url = url
        self.prefix = prefix
        self._sync = connect_redis(url, asyncio=False, what="the redis gateway state")
        self._async = connect_redis(url, what="the redis gateway state")

    def create(self, tenant, *, name="", groups=(), limits=Limits()):
        secret, key = _new_key(tenant, name, groups, limits)
        digest = hash_secret(secret)
        pipe = self._sync.pipeline()
        pipe.set(f"{self.prefix}key:{digest}", json.dumps(key.to_dict()))
        pipe.set(f"{self.prefix}id:{key.id}", digest)
        pipe.sadd(f"{self.prefix}active", key.id)
        pipe.execute()
        return secret, key

    def _all(self) -> list[ApiKey]:
        digests = [self._sync.get(k) for k in self._sync.scan_iter(f"{self.prefix}id:*")]
        raw = self._sync.mget([f"{self.prefix}key:{d}" for d in digests if d]) if digests else []
        return [ApiKey.from_dict(json.loads(r)) for r in raw if r]

    def list(self, *, include_revoked=False):
        keys = sorted(self._all(), key=lambda k: k.created)
        return keys if include_revoked else [k for k in keys if not k.revoked]

    def revoke(self, key_id):
        def revoked(key: ApiKey | None) -> tuple[None, ApiKey]:
            if key is None:
                raise NotFoundError(f"no API key with id '{key_id}'")
            return None, replace(key, revoked=True)

        return self._change(key_id, revoked)[1]

    def rotate(self, key_id):
        return self._change(key_id, lambda key: _rotated(key, key_id))

    def _change(self, key_id: str, change: Any) -> tuple[Any, ApiKey]:
        """Apply ``change(key) -> (new secret or None, new key)`` atomically: WATCH makes a
        concurrent revoke or rotate of the same key retry this one, so the two never mix."""
        from redis.exceptions import WatchError

        id_slot = f"{self.prefix}id:{key_id}"
        with self._sync.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(id_slot)
                    old = pipe.get(id_slot)
                    raw = pipe.get(f"{self.prefix}key:{old}") if old else None
                    secret, key = change(ApiKey.from_dict(json.loads(raw)) if raw else None)
                    digest = hash_secret(secret) if secret else old
                    pipe.multi()
                    if digest != old:
                        pipe.delete(f"{self.prefix}key:{old}")
                        pipe.set(id_slot, digest)
                    pipe.set(f"{self.prefix}key:{digest}", json.dumps(key.to_dict()))
                    if key.revoked:
                        pipe.srem(f"{self.prefix}active", key_id)
                    pipe.execute()
                    return secret, key
                except WatchError:
                    continue

    async def authenticate(self, secret):
        raw = await self._async.get(f"{self.prefix}key:{hash_secret(secret)}")
        if raw is None:
            return None
        key = ApiKey.from_dict(json.loads(raw))
        return None if key.revoked else key

    async def has_keys(self):
        return await self._async.scard(f"{self.prefix}active") > 0

    def has_keys_sync(self):
        return self._sync.scard(f"{self.prefix}active") > 0

    def close(self):
        self._sync.close()

    async def aclose(self):
        await self._async.aclose()
        self.close()


# ---------------------------------------------------------------- PostgreSQL


def _m001_pg_keys(db: Any) -> None:
    db.execute("""CREATE TABLE IF NOT EXISTS lingxi_api_keys (
        id TEXT PRIMARY KEY, hash TEXT UNIQUE NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL,
        groups JSONB NOT NULL, limits JSONB NOT NULL, created DOUBLE PRECISION NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE, hint TEXT NOT NULL)""")


#: Ordered schema changes of the PostgreSQL key store.
PG_KEY_MIGRATIONS = [_m001_pg_keys]


def _pg_row(row: tuple) -> ApiKey:
    id_, tenant, name, groups, limits, created, revoked, hint = row
    return ApiKey(id=id_, tenant=tenant, name=name, groups=tuple(groups), limits=Limits(**limits),
                  created=created, revoked=revoked, hint=hint)


class PostgresKeyStore(KeyStore):
    """Keys in PostgreSQL (table ``lingxi_api_keys``), shared by every gateway replica.

    One async connection serves the request path; psycopg runs its queries one at a time,
    which a primary-key lookup makes cheap.
    """

    _COLUMNS = "id, tenant, name, groups, limits, created, revoked, hint"

    def __init__(self, url: str):
        self.url = url
        self._sync = connect_pg(url, what="the postgres gateway state")
        migrate(self._sync, "keys", PG_KEY_MIGRATIONS)
        self._async: Any = None

    def create(self, tenant, *, name="", groups=(), limits=Limits()):
        secret, key = _new_key(tenant, name, groups, limits)
        self._sync.execute(
            "INSERT INTO lingxi_api_keys (id, hash, tenant, name, groups, limits, created, revoked, hint)"
            " VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, FALSE, %s)",
            _stored(secret, key),
        )
        return secret, key

    def list(self, *, include_revoked=False):
        where = "" if include_revoked else " WHERE NOT revoked"
        rows = self._sync.execute(f"SELECT {self._COLUMNS} FROM lingxi_api_keys{where} ORDER BY created").fetchall()
        return [_pg_row(r) for r in rows]

    def revoke(self, key_id):
        row = self._sync.execute(
            f"UPDATE lingxi_api_keys SET revoked = TRUE WHERE id = %s RETURNING {self._COLUMNS}", (key_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no API key with id '{key_id}'")
        return _pg_row(row)

    def rotate(self, key_id):
        with self._sync.transaction():
            row = self._sync.execute(f"SELECT {self._COLUMNS} FROM lingxi_api_keys WHERE id = %s FOR UPDATE",
                                     (key_id,)).fetchone()
            secret, key = _rotated(_pg_row(row) if row else None, key_id)
            self._sync.execute("UPDATE lingxi_api_keys SET hash = %s, hint = %s WHERE id = %s",
                               (hash_secret(secret), key.hint, key_id))
        return secret, key

    async def _conn(self) -> Any:
        if self._async is None or self._async.closed:
            self._async = await connect_pg_async(self.url, what="the postgres gateway state")
        return self._async

    async def authenticate(self, secret):
        conn = await self._conn()
        cur = await conn.execute(
            f"SELECT {self._COLUMNS} FROM lingxi_api_keys WHERE hash = %s AND NOT revoked", (hash_secret(secret),)
        )
        row = await cur.fetchone()
        return _pg_row(row) if row else None

    async def has_keys(self):
        conn = await self._conn()
        cur = await conn.execute("SELECT 1 FROM lingxi_api_keys WHERE NOT revoked LIMIT 1")
        return await cur.fetchone() is not None

    def has_keys_sync(self):
        return self._sync.execute("SELECT 1 FROM lingxi_api_keys WHERE NOT revoked LIMIT 1").fetchone() is not None

    def close(self):
        self._sync.close()

    async def aclose(self):
        if self._async is not None:
            await self._async.close()
        self.close()


def open_key_store(settings: Any) -> KeyStore:
    """The key store the configuration names (``gateway.state``)."""
    if settings.gateway.state == "redis":
        return RedisKeyStore(state_url(settings, "redis"))
    if settings.gateway.state == "postgres":
        return PostgresKeyStore(state_url(settings, "postgres"))
    return SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
