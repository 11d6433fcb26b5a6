"""A knowledge base: ingest documents, search them (BM25, dense, hybrid), answer with verified
citations. The CLI (``lingxi kb``) and the gateway (``kb:NAME`` models) call this module.

Knowledge bases are registered under ``<home>/kb/NAME/kb.json`` (store kind, embedder,
chunking); the embedded store keeps its data in the same folder, the Postgres store in the
database named by ``knowledge.pg_url`` / ``$LINGXI_PG_URL``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import LingxiError, NotFoundError, UsageError
from lingxi.knowledge.chunking import chunk_document, content_hash
from lingxi.stores.embeddings import EmbeddingCache, embedder_key
from lingxi.knowledge.fusion import FusionStats, fuse
from lingxi.graph.reader import GraphReader
from lingxi.knowledge.loaders import READER_VERSION, LoadError, iter_files, load_file
from lingxi.knowledge.retrievers import FUSE_PREFIX, Query, bm25_tokens
from lingxi.knowledge.tree import introduces_list, marker
from lingxi.stores.knowledge import KnowledgeStore, open_knowledge_store
from lingxi.text import cjk_ratio, language_of
from lingxi.knowledge.types import Answer, Chunk, Document, Hit, IngestReport

log = logging.getLogger("lingxi.knowledge")

#: The built-in text retrievers; every registered name works too (see :mod:`lingxi.knowledge.retrievers`).
MODES = ("bm25", "dense", "hybrid")
_NAME = re.compile(r"^[\w][\w.-]{0,63}$")
#: A footnote's mark as the PDF reader writes it ("[17]"), and the start of its note.
_NOTE_MARK = re.compile(r"\[(\d{1,3})\]")
_NOTE_START = re.compile(r"\[(\d{1,3})\] ")
#: Chosen automatically for mostly-Chinese text when the default embedder is English-only.
CHINESE_EMBEDDER = "e5-small"
#: Share of Chinese chunks in a first ingest from which the multilingual embedder is chosen.
MIXED_SHARE = 0.05
#: Bundled embedders that cannot embed Chinese usefully (MiniLM: nDCG@10 0.23 on Chinese retrieval).
ENGLISH_ONLY = {"minilm"}


def kb_root(settings: Any) -> Path:
    return settings.home_dir / "kb"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(f"invalid knowledge base name '{name}': use letters, digits, '_', '-' or '.', "
                         "at most 64 characters")


def list_kbs(settings: Any) -> list[dict[str, Any]]:
    """Every registered knowledge base: ``{"name", "store", "embedder", "created_at"}``."""
    root = kb_root(settings)
    out = []
    for f in sorted(root.glob("*/kb.json")) if root.is_dir() else []:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def create_kb(name: str, settings: Any, store: str | None = None, embedder: str | None = None) -> KnowledgeBase:
    """Create and register a knowledge base.

    Args:
        store: "sqlite" (embedded) or "postgres"; default ``knowledge.store``.
        embedder: an embedder name; default ``knowledge.embedder``, else chosen at the first
            ingest by the script of the text (``e5-small`` for Chinese, the default embedder
            otherwise). The choice is recorded: queries always use the embedder the chunks used.

    Raises:
        UsageError: bad or taken name, unknown store or embedder.
    """
    _check_name(name)
    store = store or settings.knowledge.store
    if store not in ("sqlite", "postgres"):
        raise UsageError(f"unknown store '{store}'; expected sqlite or postgres")
    embedder = embedder or settings.knowledge.embedder
    if embedder is not None:
        settings.embedder(embedder)  # raises ModelNotFoundError listing the known ones
    folder = kb_root(settings) / name
    if (folder / "kb.json").exists():
        raise UsageError(f"knowledge base '{name}' already exists")
    folder.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "store": store, "embedder": embedder, "created_at": time.time(),
              "chunk_tokens": settings.knowledge.chunk_tokens, "chunk_overlap": settings.knowledge.chunk_overlap}
    backend = open_knowledge_store(name, store, settings, folder, create=True)
    # A Postgres knowledge base created on another machine is attached, not reset.
    existing = backend.meta()
    fresh = {k: v for k, v in record.items() if k != "name"} | {"dim": 0, "version": ""}
    backend.set_meta({k: v for k, v in fresh.items() if k not in existing})
    record["embedder"] = existing.get("embedder", record["embedder"])
    tmp = folder / "kb.json.tmp"
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(folder / "kb.json")
    return KnowledgeBase(name, settings, backend, folder)


def open_kb(name: str, settings: Any) -> KnowledgeBase:
    """Open a registered knowledge base.

    Raises:
        NotFoundError: no such knowledge base (the message lists the existing ones).
    """
    folder = kb_root(settings) / name
    path = folder / "kb.json"
    if not _NAME.match(name) or not path.is_file():
        known = ", ".join(k["name"] for k in list_kbs(settings)) or "(none)"
        make = f"; create it with `lingxi kb create {name}`" if _NAME.match(name) else ""
        raise NotFoundError(f"no knowledge base '{name}'; existing: {known}{make}")
    record = json.loads(path.read_text(encoding="utf-8"))
    return KnowledgeBase(name, settings, open_knowledge_store(name, record["store"], settings, folder), folder)


class KnowledgeBase:
    """One knowledge base. Thread-safe for searches; one ingest at a time (a file lock)."""

    def __init__(self, name: str, settings: Any, store: KnowledgeStore, folder: Path):
        self.name = name
        self.settings = settings
        self.store = store
        self.folder = folder
        self._embedder = None
        self._embedder_name: str | None = None
        self._lock = threading.Lock()
        self._tree_indexes: dict[str, Any] = {}  # groups -> navigation's TreeIndex
        self._sources: tuple[str, dict[str, str]] | None = None
        self._cache: EmbeddingCache | None = None
        saved = _read_fusion(folder / "fusion.json")
        self.fusion = FusionStats(**{k: v for k, v in saved.items() if k != "fused"})
        #: statistics of other fused lists (``fuse:bm25+dense+graph``), by member names
        self._fusions: dict[tuple[str, ...], FusionStats] = {}
        for state in saved.get("fused", []):
            try:
                stats = FusionStats(**state)
            except (TypeError, ValueError):
                continue
            self._fusions[stats.names] = stats
        self._saved_fusion = self._fusion_queries()
        self._graph = GraphReader(name, settings)  # the graph named like this knowledge base
        self._structure: tuple[str, tuple[str, int, int] | None] | None = None

    # ------------------------------------------------------------ properties

    @property
    def version(self) -> str:
        """Changes on every ingest or delete that changes content (cache keys use it)."""
        return self.store.version()

    @property
    def embedder_name(self) -> str | None:
        """Recorded at the first ingest and never changed after, so read from the store until then
        only: searches ask for it several times a query."""
        if self._embedder_name is None:
            self._embedder_name = self.store.meta().get("embedder")
        return self._embedder_name

    def embedder(self) -> Any:
        from lingxi.engines import load_embedder

        name = self.embedder_name
        if name is None:
            raise UsageError(f"knowledge base '{self.name}' is empty: ingest documents first")
        if self._embedder is None:
            self._embedder = load_embedder(name, self.settings)
        return self._embedder

    def embedder_members(self) -> list[str]:
        """The members of this knowledge base's embedder when it is a concatenation (``engine =
        "concat"``: a ``dense:NAME`` retriever each), else none."""
        options = self.settings.all_embedders().get(self.embedder_name or "")
        return list(getattr(options, "members", None) or [])

    def _embedding_cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.settings.home_dir / "cache" / "embeddings.sqlite")
        return self._cache

    def _cache_model(self) -> str:
        """This knowledge base's embedder as the embedding cache names it (name + config hash)."""
        from lingxi.engines import embedder_fingerprint

        return embedder_key(self.embedder_name, embedder_fingerprint(self.embedder_name, self.settings))

    def passage_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` embedded as passages by this knowledge base's embedder, one row each, through
        the machine's embedding cache: a text is embedded once, then read back."""
        if not texts:
            return np.zeros((0, int(self.store.meta().get("dim") or 0)), np.float32)
        embedder = self.embedder()
        model = self._cache_model()
        hashes = [content_hash(t) for t in texts]  # ingest's key: a leaf that is a chunk's text is cached already
        got, _ = self._embedding_cache().embed(model, list(texts), hashes,
                                               lambda batch: embedder.embed(batch, kind="passage"))
        return np.stack([got[h] for h in hashes])

    # ------------------------------------------------------------ ingest

    @contextmanager
    def _writer(self) -> Iterator[None]:
        with open(self.folder / "ingest.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"knowledge base '{self.name}' is being changed by another process; "
                                 "try again when it has finished") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ingest(self, paths: Sequence[str | os.PathLike[str]], groups: Sequence[str] | None = None,
               *, progress: bool = True) -> IngestReport:
        """Add or update the documents under ``paths`` (files or folders, recursively).

        Unchanged files (same content hash and groups) are skipped without parsing; changed
        ones re-embed only chunks whose text changed. Each document is committed on its own,
        so an interrupted ingest keeps what it finished and a re-run resumes. A file that
        cannot be used is reported in ``IngestReport.errors`` and the rest goes on.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        groups = sorted({g.strip() for g in groups or [] if g.strip()})
        start = time.perf_counter()
        report = IngestReport()
        max_bytes = self.settings.knowledge.max_file_mb * 2**20
        loaded: list[tuple[Document, str]] = []
        with self._writer():
            known = {}
            for d in self.store.documents():
                known.setdefault(d.source, []).append(d)
            seen: set[str] = set()
            treed = self.store.tree_doc_nos()  # an unchanged file stored before trees existed gets one now
            for path, problem in iter_files(list(paths)):
                shown = str(path)
                if problem:
                    report.errors[shown] = problem
                    continue
                source = str(path.resolve())
                if source in seen:  # named twice (a folder and a file in it): once is enough
                    continue
                seen.add(source)
                try:
                    size = path.stat().st_size
                    if size > max_bytes:
                        load_file(path, max_bytes=max_bytes)  # raises the size error
                    file_hash = _file_hash(path, groups)
                    previous = known.get(source, [])
                    if (previous and all(d.file_hash == file_hash for d in previous)
                            and all(d.doc_no in treed or not self.store.chunk_ids(d.doc_no) for d in previous)):
                        report.unchanged.append(shown)
                        continue
                    docs = load_file(path, max_bytes=max_bytes)
                except LoadError as exc:
                    report.errors[shown] = exc.message
                    continue
                except OSError as exc:
                    report.errors[shown] = f"cannot read: {exc.strerror or exc}"
                    continue
                except LingxiError:
                    raise  # a missing extra: every file of its kind would fail alike
                except Exception as exc:  # a parser's own failure on one odd file must not stop the rest
                    log.warning("cannot parse %s", path, exc_info=exc)
                    report.errors[shown] = f"cannot parse ({type(exc).__name__}: {exc})"
                    continue
                keys = set()
                for doc in docs:
                    doc.source = source
                    doc.key = source + doc.key[len(str(path)):] if doc.key.startswith(str(path)) else doc.key
                    keys.add(doc.key)
                    loaded.append((doc, file_hash))
                for old in previous:  # records that vanished from a changed JSONL/CSV file
                    if old.key not in keys:
                        report.chunks_removed += self.store.delete_document(old.doc_no)
                (report.updated if previous else report.added).append(shown)
            self._write(loaded, groups, report, progress=progress, whole=False)
        report.seconds = round(time.perf_counter() - start, 3)
        report.version = self.version
        return report

    def ingest_documents(self, docs: Sequence[Document], groups: Sequence[str] | None = None, *,
                         whole: bool = False, progress: bool = True) -> IngestReport:
        """Ingest already-loaded documents (records from code, evaluation corpora).

        Args:
            whole: index each document as one chunk (retrieval evaluation, as BEIR does).
        """
        groups = sorted(set(groups or []))
        report = IngestReport()
        start = time.perf_counter()
        with self._writer():
            payload = json.dumps([groups, whole])
            batch = [(d, hashlib.sha256((payload + "\n".join(b.text for b in d.blocks)).encode()).hexdigest())
                     for d in docs]
            known = {d.key: d.file_hash for d in self.store.documents()}
            todo = [(d, h) for d, h in batch if known.get(d.key) != h]
            report.unchanged = [d.key for d, h in batch if known.get(d.key) == h]
            report.added = [d.key for d, _ in todo if d.key not in known]
            report.updated = [d.key for d, _ in todo if d.key in known]
            self._write(todo, groups, report, progress=progress, whole=whole)
        report.seconds = round(time.perf_counter() - start, 3)
        report.version = self.version
        return report

    def _write(self, loaded: list[tuple[Document, str]], groups: list[str], report: IngestReport, *,
               progress: bool, whole: bool) -> None:
        if not loaded:
            return
        meta = self.store.meta()
        plan: list[tuple[Document, int, str, list[Chunk]]] = []
        for doc, file_hash in loaded:
            doc_no = self.store.reserve_doc_no(doc.key)
            chunks = chunk_document(doc, doc_no, chunk_tokens=int(meta.get("chunk_tokens", 256)),
                                    overlap=int(meta.get("chunk_overlap", 32)), whole=whole)
            plan.append((doc, doc_no, file_hash, chunks))
        all_chunks = [c for *_, chunks in plan for c in chunks]
        if meta.get("embedder") is None:
            # MiniLM cannot embed Chinese at all: a mixed corpus where one chunk in twenty is
            # Chinese gets the multilingual embedder too (its Chinese is found, and English
            # questions reach it), wherever in the files the Chinese chunks are.
            chinese = sum(1 for c in all_chunks if cjk_ratio(c.text) >= 0.2)
            name = self.settings.default_embedder
            if name in ENGLISH_ONLY and chinese >= max(1, MIXED_SHARE * len(all_chunks)) \
                    and CHINESE_EMBEDDER in self.settings.all_embedders():
                name = CHINESE_EMBEDDER
            self.store.set_meta({"embedder": name})
            self._update_record(embedder=name)
        embedder = self.embedder()
        if not meta.get("dim"):
            self.store.set_meta({"dim": int(embedder.dim)})
        vectors = self.store.vectors_for([c.hash for c in all_chunks])
        missing = [c for c in all_chunks if c.hash not in vectors]
        if missing:
            model = self._cache_model()
            bar = _progress(len({c.hash for c in missing}), f"embedding {self.name}", progress)
            try:
                got, report.chunks_embedded = self._embedding_cache().embed(
                    model, [c.search_text for c in missing], [c.hash for c in missing],
                    lambda texts: embedder.embed(texts, kind="passage"), progress=bar.update)
            finally:
                bar.close()
            vectors.update(got)
        report.chunks_reused = len(all_chunks) - report.chunks_embedded  # stored or cached vectors
        report.flagged = self._scan_injection(all_chunks)
        # The records of one JSONL/CSV file are committed one by one with a pending hash and then
        # marked complete together: a kill between them leaves the file "changed", so the next
        # ingest redoes it (reusing every stored vector) instead of skipping it as unchanged.
        per_file: dict[str, list[int]] = {}
        for doc, doc_no, _, _ in plan:
            per_file.setdefault(doc.source, []).append(doc_no)
        self._write_trees(plan, groups, report)
        for doc, doc_no, file_hash, chunks in plan:
            mat = np.stack([vectors[c.hash] for c in chunks]) if chunks else np.zeros((0, embedder.dim), np.float32)
            tokens = [bm25_tokens(c) for c in chunks]
            siblings = per_file[doc.source]
            stored_hash = file_hash if len(siblings) == 1 else f"pending:{file_hash}"
            added, removed = self.store.replace_document(doc, doc_no, stored_hash, groups, chunks, mat, tokens)
            report.chunks_added += added
            report.chunks_removed += removed
            if len(siblings) > 1 and doc_no == siblings[-1]:
                self.store.set_file_hash(siblings, file_hash)
        self.store.prepare()

    def _write_trees(self, plan: list[tuple[Document, int, str, list[Chunk]]], groups: list[str],
                     report: IngestReport) -> None:
        """Build and store each document's tree (:mod:`lingxi.knowledge.tree`) before its chunks,
        summarising only inner nodes whose content changed (their summary keys are not stored yet)."""
        from lingxi.knowledge.tree import build_tree, summarise_tree

        summarise = self._summariser()
        for doc, doc_no, _, chunks in plan:
            nodes = build_tree(doc, doc_no, chunks) if chunks else []
            known = self.store.summaries([n.summary_key for n in self.store.tree(None, [doc_no])])
            report.summaries_made += summarise_tree(nodes, summarise, known)
            self.store.replace_tree(doc_no, groups, nodes)

    def _summariser(self) -> Any:
        """The configured model's summaries (``knowledge.tree_summary_model``, if it is trusted to write),
        else extractive ones."""
        from lingxi.knowledge.tree import ExtractiveSummariser, ModelSummariser

        name = self.settings.knowledge.tree_summary_model
        if not name:
            return ExtractiveSummariser()
        from lingxi.engines import load_engine
        from lingxi.knowledge.answer import too_small

        engine = load_engine(name, self.settings)
        if too_small(engine):  # SmolLM2-135M's "summaries" would mislead navigation more than help it
            log.warning("knowledge.tree_summary_model '%s' is too small to be trusted to write; "
                        "document-tree summaries stay extractive", name)
            return ExtractiveSummariser()
        return ModelSummariser(engine, name)

    def _scan_injection(self, chunks: list[Chunk]) -> dict[str, float] | None:
        """Chunks that read as instructions to the model (a poisoned document), by the guard's
        classifier; None when not scanned. Flagged chunks stay searchable: the gateway's
        ``injection`` stage checks retrieved sources again and refuses to answer from them."""
        if not self.settings.knowledge.scan_injection or not chunks:
            return None
        try:
            from lingxi.guard.injection import scan_document
        except ImportError:
            return None
        flagged = {}
        for chunk in chunks:
            finding = scan_document(chunk.text)
            if finding.flagged:
                flagged[chunk.id] = round(float(finding.score), 4)
        if flagged:
            log.warning("knowledge base '%s': %d ingested chunk(s) read as prompt injection: %s", self.name,
                        len(flagged), ", ".join(sorted(flagged)[:10]))
        return flagged

    def _record(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "kb.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def set_retrieval(self, mode: str | None) -> None:
        """Make ``mode`` this knowledge base's retriever for answers (None: ``knowledge.retrieval``).

        Raises:
            UsageError: an unknown retriever name.
        """
        if mode is not None and mode != "auto":
            from lingxi.knowledge.retrievers import get_retriever

            get_retriever(mode)
        self._update_record(retrieval=mode)

    def _update_record(self, **updates: Any) -> None:
        path = self.folder / "kb.json"
        record = json.loads(path.read_text(encoding="utf-8")) | updates
        tmp = path.with_name("kb.json.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(path)

    def delete(self, doc: str) -> int:
        """Remove a document (by number, key, source path, or its source as search results and
        citations show it) and its chunks; returns chunks removed.

        Raises:
            NotFoundError: no such document.
        """
        with self._writer():
            found = self.store.find_document(str(doc))
            if found is None:
                resolved = str(Path(doc).resolve()) if not str(doc).isdigit() else str(doc)
                found = self.store.find_document(resolved)
            if found is None:  # the name users see, relative to the ingested folder ("合同/采购.pdf")
                shown = [source for source, name in self.document_sources().items() if name == str(doc)]
                found = self.store.find_document(shown[0]) if len(shown) == 1 else None
            if found is None:
                raise NotFoundError(f"no document '{doc}' in knowledge base '{self.name}': name it by its "
                                    f"number, its source as search shows it, or its path")
            named_record = str(doc).isdigit() or found.key in (str(doc), str(Path(doc).resolve()))
            if named_record:
                targets = [found.doc_no]
            else:  # a JSONL/CSV file's path: all its records go with it
                targets = [d.doc_no for d in self.store.documents() if d.source == found.source]
            removed = sum(self.store.delete_document(n) for n in targets)
            self.store.prepare()
            return removed

    # ------------------------------------------------------------ search

    def search(self, query: str, mode: str = "hybrid", k: int = 5, groups: Sequence[str] | None = None,
               filters: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` that the caller's ``groups`` may see, each source shown
        relative to the ingested folder (as answers cite it), never as a path on this machine.

        Args:
            mode: "bm25", "dense" or "hybrid" (adaptive fusion, see :mod:`lingxi.knowledge.fusion`).
            groups: the caller's groups; None = a trusted caller that sees everything.
            filters: document metadata that must match (``{"type": "pdf"}``, ``{"source": [...]}``).
        """
        if mode == "navigate":  # node-level hits (a leaf is a clause), not the chunks holding them
            if filters:
                raise UsageError("search mode 'navigate' takes no metadata filters")
            return self.navigation_hits(self.navigate(query, groups, k=k))
        scored = self.search_ids(query, mode=mode, k=k, groups=groups, filters=filters)
        return self._shown(self.store.hits(scored))

    def search_ids(self, query: str | Query, mode: str = "hybrid", k: int = 5, groups: Sequence[str] | None = None,
                   filters: dict[str, Any] | None = None, *, learn: bool = True) -> list[tuple[str, float]]:
        """Like :meth:`search` but only (chunk id, score): no text is read (evaluation, benchmarks).

        ``mode`` names a retriever (:func:`lingxi.knowledge.retrievers.get_retriever`: ``bm25``,
        ``dense``, ``hybrid``, ``graph``, a registered one, or ``fuse:A+B…``); ``learn`` lets a
        fused search update the knowledge base's fusion statistics. A :class:`Query` (rather than
        its text) lets the caller reuse the vector the search computes.
        """
        from lingxi.knowledge.retrievers import FusedRetriever, get_retriever

        retriever = get_retriever(mode)
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        q = query if isinstance(query, Query) else Query(query, self)
        query = q.text
        if not query.strip():
            raise UsageError("empty query")
        if self.embedder_name is None:
            return []
        unavailable = retriever.available(self)
        if unavailable:
            raise UsageError(f"search mode '{mode}': {unavailable}")
        groups = list(groups) if groups is not None else None
        filters = self._stored_sources(filters)
        depth = max(k, self._rerank_depth())
        if isinstance(retriever, FusedRetriever):
            scored = retriever.search(self, q, depth, groups, filters, learn=learn)
        else:
            scored = retriever.search(self, q, depth, groups, filters)
        if mode == "bm25":  # the reranker reorders what the embedder found (knowledge.reranker)
            return scored[:k]
        return self._rerank(query, scored, k)

    def retrieval_mode(self, query: str, mode: str | None = None, groups: Sequence[str] | None = None) -> Any:
        """The retriever a search or answer uses: ``mode`` as named (default the knowledge base's own,
        :meth:`set_retrieval`, else ``knowledge.retrieval``),
        or for ``"auto"`` the one the rules choose for ``query``
        (:func:`lingxi.knowledge.mode_router.choose`). Returns a ``Choice(mode, reason)``."""
        from lingxi.knowledge.mode_router import Choice, choose

        mode = mode or self._record().get("retrieval") or self.settings.knowledge.retrieval
        if mode != "auto":
            return Choice(mode, "named")
        return choose(self, query, list(groups) if groups is not None else None)

    def _stored_sources(self, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        """``filters`` with a ``source`` given as results show it (合同编.md) also matching the
        documents stored under that name (their path at ingest)."""
        if not filters or "source" not in filters:
            return filters
        want = filters["source"]
        names = list(want) if isinstance(want, (list, tuple, set)) else [want]
        stored = [source for source, shown in self.document_sources().items() if shown in names]
        return {**filters, "source": list(dict.fromkeys([*names, *stored]))}

    def document_sources(self) -> dict[str, str]:
        """Each document's source -> the name users see (relative to the ingested folder)."""
        version = self.version
        if self._sources is None or self._sources[0] != version:
            self._sources = (version, _relative_sources([d.source for d in self.store.documents()]))
        return self._sources[1]

    def longest_structured_document(self) -> tuple[str, int, int] | None:
        """(shown source, sections, chunks) of the document with the most sections; None when the
        knowledge base is empty. Sections are the document tree's headings and numbered clauses
        (its inner nodes and the leaves titled by a marker such as 第五条 or 2.1), so a PDF or a
        DOCX typed without heading styles counts its clauses too. Counted once per content version."""
        version = self.version
        if self._structure is None or self._structure[0] != version:
            nodes = self.store.tree(None)
            parents = {n.parent for n in nodes}
            sections: Counter[int] = Counter(n.doc_no for n in nodes if n.parent and (
                n.id in parents or marker(n.title) is not None))
            shown = self.document_sources()
            best: tuple[str, int, int] | None = None
            for d in self.store.documents():
                if best is None or (sections[d.doc_no], d.chunks) > best[1:]:
                    best = (shown.get(d.source, d.source), sections[d.doc_no], d.chunks)
            self._structure = (version, best)
        return self._structure[1]

    def fusion_stats(self, names: tuple[str, ...]) -> FusionStats:
        """The corroboration statistics of the fused list ``names`` (the hybrid's are :attr:`fusion`)."""
        if names == self.fusion.names:
            return self.fusion
        with self._lock:
            return self._fusions.setdefault(names, FusionStats(names=names))

    def fusion_observed(self) -> None:
        """A fused search counted a query: save the statistics now and then."""
        self._save_fusion()

    def _fusion_queries(self) -> int:
        return self.fusion.queries + sum(f.queries for f in self._fusions.values())

    def graph(self) -> AbstractContextManager[tuple[Any, Any] | None]:
        """The graph named like this knowledge base, read-only, with its name index, for one use
        (:meth:`lingxi.graph.reader.GraphReader.open`); None when there is none (the ``graph``
        retriever then finds nothing).

        Raises:
            UsageError: the graph cannot be opened now (an import is writing it).
        """
        return self._graph.open()

    def fuse(self, bm: list[tuple[str, float]], dense: list[tuple[str, float]], tokens: list[str],
             vector: np.ndarray) -> list[tuple[str, float]]:
        """Fuse two candidate lists with the knowledge base's current fusion weight."""
        ids = list(dict.fromkeys([i for i, _ in bm] + [i for i, _ in dense]))
        if not ids:
            return []
        b, d = self.store.score(ids, tokens, vector)
        # Normalise over the union: a chunk BM25 did not match scores 0, which is ordinary among
        # the dense candidates, not an outlier as it would be against BM25's own matches.
        return fuse(ids, b, d, b, d, self.fusion.bm25_weight())

    def _save_fusion(self, force: bool = False) -> None:
        # A sidecar file replaced atomically, now and then: a search never waits on a database
        # lock held by an ingest.
        queries = self._fusion_queries()
        if force or queries - self._saved_fusion >= 20:
            self._saved_fusion = queries
            state: dict[str, Any] = self.fusion.state()
            if self._fusions:
                state["fused"] = [f.state() for f in self._fusions.values()]
            tmp = self.folder / f".fusion-{os.getpid()}-{threading.get_ident()}.tmp"
            try:
                tmp.write_text(json.dumps(state), encoding="utf-8")
                tmp.replace(self.folder / "fusion.json")
            except OSError:
                tmp.unlink(missing_ok=True)

    def _rerank_depth(self) -> int:
        return 20 if self.settings.knowledge.reranker else 0

    def _rerank(self, query: str, scored: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
        path = self.settings.knowledge.reranker
        if not path or not scored:
            return scored[:k]
        from lingxi.knowledge.rerank import rerank

        hits = self.store.hits(scored)
        return rerank(path, query, [(h.id, h.text) for h in hits])[:k]

    # ------------------------------------------------------------ tree navigation

    def tree_index(self, groups: Sequence[str] | None = None) -> Any:
        """The document trees the caller's ``groups`` may see, indexed for navigation (cached per
        content version and groups)."""
        from lingxi.knowledge.navigate import TreeIndex

        groups = sorted(set(groups)) if groups is not None else None
        version = self.version
        with self._lock:
            key = json.dumps(groups)
            found = self._tree_indexes.get(key)
            if found is None or found.version != version:
                if len(self._tree_indexes) >= 16:  # many distinct callers' groups: keep memory bounded
                    self._tree_indexes.clear()
                found = self._tree_indexes[key] = TreeIndex(self.store.tree(groups), version, groups)
            return found

    def navigate(self, question: str, groups: Sequence[str] | None = None, engine: Any = None, k: int = 5,
                 **limits: int) -> Any:
        """Tree navigation (:func:`lingxi.knowledge.navigate.navigate`): the leaves that answer
        ``question`` and the scratchpad of decisions."""
        from lingxi.knowledge.navigate import navigate

        return navigate(self, question, groups=groups, engine=engine, k=k, **limits)

    def navigation_hits(self, nav: Any) -> list[Hit]:
        """The leaves of a navigation as hits whose ids are node ids (sources shown relative)."""
        docs = {d.doc_no: d for d in self.store.documents()}
        hits = []
        for node, score in nav.leaves:
            d = docs.get(node.doc_no)
            if d is None:
                continue
            index = next((i for i in self._tree_indexes.values() if node.id in i.by_id), None)
            hits.append(Hit(id=node.id, doc=str(node.doc_no), source=d.source, title=d.title,
                            text=_with_its_list(node, index), score=score, headings=_node_path(node, index),
                            page=node.page))
        return self._shown(hits)

    # ------------------------------------------------------------ answers

    def answer(self, question: str, engine: Any = None, params: Any = None, groups: Sequence[str] | None = None,
               k: int = 5, mode: str | None = None, retrieval: str | None = None,
               exclude: Callable[[Hit], bool] | None = None) -> Answer:
        """Retrieve, then answer with verified citations, or "I don't know" (see :meth:`stream_answer`)."""
        result = None
        for item in self.stream_answer(question, engine, params, groups, k, mode=mode, retrieval=retrieval,
                                       exclude=exclude):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    def stream_answer(self, question: str, engine: Any = None, params: Any = None,
                      groups: Sequence[str] | None = None, k: int = 5, mode: str | None = None,
                      retrieval: str | None = None, exclude: Callable[[Hit], bool] | None = None
                      ) -> Iterator[str | Answer]:
        """Yield the answer's text as it comes, then the checked :class:`Answer` last.

        Args:
            engine: the chat engine that writes generated answers (not needed to extract).
            params: generation settings; default greedy (``temperature=0``) with
                ``knowledge.answer_max_tokens``, so the same question gets the same answer.
            mode: ``"auto"``, ``"generate"`` or ``"extract"``; default ``knowledge.answer_mode``
                (see :mod:`lingxi.knowledge.answer`).
            retrieval: the retriever that finds the sources (:meth:`search_ids`' modes, or ``"auto"``);
                default ``knowledge.retrieval``. The answer says which one ran (``retrieval_mode``).
            exclude: a check of each retrieved passage; those it is true for are left out before
                the answer is made and listed in ``excluded`` (the gateway's injection guard).

        A generated answer may differ from the streamed text: unsupported sentences are dropped,
        missing citations attributed, and in ``auto`` mode a failed answer is replaced by a quotation.
        """
        from lingxi.engines.base import GenerationParams
        from lingxi.knowledge import answer as A

        mode = mode or self.settings.knowledge.answer_mode
        if mode not in A.MODES:
            raise UsageError(f"unknown answer mode '{mode}'; expected one of {', '.join(A.MODES)}")
        if not question.strip():
            raise UsageError("empty question")
        chosen = self.retrieval_mode(question, retrieval, groups)
        nav = None
        if chosen.mode == "navigate":
            # Sources are document-tree leaves cited by node id; a trusted model also chooses the way there.
            nav = self.navigate(question, groups, engine, k)
            hits = self.navigation_hits(nav)
        else:
            hits = self.search(question, chosen.mode, k=k, groups=groups) if self.embedder_name else []
        excluded: list[Hit] = []
        if exclude is not None:
            flags = [exclude(h) for h in hits]
            excluded = [h for h, bad in zip(hits, flags) if bad]
            hits = [h for h, bad in zip(hits, flags) if not bad]
        similarity = None
        clause = A.quote_clause(question, hits)  # "第十条是怎么规定的？": the article itself, whole
        candidates = A.rank_sentences(question, hits) if clause is None else []
        if clause is None and not A.answerable(question, candidates):
            # Only when the question's own language gives no answer are the chunks in another
            # language compared through the embedder (it embeds their sentences: slower).
            similarity = self._similarity(question, hits)
            if similarity is not None:
                candidates = A.rank_sentences(question, hits, similarity)
        if clause is not None:
            result = clause
        elif not A.answerable(question, candidates):
            result = A.no_answer(question, hits)
        elif mode == "extract" or (mode == "auto" and (engine is None or A.too_small(engine))):
            result = A.extract(question, candidates, hits)
        else:
            if engine is None:
                raise UsageError("answer mode 'generate' needs a chat engine")
            params = params or GenerationParams(max_tokens=self.settings.knowledge.answer_max_tokens, temperature=0.0)
            parts: list[str] = []
            for chunk in engine.stream(A.build_prompt(question, hits), params):
                if chunk.text:
                    parts.append(chunk.text)
                    yield chunk.text
            pair = (lambda q, text: similarity(q, [text])[0]) if similarity else None
            result = A.verify(question, "".join(parts), hits, pair)
            if mode == "auto" and not result.supported:
                quoted = A.extract(question, candidates, hits)
                quoted.dropped = result.dropped
                result = quoted
            if result.mode != "generated":
                yield "\n\n"
        if not result.supported and _uses_graph(chosen.mode):
            result = self._graph_answer(question, groups, hits, k) or result
        if result.mode != "generated":
            yield result.answer
        result.retrieval_mode = chosen.mode
        result.scratchpad = nav.scratchpad if nav is not None else None
        result.retrieval_reason = chosen.reason if retrieval == "auto" else None
        result.excluded = [{"id": h.id, "source": h.source} for h in excluded]
        yield result

    def _graph_answer(self, question: str, groups: Sequence[str] | None, hits: list[Hit], k: int) -> Answer | None:
        """The graph's own answer, cited by the chunks behind its facts, where no sentence of those
        chunks answers: the graph was chosen because the question names an entity and a relation,
        and a fact often stands in no sentence in the question's words or language ("Which enzyme
        metabolizes clopidogrel?" over 氯吡格雷 …需要经 CYP2C19 代谢活化). Every fact must lead to one
        of ``hits`` (chunks the caller may read that no ``exclude`` check left out); None otherwise,
        or when the graph does not answer."""
        from lingxi.knowledge.answer import citation
        from lingxi.knowledge.retrievers import GraphRetriever

        caller = list(groups) if groups is not None else None
        found = GraphRetriever.ask(self, question, k, caller)
        if found is None or not found.supported:
            return None
        behind = GraphRetriever.chunks(self, found, caller, None)
        shown = {h.id: h for h in hits}
        sources = list(dict.fromkeys(str(c["source"]) for c in found.citations))
        if not sources or any(s not in behind or behind[s][0] not in shown for s in sources):
            return None  # a fact the caller may read, from a chunk it may not (or that was left out)
        cited = [shown[cid] for cid in dict.fromkeys(behind[s][0] for s in sources)]
        ids = " ".join(f"[{h.id}]" for h in cited)
        return Answer(f"{found.answer} {ids}", [citation(h) for h in cited], True, [], hits, mode="graph",
                      paths=found.paths)

    def _shown(self, hits: list[Hit]) -> list[Hit]:
        """``hits`` with each source shown relative to the folder that was ingested (the common
        folder of the knowledge base's files), never as a path on this machine."""
        mapping = self.document_sources()
        for h in hits:
            h.source = mapping.get(h.source) or _relative_sources([h.source])[h.source]
        return hits

    def _similarity(self, question: str, hits: list[Hit]) -> Any:
        """``(question, sentences) -> cosines`` from a multilingual embedder, when some hit is in
        another language than the question (None otherwise, or with an English-only embedder). Of a
        concatenated embedder, its first multilingual member: the mean with MiniLM's cosine would
        weaken the very cross-language match this is for."""
        lang = language_of(question)
        name = self.embedder_name
        members = self.embedder_members()
        if members:
            name = next((m for m in members if m not in ENGLISH_ONLY), None)
        if not hits or name is None or name in ENGLISH_ONLY or all(language_of(h.text) in (lang, "other") for h in hits):
            return None
        embedder = self.embedder().members[name] if members else self.embedder()
        query = embedder.embed([question], kind="query")[0]
        query = query / (np.linalg.norm(query) or 1.0)

        def similarity(q: str, texts: Sequence[str]) -> list[float]:
            vq = query if q == question else embedder.embed([q], kind="query")[0]
            m = embedder.embed(list(texts), kind="passage")
            m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)
            return [float(x) for x in m @ (vq / (np.linalg.norm(vq) or 1.0))]
        return similarity

    # ------------------------------------------------------------ housekeeping

    def stats(self) -> dict[str, Any]:
        meta = self.store.meta()
        return {"name": self.name, "store": self.store.backend, "embedder": meta.get("embedder"),
                "dim": meta.get("dim"), "version": self.version, "chunk_tokens": meta.get("chunk_tokens"),
                "chunk_overlap": meta.get("chunk_overlap"), **self.store.stats(), "fusion": self.fusion.to_dict()}

    def documents(self) -> list[dict[str, Any]]:
        return [d.__dict__ for d in self.store.documents()]

    def drop(self) -> None:
        """Delete the knowledge base and its registration."""
        import shutil

        self.store.drop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        if self._fusion_queries() != self._saved_fusion and self.folder.is_dir():
            self._save_fusion(force=True)
        self._graph.close()  # a FalkorDB connection is kept between uses
        self.store.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _relative_sources(sources: Sequence[str]) -> dict[str, str]:
    """Each absolute file path relative to the common folder of ``sources`` (one file: its name);
    other sources (record ids) unchanged."""
    paths = [p for p in sources if os.path.isabs(p)]
    root = os.path.commonpath(paths) if paths else ""
    if root in paths:
        root = os.path.dirname(root)
    out = {}
    for p in sources:
        if not os.path.isabs(p):
            out[p] = p
        elif root and root != os.path.dirname(root):
            out[p] = os.path.relpath(p, root)
        else:  # nothing shared but the file system root: the file's own folder and name
            out[p] = os.path.join(*Path(p).parts[-2:])
    return out


