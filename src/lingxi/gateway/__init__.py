"""The OpenAI-compatible gateway (``lingxi serve``): one ``/v1`` endpoint in front of local and
cloud models, with replicas, routing, a semantic cache, API keys and quotas, metrics and a web UI.

Importing this package is cheap; FastAPI and uvicorn load when an app or server is built.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": "lingxi.gateway.app",
    "Gateway": "lingxi.gateway.service",
    "Caller": "lingxi.identity",
    "serve": "lingxi.gateway.server",
    "ServerThread": "lingxi.gateway.server",
    "open_key_store": "lingxi.stores.keys",
    "Limits": "lingxi.stores.keys",
    "FeedbackStore": "lingxi.stores.feedback",
    "open_feedback_store": "lingxi.stores.feedback",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lingxi.gateway' has no attribute {name!r}")
