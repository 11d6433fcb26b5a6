"""Thumbs up/down on answers, stored for routing and tuning.

One SQLite file (``HOME/gateway/feedback.db``). Each row keeps what is needed to learn from it
without joining other logs: the conversation, the answer, the model that gave it, the tenant
and the rating. ``lingxi route train`` and the tuning recipes read it through :meth:`rows`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.stores.connect import open_sqlite
from lingxi.stores.migrations import migrate


def _m001_feedback(db: Any) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, response_id TEXT NOT NULL,
            model TEXT NOT NULL, tenant TEXT NOT NULL, rating INTEGER NOT NULL, comment TEXT NOT NULL,
            messages TEXT NOT NULL, answer TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS feedback_model ON feedback (model)")


FEEDBACK_MIGRATIONS = [_m001_feedback]


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = open_sqlite(self.path)
        migrate(self._db, "feedback", FEEDBACK_MIGRATIONS)
        self._lock = threading.Lock()

    def add(self, *, response_id: str, model: str, rating: int, tenant: str = "", comment: str = "",
            messages: list[dict[str, Any]] | None = None, answer: str = "") -> int:
        """Store one judgement; ``rating`` is +1 (thumbs up) or -1 (thumbs down). Returns its row id."""
        if rating not in (1, -1):
            raise UsageError(f"rating must be 1 or -1, got {rating!r}")
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO feedback (created, response_id, model, tenant, rating, comment, messages, answer)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), response_id, model, tenant, rating, comment,
                 json.dumps(messages or [], ensure_ascii=False), answer),
            )
            return int(cur.lastrowid)

    def rows(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every judgement (optionally for one model), oldest first."""
        sql = "SELECT id, created, response_id, model, tenant, rating, comment, messages, answer FROM feedback"
        args: tuple = ()
        if model:
            sql, args = sql + " WHERE model = ?", (model,)
        with self._lock:
            found = self._db.execute(sql + " ORDER BY id", args).fetchall()
        cols = ("id", "created", "response_id", "model", "tenant", "rating", "comment", "messages", "answer")
        out = []
        for row in found:
            d = dict(zip(cols, row))
            d["messages"] = json.loads(d["messages"])
            out.append(d)
        return out

    def close(self) -> None:
        self._db.close()
