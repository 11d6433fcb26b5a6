"""One migration scheme for every store, on SQLite and on PostgreSQL.

A store's schema is an ordered list of migration functions. :func:`migrate` runs the ones a
database has not seen yet, in order, and records each by its function name in the table
``lingxi_migrations`` (one row per store and step), all in one transaction: a database is
never left with half a schema change. Several stores may share one database (the gateway's
keys, counters, feedback and audit in one PostgreSQL database), hence the store ``name``.

Writing a migration::

    def _m001_feedback(db):            # db: a sqlite3 or a psycopg connection
        db.execute("CREATE TABLE IF NOT EXISTS feedback (...)")

    FEEDBACK_SQLITE = [_m001_feedback]  # append new steps; never edit or reorder shipped ones

    migrate(conn, "feedback", FEEDBACK_SQLITE)

Rules: a shipped step is never changed, only followed by new ones; the *first* step of a
store creates its tables with ``IF NOT EXISTS``, so a database created before this scheme
existed adopts it without losing data. On PostgreSQL the table lives in the connection's
current schema (a knowledge base's own schema for its tables), and concurrent replicas that
start together are serialised by an advisory lock.

What this module does not do: migrate data between backends, or downgrade.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

Migration = Callable[[Any], None]

_TABLE = ("CREATE TABLE IF NOT EXISTS lingxi_migrations (store TEXT NOT NULL, name TEXT NOT NULL, "
          "applied {real} NOT NULL, PRIMARY KEY (store, name))")


def migrate(conn: Any, name: str, migrations: Sequence[Migration]) -> list[str]:
    """Apply the steps of ``migrations`` that ``conn``'s database has not recorded for store ``name``.

    Args:
        conn: a ``sqlite3.Connection`` (not inside a transaction) or a psycopg ``Connection``.
        name: the store's name (``keys``, ``knowledge``, ...), recorded with each step.
        migrations: the store's steps in order; each is recorded under its ``__name__``.

    Returns:
        The names of the steps applied now (empty when the schema was up to date).
    """
    if isinstance(conn, sqlite3.Connection):
        return _migrate_sqlite(conn, name, migrations)
    return _migrate_pg(conn, name, migrations)


def _pending(done: set[str], migrations: Sequence[Migration]) -> list[Migration]:
    names = [step.__name__ for step in migrations]
    if len(set(names)) != len(names):
        raise ValueError(f"migration names must be unique: {names}")
    return [step for step in migrations if step.__name__ not in done]


def _migrate_sqlite(db: sqlite3.Connection, name: str, migrations: Sequence[Migration]) -> list[str]:
    db.execute("BEGIN IMMEDIATE")  # the write lock first: two processes opening one file queue here
    try:
        db.execute(_TABLE.format(real="REAL"))
        done = {r[0] for r in db.execute("SELECT name FROM lingxi_migrations WHERE store = ?", (name,))}
        applied = []
        for step in _pending(done, migrations):
            step(db)
            db.execute("INSERT INTO lingxi_migrations VALUES (?, ?, ?)", (name, step.__name__, time.time()))
            applied.append(step.__name__)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return applied


def _migrate_pg(conn: Any, name: str, migrations: Sequence[Migration]) -> list[str]:
    with conn.transaction():
        # Serialise replicas that start at once (CREATE TABLE IF NOT EXISTS itself is not race-free).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('lingxi_migrations'))")
        conn.execute(_TABLE.format(real="DOUBLE PRECISION"))
        done = {r[0] for r in conn.execute("SELECT name FROM lingxi_migrations WHERE store = %s", (name,)).fetchall()}
        applied = []
        for step in _pending(done, migrations):
            step(conn)
            conn.execute("INSERT INTO lingxi_migrations VALUES (%s, %s, %s)", (name, step.__name__, time.time()))
            applied.append(step.__name__)
    return applied
