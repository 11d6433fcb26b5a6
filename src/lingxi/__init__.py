"""Lingxi (灵犀): choose, ground, adapt, shrink, serve and measure LLMs, self-hosted.

``import lingxi`` is cheap: it imports no engine, no torch, no pydantic. The public names
below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "lingxi.config",
    "Settings": "lingxi.config",
    "ChatEngine": "lingxi.engines",
    "Embedder": "lingxi.engines",
    "GenerationParams": "lingxi.engines",
    "Completion": "lingxi.engines",
    "load_engine": "lingxi.engines",
    "load_embedder": "lingxi.engines",
    "LingxiError": "lingxi.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lingxi' has no attribute {name!r}")
