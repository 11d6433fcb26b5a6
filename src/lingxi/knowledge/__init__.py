"""Knowledge bases: ingest documents (Chinese and English), retrieve them with BM25, dense and
adaptive hybrid search, and answer questions with verified citations.

The public API::

    from lingxi.knowledge import create_kb, open_kb, list_kbs
    kb = create_kb("docs", settings)            # embedded SQLite store by default
    kb.ingest(["./folder"], groups=["legal"])
    kb.search("违约金怎么计算", k=5)              # -> list[Hit]
    kb.answer("What is the notice period?", engine).to_dict()

Importing this package is light: the store, loaders and search libraries load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lingxi.knowledge.types import Answer, Citation, Hit, IngestReport

if TYPE_CHECKING:
    from lingxi.knowledge.kb import KnowledgeBase

__all__ = ["Answer", "Citation", "Hit", "IngestReport", "KnowledgeBase", "create_kb", "list_kbs", "open_kb"]


def create_kb(name: str, settings: Any, store: str | None = None, embedder: str | None = None) -> KnowledgeBase:
    from lingxi.knowledge.kb import create_kb as _create

    return _create(name, settings, store=store, embedder=embedder)


def open_kb(name: str, settings: Any) -> KnowledgeBase:
    from lingxi.knowledge.kb import open_kb as _open

    return _open(name, settings)


def list_kbs(settings: Any) -> list[dict[str, Any]]:
    from lingxi.knowledge.kb import list_kbs as _list

    return _list(settings)


def __getattr__(name: str) -> Any:
    if name == "KnowledgeBase":
        from lingxi.knowledge.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(name)
