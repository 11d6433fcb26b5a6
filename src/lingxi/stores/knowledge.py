"""The store interface every knowledge-base backend implements, and shared helpers.

A store keeps documents, chunks, vectors and search structures for ONE knowledge base and
answers three kinds of query: BM25, dense (cosine), and scoring a given set of chunks by both
(used by hybrid fusion). Access control (``groups``) and metadata ``filters`` are applied inside
these queries, so a caller can never see a chunk its groups do not allow, not even in a count.

Visibility rule: a document ingested without groups is public; a document with groups is
visible to a caller that shares at least one of them. ``groups=None`` means a trusted local
caller (CLI, library) that sees everything.

Backends: :class:`~lingxi.stores.knowledge_sqlite.SQLiteKnowledgeStore` (embedded default) and
:class:`~lingxi.stores.knowledge_pg.PgKnowledgeStore` (PostgreSQL + pgvector);
:func:`open_knowledge_store` opens the one a knowledge base was created with. What a store does
not do: chunking, embedding, fusion or answers (:mod:`lingxi.knowledge`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.knowledge.tree import TreeNode
from lingxi.knowledge.types import Chunk, Document, Hit

Scored = list[tuple[str, float]]  # (chunk id, score), best first


#: How many times wider an approximate index is searched for one member of a concatenated embedding.
PARTIAL_WIDER = 4


@dataclass
class DocRecord:
    doc_no: int
    key: str
    source: str
    title: str
    file_hash: str
    groups: list[str] = field(default_factory=list)
    chunks: int = 0


class KnowledgeStore(ABC):
    """Persistence and search for one knowledge base."""

    backend: str = ""

    # ------------------------------------------------------------ metadata

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The knowledge base's settings as created (embedder, dim, chunking, created_at)."""

    @abstractmethod
    def set_meta(self, updates: dict[str, Any]) -> None: ...

    @abstractmethod
    def version(self) -> str:
        """Changes whenever content changes (ingest or delete that added/removed chunks)."""

    # ------------------------------------------------------------ documents

    @abstractmethod
    def documents(self) -> list[DocRecord]: ...

    def find_document(self, ref: str) -> DocRecord | None:
        """A document by key/source path or by number."""
        for d in self.documents():
            if ref in (d.key, d.source, str(d.doc_no)):
                return d
        return None

    @abstractmethod
    def chunk_ids(self, doc_no: int) -> list[str]:
        """The ids of one document's chunks, in document order."""

    @abstractmethod
    def reserve_doc_no(self, key: str) -> int:
        """The number of the document with ``key``, or a new one (numbers are never reused)."""

    @abstractmethod
    def vectors_for(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks with these content hashes (to skip re-embedding)."""

    @abstractmethod
    def replace_document(self, doc: Document, doc_no: int, file_hash: str, groups: list[str],
                         chunks: list[Chunk], vectors: np.ndarray, tokens: list[list[str]]) -> tuple[int, int]:
        """Atomically replace one document's chunks. Returns (chunks added, chunks removed),
        counting a chunk whose id and hash are unchanged as neither."""

    @abstractmethod
    def delete_document(self, doc_no: int) -> int:
        """Remove a document and its chunks atomically; returns chunks removed."""

    @abstractmethod
    def set_file_hash(self, doc_nos: Sequence[int], file_hash: str) -> None:
        """Record ``file_hash`` on these documents in one transaction (the records of one JSONL/CSV
        file are marked complete together, so a killed ingest of it is redone, not skipped)."""

    # ------------------------------------------------------------ document trees

    @abstractmethod
    def replace_tree(self, doc_no: int, groups: list[str], nodes: Sequence[TreeNode]) -> None:
        """Atomically replace one document's tree (:mod:`lingxi.knowledge.tree`). Ingest writes it
        before the document's chunks, so a kill in between leaves the document to be ingested again;
        the nodes carry ``groups`` themselves, so a tree is never visible under a document's old groups."""

    @abstractmethod
    def tree(self, groups: list[str] | None, doc_nos: Sequence[int] | None = None) -> list[TreeNode]:
        """The tree nodes of the documents the caller's ``groups`` may see (only of ``doc_nos``, if
        given), by document and reading order, ``children`` not linked
        (:func:`lingxi.knowledge.tree.link_children`)."""

    def tree_doc_nos(self) -> set[int]:
        """The documents that have a tree (ingest gives one to documents stored before trees existed)."""
        return {n.doc_no for n in self.tree(None)}

    @abstractmethod
    def summaries(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored inner-node summaries by summary key (ingest reuses them instead of summarising again)."""

    def prepare(self) -> None:
        """Bring derived search structures up to date after a change (no-op where the
        database maintains them itself)."""

    # ------------------------------------------------------------ search

    @abstractmethod
    def search_bm25(self, tokens: list[str], k: int, groups: list[str] | None, filters: dict | None) -> Scored: ...

    @abstractmethod
    def search_dense(self, vector: np.ndarray, k: int, groups: list[str] | None, filters: dict | None,
                     partial: bool = False) -> Scored:
        """The ``k`` chunks of highest inner product with ``vector``. ``partial``: the vector is one
        member's share of a concatenated embedding (zeros elsewhere), so an approximate index built
        for whole vectors is searched wider."""

    @abstractmethod
    def visible(self, ids: Sequence[str], groups: list[str] | None, filters: dict | None) -> list[str]:
        """Those of ``ids`` that exist and that the caller may see under ``filters``, in the given order
        (for retrievers that find chunks elsewhere, e.g. a graph's provenance)."""

    @abstractmethod
    def score(self, ids: Sequence[str], tokens: list[str], vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BM25 and cosine scores of the given (already visible) chunks, in ``ids`` order."""

    @abstractmethod
    def hits(self, scored: Scored) -> list[Hit]:
        """Full hits (text, source, title) for scored chunk ids, in the given order."""

    @abstractmethod
    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None:
        """Release connections and files. Safe to call twice."""

    def drop(self) -> None:
        """Delete the whole knowledge base from this store."""


def matches(meta: dict[str, Any], filters: dict | None) -> bool:
    """Metadata filter semantics shared by stores: every key must equal (or be in, for a list)."""
    if not filters:
        return True
    for key, want in filters.items():
        have = meta.get(key)
        if isinstance(want, (list, tuple, set)):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def open_knowledge_store(name: str, kind: str, settings: Any, folder: Path, *, create: bool = False) -> KnowledgeStore:
    """The store of knowledge base ``name``: ``kind`` "postgres" (URL from ``knowledge.pg_url`` or
    ``$LINGXI_PG_URL``) or "sqlite" (files in ``folder``).

    Raises:
        ConfigError: postgres without a URL.
        UsageError: postgres, ``create`` False, and the knowledge base has no data there.
        UpstreamError: the PostgreSQL server cannot be reached.
    """
    if kind == "postgres":
        from lingxi.stores.connect import resolve_url
        from lingxi.stores.knowledge_pg import PgKnowledgeStore

        url = resolve_url(settings.knowledge.pg_url, "LINGXI_PG_URL", what="knowledge.pg_url",
                          needed_for="the postgres store", source=settings.source)
        return PgKnowledgeStore(url, name, create=create)
    from lingxi.stores.knowledge_sqlite import SQLiteKnowledgeStore

    return SQLiteKnowledgeStore(folder, ann_threshold=settings.knowledge.ann_threshold)
