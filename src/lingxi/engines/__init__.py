"""Model backends behind two interfaces: :class:`ChatEngine` (generation) and :class:`Embedder`.

Backends are registered by name in :mod:`lingxi.engines.registry`; the built-ins go through the
same registry as third-party plugins (entry-point groups ``lingxi.engines`` / ``lingxi.embedders``).
A backend's module is imported only when it is used, so ``import lingxi.engines`` stays light.
"""

from __future__ import annotations

import threading
from typing import Any

from lingxi.engines.base import (
    ChatEngine,
    Chunk,
    Completion,
    Embedder,
    GenerationParams,
    Message,
    ModelInfo,
    Prompt,
    Timing,
    Usage,
    collect,
)
from lingxi.engines.registry import Backend, backend, backends

__all__ = [
    "ChatEngine", "Chunk", "Completion", "Embedder", "GenerationParams", "Message", "ModelInfo",
    "Prompt", "Timing", "Usage", "collect", "Backend", "backend", "backends", "create_engine",
    "create_embedder", "embedder_fingerprint", "load_engine", "load_embedder",
]


def create_engine(name: str, config: Any) -> ChatEngine:
    """Build a chat engine from one ``[models.NAME]`` entry (no caching)."""
    return backend("chat", config.engine).load_class()(name, config)


def create_embedder(name: str, config: Any, members: Any = None) -> Embedder:
    """Build an embedder from one ``[embedders.NAME]`` entry (no caching); a concatenation takes
    its built ``members``."""
    cls = backend("embed", config.engine).load_class()
    return cls(name, config, members) if members is not None else cls(name, config)


_cache: dict[tuple[str, str, int], Any] = {}
_cache_lock = threading.Lock()


def load_engine(name: str | None = None, settings: Any = None) -> ChatEngine:
    """The chat engine for a model name (default: ``settings.default_model``), loaded once per process."""
    from lingxi.config import load_config

    settings = settings or load_config()
    name = name or settings.default_model
    config = settings.model(name)
    return _cached("chat", name, config, create_engine)


def load_embedder(name: str | None = None, settings: Any = None) -> Embedder:
    """The embedder for a name (default: ``settings.default_embedder``), loaded once per process."""
    from lingxi.config import load_config

    settings = settings or load_config()
    name = name or settings.default_embedder
    config = settings.embedder(name)
    if config.engine == "concat":  # its members first, each loaded (and cached) under its own name
        members = [load_embedder(member, settings) for member in config.members]
        return _cached("embed", name, config, lambda n, c: create_embedder(n, c, members),
                       extra=embedder_fingerprint(name, settings))
    return _cached("embed", name, config, create_embedder)


def embedder_fingerprint(name: str, settings: Any) -> str:
    """What an embedder's vectors depend on, as text: its options, and its members' for a
    concatenation (cache keys hash this)."""
    config = settings.embedder(name)
    return config.model_dump_json() + "".join(settings.embedder(m).model_dump_json()
                                              for m in getattr(config, "members", None) or [])


def _cached(kind: str, name: str, config: Any, factory: Any, extra: str = "") -> Any:
    # Keyed by the config's content too: the same name with different settings is another model.
    key = (kind, name, hash(config.model_dump_json() + extra))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = factory(name, config)
        return _cache[key]
