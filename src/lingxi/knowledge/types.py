"""The plain data a knowledge base hands out and takes in. No behaviour, no heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Block:
    """One structural piece of a loaded document: a heading (``level`` >= 1) or a paragraph (0)."""

    text: str
    level: int = 0
    page: int | None = None


@dataclass
class Document:
    """A loaded document before chunking.

    ``key`` identifies it inside a knowledge base across re-ingests (its source path, or
    ``path#record-id`` for one record of a JSONL/CSV file).
    """

    key: str
    source: str
    title: str
    blocks: list[Block]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A retrievable piece of a document.

    ``id`` is hierarchical and stable: ``document.section.paragraph.piece`` (e.g. ``3.2.5.0``).
    ``context`` is the title and heading path; it is searched together with ``text`` but is
    not part of the quoted text.
    """

    id: str
    text: str
    context: str = ""
    headings: list[str] = field(default_factory=list)
    page: int | None = None
    hash: str = ""

    @property
    def search_text(self) -> str:
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass
class Hit:
    """One search result. ``score`` is comparable within one result list, not across modes."""

    id: str
    doc: str
    source: str
    title: str
    text: str
    score: float
    headings: list[str] = field(default_factory=list)
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Citation:
    """A chunk an answer rests on. ``source`` is the document's path relative to what was
    ingested (or its record id), never a path on the serving machine."""

    id: str
    source: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "text": self.text, "score": self.score}


@dataclass
class Answer:
    """A checked answer.

    ``mode`` says where the words come from: ``"generated"`` (the model's sentences that the
    support check kept; unsupported ones are listed in ``dropped``), ``"extracted"`` (source
    sentences quoted verbatim), ``"graph"`` (the facts on the knowledge graph's paths, listed in
    ``paths``, cited by the chunks behind them) or ``"unknown"`` (the documents do not answer;
    ``supported`` is false and there are no citations). ``supported: true`` promises that every
    statement of the answer is backed by the cited text, or for ``"graph"`` by the cited facts.
    """

    answer: str
    citations: list[Citation]
    supported: bool
    dropped: list[str] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    mode: str = "generated"
    #: tree navigation's decisions (:mod:`lingxi.knowledge.navigate`); None for other retrievers
    scratchpad: list[dict[str, Any]] | None = None
    #: the retriever that found the sources (``hybrid``, ``graph``…; with ``auto``, the one chosen)
    retrieval_mode: str | None = None
    #: why ``auto`` chose it (None when the mode was named)
    retrieval_reason: str | None = None
    #: passages retrieved but left out before answering (``{"id", "source"}``): the caller's
    #: check said they read as prompt injection (the gateway's ``injection`` stage)
    excluded: list[dict[str, str]] = field(default_factory=list)
    #: a graph answer's paths, node names and relation types in order (``mode == "graph"``)
    paths: list[list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "answer": self.answer,
            "supported": self.supported,
            "mode": self.mode,
            "citations": [c.to_dict() for c in self.citations],
        }
        if self.retrieval_mode is not None:
            out["retrieval_mode"] = self.retrieval_mode
        if self.retrieval_reason is not None:
            out["retrieval_reason"] = self.retrieval_reason
        if self.scratchpad is not None:
            out["scratchpad"] = self.scratchpad
        if self.paths is not None:
            out["paths"] = self.paths
        if self.excluded:
            out["excluded_sources"] = self.excluded
        return out


@dataclass
class IngestReport:
    """What one ingest did. ``errors`` maps a path to a one-line reason; the rest was ingested."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    version: str = ""
    #: inner document-tree nodes summarised (the others' summaries were reused: unchanged content)
    summaries_made: int = 0
    #: chunk id -> injection score, for chunks that read as instructions to the model (empty when
    #: none were; None when they were not scanned: ``knowledge.scan_injection`` off or no guard extra)
    flagged: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
