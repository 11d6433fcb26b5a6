"""Read the gateway's stored thumbs up/down (its feedback store, wherever it lives)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def feedback_rows(path: Path, model: str | None = None) -> list[dict[str, Any]]:
    """Every feedback row of the store at ``path`` (optionally for one model), oldest first."""
    from lingxi.stores.feedback import SQLiteFeedbackStore as FeedbackStore
    store = FeedbackStore(path)
    try:
        return store.rows(model)
    finally:
        store.close()
