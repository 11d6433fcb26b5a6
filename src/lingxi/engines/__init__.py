"""Model backends behind two interfaces: :class:`ChatEngine` (generation) and :class:`Embedder`.

Backends are registered by name; the built-ins go through the same registry as third-party
plugins, which register under the ``lingxi.engines`` / ``lingxi.embedders`` entry-point groups
with a value of ``"module:Class"``. A backend's module is imported only when it is used, so
``import lingxi.engines`` stays light.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
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

__all__ = [
    "ChatEngine", "Chunk", "Completion", "Embedder", "GenerationParams", "Message", "ModelInfo",
    "Prompt", "Timing", "Usage", "collect", "CHAT_BACKENDS", "EMBED_BACKENDS", "create_engine",
    "create_embedder", "load_engine", "load_embedder",
]

#: engine name in config -> "module:Class"
CHAT_BACKENDS: dict[str, str] = {
    "llamacpp": "lingxi.engines.llamacpp:LlamaCppEngine",
    "transformers": "lingxi.engines.transformers:TransformersEngine",
    "openai": "lingxi.engines.openai_upstream:OpenAIUpstream",
    "vllm": "lingxi.engines.vllm:VLLMEngine",
    "fake": "lingxi.engines.fake:FakeEngine",
}
EMBED_BACKENDS: dict[str, str] = {
    "sentence-transformers": "lingxi.engines.embedders:SentenceTransformerEmbedder",
    "e5": "lingxi.engines.embedders:E5Embedder",
    "openai": "lingxi.engines.embedders:OpenAIEmbedder",
    "hash": "lingxi.engines.embedders:HashEmbedder",
}


def _resolve(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _backend(kind: str, registry: dict[str, str], engine: str) -> type:
    if engine not in registry:
        for ep in entry_points(group=f"lingxi.{kind}"):
            registry.setdefault(ep.name, ep.value)
    if engine not in registry:
        from lingxi.errors import UsageError

        raise UsageError(f"unknown {kind[:-1]} backend '{engine}'; expected one of {', '.join(registry)}")
    return _resolve(registry[engine])


def create_engine(name: str, config: Any) -> ChatEngine:
    """Build a chat engine from one ``[models.NAME]`` entry (no caching)."""
    return _backend("engines", CHAT_BACKENDS, config.engine)(name, config)


def create_embedder(name: str, config: Any) -> Embedder:
    """Build an embedder from one ``[embedders.NAME]`` entry (no caching)."""
    return _backend("embedders", EMBED_BACKENDS, config.engine)(name, config)


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
    return _cached("embed", name, config, create_embedder)


def _cached(kind: str, name: str, config: Any, factory: Any) -> Any:
    # Keyed by the config's content too: the same name with different settings is another model.
    key = (kind, name, hash(config.model_dump_json()))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = factory(name, config)
        return _cache[key]
