"""One way to find a store's URL and one way to connect to each kind of backend.

Every store in :mod:`lingxi.stores` gets its connection here, so connection options (WAL and
busy timeout for SQLite, autocommit and readable errors for PostgreSQL, reply decoding for
Redis) are decided once:

- :func:`resolve_url`: a URL from the config, else from the environment, else a
  :class:`~lingxi.errors.ConfigError` naming both places;
- :func:`open_sqlite`: an embedded database file;
- :func:`connect_pg` / :func:`connect_pg_async`: PostgreSQL through psycopg 3;
- :func:`connect_redis`: Redis/Valkey through redis-py (sync or asyncio client).

What this module does not do: create tables (see :mod:`lingxi.stores.migrations`) or pool
connections (each store keeps the few it needs).
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from lingxi.errors import ConfigError, UpstreamError, missing_extra


def resolve_url(value: str | None, *env: str, what: str, needed_for: str = "", source: str | None = None) -> str:
    """The URL configured at ``what`` (a config key such as ``gateway.pg_url``), else the first
    of the environment variables ``env`` that is set.

    Args:
        value: the config value (None or "" = not set).
        env: environment variable names, tried in order.
        what: the config key, named in the error.
        needed_for: why the URL is needed (e.g. ``gateway.state = 'postgres'``), named in the error.
        source: the config file, named in the error.

    Raises:
        ConfigError: neither the config nor the environment gives a URL.
    """
    if value:
        return value
    for name in env:
        if os.environ.get(name):
            return os.environ[name]
    alternatives = " or ".join(f"${name}" for name in env)
    why = f" for {needed_for}" if needed_for else ""
    also = f" (or set {alternatives})" if alternatives else ""
    raise ConfigError([f"{what}: a URL is required{why}{also}"], source)


def state_url(settings: Any, kind: str) -> str:
    """The URL of the gateway's shared state for ``kind`` ``"postgres"`` or ``"redis"``:
    ``gateway.pg_url`` / ``$LINGXI_PG_URL`` or ``gateway.redis_url`` / ``$LINGXI_REDIS_URL``.
    Keys, quota counters, feedback and the audit log all use it."""
    key, env = ("pg_url", "LINGXI_PG_URL") if kind == "postgres" else ("redis_url", "LINGXI_REDIS_URL")
    return resolve_url(getattr(settings.gateway, key), env, what=f"gateway.{key}",
                       needed_for=f"gateway.state = '{kind}'", source=getattr(settings, "source", None))


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# ---------------------------------------------------------------- SQLite


def open_sqlite(path: str | os.PathLike[str], *, durable: bool = True, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """An SQLite connection for a store: WAL (readers never wait for the writer), foreign keys
    on, a busy timeout instead of an immediate "database is locked", usable from any thread
    (the store serialises access with its own lock) and in autocommit mode (a store opens its
    transactions explicitly with ``BEGIN IMMEDIATE``, see :func:`sqlite_tx`).

    Args:
        path: the database file; its folder is created.
        durable: False trades the last transactions before a power loss (never a process crash,
            never corruption) for fewer fsyncs: ``synchronous=NORMAL``, for caches.
        busy_timeout_s: how long a writer waits for another one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    db.execute("PRAGMA foreign_keys=ON")
    if not durable:
        db.execute("PRAGMA synchronous=NORMAL")
    return db


class sqlite_tx:
    """``with sqlite_tx(db):`` — one ``BEGIN IMMEDIATE`` transaction (the write lock is taken at
    the start, so two writers queue on the busy timeout instead of failing half-way),
    committed on success and rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


# ---------------------------------------------------------------- PostgreSQL


def _psycopg(what: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise missing_extra(what, "pg", exc) from exc
    return psycopg


def _pg_error(url: str, exc: Exception) -> UpstreamError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UpstreamError(safe_url(url), f"cannot connect to PostgreSQL: {first}")


def connect_pg(url: str, *, what: str = "the postgres store") -> Any:
    """A synchronous psycopg connection in autocommit mode (a store opens its transactions with
    ``conn.transaction()``).

    Raises:
        MissingExtraError: psycopg is not installed (the ``pg`` extra), naming ``what``.
        UpstreamError: the server cannot be reached (the URL is shown without its password).
    """
    psycopg = _psycopg(what)
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise _pg_error(url, exc) from None


async def connect_pg_async(url: str, *, what: str = "the postgres store") -> Any:
    """An asyncio psycopg connection in autocommit mode; errors as :func:`connect_pg`."""
    psycopg = _psycopg(what)
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise _pg_error(url, exc) from None


# ---------------------------------------------------------------- Redis


def connect_redis(url: str, *, asyncio: bool = True, decode_responses: bool = True,
                  what: str = "the redis store") -> Any:
    """A redis-py client for ``url`` (Redis or Valkey): the asyncio one for the request path,
    the synchronous one (``asyncio=False``) for management commands. Connecting is lazy: an
    unreachable server shows up at the first command as ``redis.ConnectionError``.

    Raises:
        MissingExtraError: redis-py is not installed (the ``redis`` extra), naming ``what``.
    """
    try:
        if asyncio:
            import redis.asyncio as client
        else:
            import redis as client
    except ImportError as exc:
        raise missing_extra(what, "redis", exc) from exc
    return client.Redis.from_url(url, decode_responses=decode_responses)


def connect_falkordb(url: str, *, what: str = "the FalkorDB graph store") -> Any:
    """A FalkorDB client (a Redis server with the FalkorDB module) for ``redis://host:port`` or
    ``unix:///path/to/socket``. Connecting is lazy, as for :func:`connect_redis`.

    Raises:
        MissingExtraError: the ``falkordb`` client is not installed (the ``graph`` extra).
    """
    try:
        from falkordb import FalkorDB
    except ImportError as exc:
        raise missing_extra(what, "graph", exc) from exc
    if url.startswith("unix://"):
        return FalkorDB(unix_socket_path=url[len("unix://"):])
    return FalkorDB.from_url(url)
