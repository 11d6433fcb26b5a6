"""Optional cross-encoder reranking (``knowledge.reranker`` = a local model folder)."""

from __future__ import annotations

import threading
from typing import Any

from lingxi.errors import ModelFileNotFoundError, missing_extra

_models: dict[str, Any] = {}
_lock = threading.Lock()


def _model(path: str) -> Any:
    with _lock:
        if path not in _models:
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as exc:
                raise missing_extra("cross-encoder reranking", "hf", exc) from exc
            from pathlib import Path

            if not Path(path).expanduser().is_dir():
                raise ModelFileNotFoundError(f"knowledge.reranker: no model folder at {path}")
            _models[path] = CrossEncoder(str(Path(path).expanduser()), device="cpu")
        return _models[path]


def rerank(path: str, query: str, candidates: list[tuple[str, str]]) -> list[tuple[str, float]]:
    """Candidates ``(id, text)`` ordered by the cross-encoder's relevance score, best first."""
    if not candidates:
        return []
    scores = _model(path).predict([(query, text) for _, text in candidates], show_progress_bar=False)
    ranked = sorted(zip([i for i, _ in candidates], (float(s) for s in scores), strict=True),
                    key=lambda x: -x[1])
    return ranked
