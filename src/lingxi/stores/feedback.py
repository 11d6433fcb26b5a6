"""Thumbs up/down on answers, stored for routing and tuning.

Each row keeps what is needed to learn from it without joining other logs: the conversation,
the answer, the model that gave it, the tenant and the rating. ``lingxi route train`` and the
tuning recipes read it through :meth:`FeedbackStore.rows`.

Backends: :class:`SQLiteFeedbackStore` (one file, ``HOME/gateway/feedback.db``; also used with
``gateway.state = "redis"``, whose server keeps no rows) and :class:`PostgresFeedbackStore`
(table ``lingxi_feedback``, shared by every gateway replica with ``gateway.state =
"postgres"``). :func:`open_feedback_store` picks the one the configuration names.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.stores.connect import connect_pg, open_sqlite, sqlite_tx, state_url
from lingxi.stores.migrations import migrate

__all__ = ["FeedbackStore", "PostgresFeedbackStore", "SQLiteFeedbackStore", "feedback_path", "open_feedback_store"]

_COLUMNS = ("id", "created", "response_id", "model", "tenant", "rating", "comment", "messages", "answer")


class FeedbackStore(ABC):
    """Where judgements of answers live."""

    def add(self, *, response_id: str, model: str, rating: int, tenant: str = "", comment: str = "",
            messages: list[dict[str, Any]] | None = None, answer: str = "") -> int:
        """Store one judgement; ``rating`` is +1 (thumbs up) or -1 (thumbs down). Returns its row id.

        Raises:
            UsageError: ``rating`` is neither 1 nor -1.
        """
        if rating not in (1, -1):
            raise UsageError(f"rating must be 1 or -1, got {rating!r}")
        return self._insert((time.time(), response_id, model, tenant, rating, comment,
                             json.dumps(messages or [], ensure_ascii=False), answer))

    @abstractmethod
    def _insert(self, row: tuple) -> int:
        """Insert (created, response_id, model, tenant, rating, comment, messages JSON, answer)."""

    def rows(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every judgement (optionally for one model), oldest first, as dicts with the keys
        id, created, response_id, model, tenant, rating, comment, messages (a list), answer."""
        sql, args = f"SELECT {', '.join(_COLUMNS)} FROM {self._table}", ()
        if model:
            sql, args = sql + f" WHERE model = {self._param}", (model,)
        out = []
        for row in self._select(sql + " ORDER BY id", args):
            d = dict(zip(_COLUMNS, row))
            if isinstance(d["messages"], str):  # SQLite keeps JSON text; PostgreSQL JSONB comes back parsed
                d["messages"] = json.loads(d["messages"])
            out.append(d)
        return out

    _table = ""
    _param = ""

    @abstractmethod
    def _select(self, sql: str, args: tuple) -> list[tuple]: ...

    def close(self) -> None:
        """Release the connection. Safe to call twice."""


# ---------------------------------------------------------------- SQLite


def _m001_feedback(db: Any) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, response_id TEXT NOT NULL,
            model TEXT NOT NULL, tenant TEXT NOT NULL, rating INTEGER NOT NULL, comment TEXT NOT NULL,
            messages TEXT NOT NULL, answer TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS feedback_model ON feedback (model)")


#: Ordered schema changes of the SQLite feedback store.
FEEDBACK_MIGRATIONS = [_m001_feedback]


class SQLiteFeedbackStore(FeedbackStore):
    """Judgements in one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = open_sqlite(self.path)
        migrate(self._db, "feedback", FEEDBACK_MIGRATIONS)
        self._lock = threading.Lock()

    def _insert(self, row: tuple) -> int:
        with self._lock, sqlite_tx(self._db):
            cur = self._db.execute(
                "INSERT INTO feedback (created, response_id, model, tenant, rating, comment, messages, answer)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

    _table, _param = "feedback", "?"

    def _select(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        self._db.close()


# ---------------------------------------------------------------- PostgreSQL


def _m001_pg_feedback(db: Any) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS lingxi_feedback (
            id BIGSERIAL PRIMARY KEY, created DOUBLE PRECISION NOT NULL, response_id TEXT NOT NULL,
            model TEXT NOT NULL, tenant TEXT NOT NULL, rating SMALLINT NOT NULL, comment TEXT NOT NULL,
            messages JSONB NOT NULL, answer TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS lingxi_feedback_model ON lingxi_feedback (model)")


#: Ordered schema changes of the PostgreSQL feedback store.
PG_FEEDBACK_MIGRATIONS = [_m001_pg_feedback]


class PostgresFeedbackStore(FeedbackStore):
    """Judgements in PostgreSQL (table ``lingxi_feedback``), shared by gateway replicas."""

    def __init__(self, url: str):
        self.url = url
        self._conn = connect_pg(url, what="the postgres feedback store")
        migrate(self._conn, "feedback", PG_FEEDBACK_MIGRATIONS)
        self._lock = threading.Lock()

    def _insert(self, row: tuple) -> int:
        with self._lock:
            return int(self._conn.execute(
                "INSERT INTO lingxi_feedback (created, response_id, model, tenant, rating, comment, messages, answer)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) RETURNING id", row).fetchone()[0])

    _table, _param = "lingxi_feedback", "%s"

    def _select(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self._conn.close()


def feedback_path(settings: Any) -> Path:
    """The embedded store's file: ``HOME/gateway/feedback.db``."""
    return settings.home_dir / "gateway" / "feedback.db"


def open_feedback_store(settings: Any) -> FeedbackStore:
    """The feedback store ``gateway.state`` implies: PostgreSQL for ``postgres``, else the SQLite file."""
    if settings.gateway.state == "postgres":
        return PostgresFeedbackStore(state_url(settings, "postgres"))
    return SQLiteFeedbackStore(feedback_path(settings))
