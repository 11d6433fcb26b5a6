"""The one list of backends: which ``engine = NAME`` values exist and what each builds.

A backend is a class (a :class:`~lingxi.engines.base.ChatEngine` or
:class:`~lingxi.engines.base.Embedder`) plus the pydantic model that validates its options in
the config file (``[models.NAME]`` / ``[embedders.NAME]``). The built-ins are listed in
:data:`CHAT` and :data:`EMBED`; their option models live in :mod:`lingxi.config`, so validating
a config imports no backend. A third-party package registers more under the ``lingxi.engines``
(chat) or ``lingxi.embedders`` entry-point group, with a value of ``"module:Class"``; the class
declares its options as ``options_model`` (a subclass of :class:`lingxi.config.ChatModelOptions`
or :class:`lingxi.config.EmbedderOptions`)::

    [project.entry-points."lingxi.engines"]
    echo = "lingxi_echo:EchoEngine"

Entry points are read only when a name is not built in, so a config that uses built-ins never
scans installed packages. A plugin cannot replace a built-in name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from lingxi.errors import UsageError

__all__ = ["Backend", "CHAT", "EMBED", "GROUPS", "Kind", "backends", "backend", "resolve"]

Kind = Literal["chat", "embed"]

#: entry-point group of each kind
GROUPS: dict[str, str] = {"chat": "lingxi.engines", "embed": "lingxi.embedders"}


@dataclass(frozen=True)
class Backend:
    """One registered backend."""

    name: str
    """The ``engine`` value in config."""
    target: str
    """``"module:Class"`` of the engine or embedder, imported only when one is built."""
    options: str | None = None
    """``"module:Model"`` of its options; None = the class's ``options_model`` (plugins)."""

    def load_class(self) -> type:
        return resolve(self.target)

    def options_model(self) -> type:
        """The pydantic model that validates this backend's config entry.

        Raises:
            UsageError: a plugin class that declares no ``options_model``.
        """
        if self.options:
            return resolve(self.options)
        model = getattr(self.load_class(), "options_model", None)
        if model is None:
            raise UsageError(f"engine '{self.name}' ({self.target}) declares no options_model")
        return model


CHAT: dict[str, Backend] = {b.name: b for b in (
    Backend("llamacpp", "lingxi.engines.llamacpp:LlamaCppEngine", "lingxi.config:LlamaCppModel"),
    Backend("transformers", "lingxi.engines.transformers:TransformersEngine", "lingxi.config:TransformersModel"),
    Backend("openai", "lingxi.engines.openai_upstream:OpenAIUpstream", "lingxi.config:OpenAIModel"),
    Backend("vllm", "lingxi.engines.vllm:VLLMEngine", "lingxi.config:VLLMModel"),
    Backend("fake", "lingxi.engines.fake:FakeEngine", "lingxi.config:FakeModel"),
)}
EMBED: dict[str, Backend] = {b.name: b for b in (
    Backend("sentence-transformers", "lingxi.engines.embedders:SentenceTransformerEmbedder",
            "lingxi.config:SentenceTransformersEmbedder"),
    Backend("e5", "lingxi.engines.embedders:E5Embedder", "lingxi.config:E5Embedder"),
    Backend("openai", "lingxi.engines.embedders:OpenAIEmbedder", "lingxi.config:OpenAIEmbedder"),
    Backend("hash", "lingxi.engines.embedders:HashEmbedder", "lingxi.config:HashEmbedder"),
    Backend("concat", "lingxi.engines.embedders:ConcatEmbedder", "lingxi.config:ConcatEmbedder"),
)}
_BUILTIN: dict[str, dict[str, Backend]] = {"chat": CHAT, "embed": EMBED}


def resolve(target: str) -> Any:
    """Import ``"module:attr"`` and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def backends(kind: Kind) -> dict[str, Backend]:
    """Every backend of ``kind``: the built-ins, then those installed packages register."""
    found = dict(_BUILTIN[kind])
    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, Backend(ep.name, ep.value))
    return found


def backend(kind: Kind, name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        UsageError: no backend of that name (the message lists those that exist).
    """
    found = _BUILTIN[kind].get(name)
    if found is None:
        found = backends(kind).get(name)
    if found is None:
        raise UsageError(f"unknown engine '{name}'; expected one of {', '.join(backends(kind))}")
    return found
