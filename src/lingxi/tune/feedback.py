"""Read the gateway's stored thumbs up/down (SQLite or PostgreSQL, as ``gateway.state`` says)."""

from __future__ import annotations

from typing import Any

from lingxi.errors import UsageError


def feedback_rows(settings: Any, model: str | None = None) -> list[dict[str, Any]]:
    """Every feedback row (optionally for one model), oldest first.

    Raises:
        UsageError: the embedded store has no file yet (nothing was ever rated).
    """
    from lingxi.stores.feedback import feedback_path, open_feedback_store

    if settings.gateway.state != "postgres" and not feedback_path(settings).is_file():
        raise UsageError(f"no feedback recorded yet (looked for {feedback_path(settings)})")
    store = open_feedback_store(settings)
    try:
        return store.rows(model)
    finally:
        store.close()