def _read_fusion(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return {k: saved[k] for k in ("queries", "diff_sum", "diff_sq_sum", "observed", "corroboration_sums",
                                      "overlap_sums", "fused") if k in saved}
    except (OSError, ValueError, TypeError):
        return {}


def _file_hash(path: Path, groups: list[str]) -> str:
    """The file's content, its groups and how files are read (:data:`~lingxi.knowledge.loaders.READER_VERSION`)."""
    h = hashlib.sha256(json.dumps([READER_VERSION, groups]).encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _uses_graph(mode: str) -> bool:
    """The retriever ``mode`` reads the graph: ``graph`` itself or a fusion with it (``fuse:bm25+dense+graph``)."""
    return mode == "graph" or (mode.startswith(FUSE_PREFIX) and "graph" in mode[len(FUSE_PREFIX):].split("+"))


def _with_its_list(node: Any, index: Any) -> str:
    """A leaf's text as a source shows it. When it ends in a colon, the next leaf's too: the list it
    introduces ("… unless the function has any of the following:" and the items, a leaf of their
    own in a document whose paragraphs carry no numbers). Then the footnotes it marks ("[17]"): the
    PDF reader puts each note, "[17] This can be determined by …", as a paragraph of its own right
    after the one that marks it, and a note often says what the question asks. All are leaves of
    one section, so one caller sees them all."""
    parent = index.by_id.get(node.parent) if index is not None else None
    if parent is None:
        return node.text
    siblings = parent.children
    at = next((i for i, c in enumerate(siblings) if c.id == node.id), len(siblings))
    following = siblings[at + 1:]
    parts = [node.text]
    if introduces_list(node.text) and following and following[0].is_leaf:
        parts.append(following[0].text)
        following = following[1:]
    marks = set(_NOTE_MARK.findall("\n".join(parts)))
    for note in following:
        m = _NOTE_START.match(note.text)
        if not (note.is_leaf and m and m.group(1) in marks):
            break
        parts.append(note.text)
    return "\n\n".join(parts)


def _node_path(node: Any, index: Any) -> list[str]:
    """Titles of ``node``'s ancestors below its document, outermost first (``index``: the tree
    index that holds it)."""
    out: list[str] = []
    cur = index.by_id.get(node.parent) if index is not None else None
    while cur is not None and cur.parent:
        out.insert(0, cur.title)
        cur = index.by_id.get(cur.parent)
    return out


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr, dynamic_ncols=True, leave=False)


def scratch_kb(settings: Any, folder: str | Path, embedder: str | None = None) -> KnowledgeBase:
    """An unregistered embedded knowledge base in ``folder`` (evaluation, benchmarks). It shares
    the machine's embedding cache, so a second run over the same corpus embeds nothing."""
    from lingxi.stores.knowledge_sqlite import SQLiteKnowledgeStore

    folder = Path(folder)
    store = SQLiteKnowledgeStore(folder, ann_threshold=settings.knowledge.ann_threshold)
    if embedder is not None:
        settings.embedder(embedder)
    store.set_meta({"store": "sqlite", "embedder": embedder, "dim": 0, "version": "", "created_at": time.time(),
                    "chunk_tokens": settings.knowledge.chunk_tokens, "chunk_overlap": settings.knowledge.chunk_overlap})
    (folder / "kb.json").write_text(json.dumps({"name": folder.name, "store": "sqlite", "embedder": embedder}),
                                    encoding="utf-8")
    return KnowledgeBase(folder.name, settings, store, folder)
