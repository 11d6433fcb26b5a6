"""Retrievers by name: one small interface, :class:`Retriever`, and a registry that
``KnowledgeBase.search_ids`` dispatches through.

Built in: ``bm25``, ``dense``, ``dense:NAME`` (one member of a concatenated embedder),
``hybrid`` (adaptive fusion of bm25 and dense, or of bm25 and every member's dense ranking; see
:mod:`lingxi.knowledge.fusion`), ``graph`` (the provenance chunks of paths in the knowledge
base's graph, see :class:`GraphRetriever`) and ``navigate`` (the chunks of the document-tree
leaves that tree navigation reaches, see :mod:`lingxi.knowledge.navigate`). Any list of
registered retrievers fuses by name: ``fuse:bm25+dense+graph``. More register in code with
:func:`register_retriever`, or from a package through the ``lingxi.retrievers`` entry-point group
(value ``"module:Class"``, the class taking no arguments); a registered name wins over an entry point, and neither may replace a
built-in.

The contract every retriever keeps: it returns only chunks the caller's ``groups`` may read and
that match ``filters``, and it applies both inside its own query (the store's search methods,
:meth:`~lingxi.stores.knowledge.KnowledgeStore.visible`), never by filtering a result list
afterwards that was cut to ``k`` first. ``groups=None`` is a trusted caller who sees everything.

What this module does not do: rerank (``KnowledgeBase`` reranks the final list) or answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lingxi.errors import UsageError

if TYPE_CHECKING:
    from lingxi.knowledge.kb import KnowledgeBase

Scored = list[tuple[str, float]]  # (chunk id, score), best first

#: entry-point group third-party retrievers register under
ENTRY_POINT_GROUP = "lingxi.retrievers"
FUSE_PREFIX = "fuse:"

__all__ = ["CONTEXT_WEIGHT", "ENTRY_POINT_GROUP", "FUSE_PREFIX", "Bm25Retriever", "DenseRetriever", "FusedRetriever", "GraphRetriever",
           "HybridRetriever", "MemberDenseRetriever", "Query", "Retriever", "available_retrievers", "get_retriever", "register_retriever",
           "unregister_retriever"]


class Query:
    """A query's text with its search tokens and its vector, each computed once and only when a
    retriever asks (a fused search of five retrievers embeds the query once)."""

    def __init__(self, text: str, kb: KnowledgeBase):
        self.text = text
        self._kb = kb
        self._tokens: list[str] | None = None
        self._vector: np.ndarray | None = None
        self._scored: tuple[tuple[str, ...], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def tokens(self) -> list[str]:
        if self._tokens is None:
            from lingxi.text import tokenize

            self._tokens = tokenize(self.text)
        return self._tokens

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = self._kb.embedder().embed([self.text], kind="query")[0]
        return self._vector

    def store_scores(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 and cosine scores of ``ids`` from the store, read once for both retrievers."""
        key = tuple(ids)
        if self._scored is None or self._scored[0] != key:
            self._scored = (key, self._kb.store.score(ids, self.tokens, self.vector))
        return self._scored[1]


class Retriever(ABC):
    """Find the chunks of a knowledge base that answer a query.

    Subclasses set ``name`` and implement :meth:`search`; a retriever that can score any given
    chunk (not only the ones it found) implements :meth:`score` too, which makes fusion compare
    every candidate on every scale.
    """

    name: str = ""
    #: taken by fusion as ``candidates`` of its own, before the final cut to ``k``
    fusable: bool = True

    @abstractmethod
    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        """The ``k`` best visible chunks for ``query``, best first.

        Args:
            groups: the caller's groups (None = trusted, sees everything); enforced inside the query.
            filters: document metadata that must match.
        """

    def score(self, kb: KnowledgeBase, query: Query, ids: Sequence[str]) -> np.ndarray | None:
        """This retriever's scores of chunks ``ids`` (already visible to the caller), or None when
        it can only score what it finds itself."""
        return None

    def available(self, kb: KnowledgeBase) -> str | None:
        """None when this retriever can search ``kb``; else the reason it cannot (said to the user)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


#: Title and heading words count this many times in a chunk's BM25 tokens (a cheap BM25F: the
#: words naming a section say more about it than any one of its sentences). Measured nDCG@10 with
#: BM25 alone: dbpedia-5k-en 0.3832 -> 0.4007, cmrc2018-trial-zh 0.9829 -> 0.9841 (docs/knowledge.md).
CONTEXT_WEIGHT = 2


def bm25_tokens(chunk: Any) -> list[str]:
    """The tokens a chunk is indexed under for BM25: those of its text and context (title >
    headings), the context's counted ``CONTEXT_WEIGHT`` times. Queries are tokenised plainly."""
    from lingxi.text import tokenize

    extra = tokenize(chunk.context) * (CONTEXT_WEIGHT - 1) if chunk.context else []
    return extra + tokenize(chunk.search_text)


class Bm25Retriever(Retriever):
    """Okapi BM25 over the chunks' search tokens (jieba words, stemmed English), in the store."""

    name = "bm25"

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        return kb.store.search_bm25(query.tokens, k, groups, filters)

    def score(self, kb: KnowledgeBase, query: Query, ids: Sequence[str]) -> np.ndarray:
        return query.store_scores(ids)[0]


class DenseRetriever(Retriever):
    """Cosine similarity of the knowledge base's embedder's vectors, in the store."""

    name = "dense"

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        return kb.store.search_dense(query.vector, k, groups, filters)

    def score(self, kb: KnowledgeBase, query: Query, ids: Sequence[str]) -> np.ndarray:
        return query.store_scores(ids)[1]


class MemberDenseRetriever(Retriever):
    """``dense:NAME``: one member's cosine in a knowledge base whose embedder is a concatenation
    (:class:`~lingxi.engines.embedders.ConcatEmbedder`): the query vector with the other members'
    components zeroed, searched in the same index. Exact below the store's ANN threshold; above
    it the HNSW graph was built for the whole vector, so the member's search asks it for more."""

    PREFIX = "dense:"

    def __init__(self, member: str):
        self.member = member
        self.name = self.PREFIX + member

    def available(self, kb: KnowledgeBase) -> str | None:
        members = kb.embedder_members()
        if self.member not in members:
            has = f"its embedder's members are {', '.join(members)}" if members else \
                f"its embedder '{kb.embedder_name}' is not a concatenation (engine \"concat\")"
            return f"knowledge base '{kb.name}' has no '{self.member}' vectors: {has}"
        return None

    def _vector(self, kb: KnowledgeBase, query: Query) -> np.ndarray:
        return kb.embedder().part(query.vector, self.member)

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        scale = kb.embedder().part_scale
        return [(i, s * scale) for i, s in kb.store.search_dense(self._vector(kb, query), k, groups, filters, partial=True)]

    def score(self, kb: KnowledgeBase, query: Query, ids: Sequence[str]) -> np.ndarray:
        return kb.store.score(ids, [], self._vector(kb, query))[1] * kb.embedder().part_scale


class FusedRetriever(Retriever):
    """Adaptive z-score fusion of several retrievers (see :mod:`lingxi.knowledge.fusion`).

    Each member returns ``knowledge.candidates`` chunks; the union is scored by every member that
    can score any chunk, and a member that cannot gives the chunks it did not find its lowest
    score. The weights come from the knowledge base's corroboration statistics for this list of
    members, which every search updates (``learn``).
    """

    def __init__(self, members: Sequence[Retriever], name: str | None = None):
        if len(members) < 2:
            raise UsageError("fusion needs at least two retrievers")
        self.members = list(members)
        self.name = name or FUSE_PREFIX + "+".join(m.name for m in self.members)

    def available(self, kb: KnowledgeBase) -> str | None:
        reasons = [r for m in self.members if (r := m.available(kb))]
        return "; ".join(reasons) if reasons else None

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None, *, learn: bool = True,
               weights: Sequence[float] | None = None) -> Scored:
        """The fused ``k`` best; ``weights`` (one per member) replace the learnt ones, as a
        benchmark's sweep over fixed weights asks."""
        from lingxi.knowledge.fusion import fuse_many

        n = max(kb.settings.knowledge.candidates, k)
        lists = [m.search(kb, query, n, groups, filters) for m in self.members]
        stats = kb.fusion_stats(tuple(m.name for m in self.members))
        if learn:
            stats.observe(*[[i for i, _ in run] for run in lists])
            kb.fusion_observed()
        ids = list(dict.fromkeys(i for run in lists for i, _ in run))
        if not ids:
            return []
        scores, refs = [], []
        for member, run in zip(self.members, lists, strict=True):
            full = member.score(kb, query, ids)
            if full is None:
                got = dict(run)
                floor = min(got.values()) if got else 0.0
                full = np.array([got.get(i, floor) for i in ids], dtype=np.float64)
            # Normalised over the union: a chunk BM25 did not match scores 0, which is ordinary among
            # the dense candidates, not an outlier as it would be against BM25's own matches.
            scores.append(np.asarray(full, dtype=np.float64))
            refs.append(scores[-1])
        return fuse_many(ids, scores, refs, list(weights) if weights is not None else stats.weights())[:k]


class HybridRetriever(FusedRetriever):
    """``bm25`` fused with ``dense``: the default. With a concatenated embedder, ``bm25`` fused with
    each member's ``dense:NAME``: every single ranking the knowledge base has."""

    def __init__(self) -> None:
        super().__init__([Bm25Retriever(), DenseRetriever()], name="hybrid")

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None, *, learn: bool = True,
               weights: Sequence[float] | None = None) -> Scored:
        members = kb.embedder_members()
        if members:
            fused = FusedRetriever([Bm25Retriever(), *(MemberDenseRetriever(m) for m in members)], name="hybrid")
            return fused.search(kb, query, k, groups, filters, learn=learn, weights=weights)
        return super().search(kb, query, k, groups, filters, learn=learn, weights=weights)


class GraphRetriever(Retriever):
    """The chunks that back the facts on the best paths of the knowledge base's graph.

    The graph is the one with the knowledge base's name (``lingxi graph import NAME …``, in the
    configured graph store). The question's entities are linked to the graph's nodes and 1-3 hop
    paths followed as ``lingxi graph ask`` does (:func:`lingxi.graph.answer.ask`), through edges
    the caller's groups may read only. Each fact on the chosen paths names its provenance
    (``source``), which leads to a chunk when it is

    * a chunk id of this knowledge base (``3.2.5.0``), or
    * a document of it (``drug-labels.md`` or ``drug-labels.md#aspirin``: the path as shown in
      citations, or its last parts): the chunk of that document that BM25 ranks first for the
      fact's words (and the anchor's).

    Either way the chunk is found by a store query under the caller's ``groups`` and ``filters``,
    so a fact the caller may read never reveals a chunk they may not. A fact whose source is
    neither backs no chunk; a question that names no entity of the graph gets none.
    """

    name = "graph"

    def available(self, kb: KnowledgeBase) -> str | None:
        with kb.graph() as graph:
            if graph is None:
                return f"knowledge base '{kb.name}' has no graph: import one with 'lingxi graph import {kb.name} FILE'"
        return None

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        found = self.ask(kb, query.text, k, groups)
        if found is None or not found.supported:
            return []
        out: dict[str, float] = {}
        for cid, score in self.chunks(kb, found, groups, filters).values():
            out.setdefault(cid, score)
        return sorted(out.items(), key=lambda x: -x[1])[:k]

    @staticmethod
    def ask(kb: KnowledgeBase, question: str, k: int, groups: list[str] | None) -> Any:
        """The graph's answer (:func:`lingxi.graph.answer.ask`, up to ``k`` paths), or None
        without a graph."""
        from lingxi.graph.answer import ask

        with kb.graph() as graph:
            if graph is None:
                return None
            store, index = graph
            return ask(store, question, groups=groups, max_hops=kb.settings.graph.max_hops, max_paths=k,
                       index=index, suggest=False)

    @staticmethod
    def chunks(kb: KnowledgeBase, found: Any, groups: list[str] | None,
               filters: dict[str, Any] | None) -> dict[str, tuple[str, float]]:
        """Each cited fact's source -> (the chunk behind it, score), for the sources that lead to a
        chunk the caller may read (see the class docstring)."""
        from lingxi.text import tokenize

        out: dict[str, tuple[str, float]] = {}
        documents = None
        for rank, citation in enumerate(found.citations):
            score = float(citation["score"]) - 1e-3 * rank
            source = str(citation["source"])
            if source in out:
                continue
            if kb.store.visible([source], groups, filters):
                out[source] = (source, score)
                continue
            if documents is None:
                documents = kb.document_sources()
            path, _, anchor = source.partition("#")
            targets = [abs_ for abs_, shown in documents.items()
                       if path and (path in (shown, abs_) or shown.endswith("/" + path))]
            wanted = [t for t in targets if filters is None or "source" not in filters
                      or t in _as_list(filters["source"])]
            if not wanted:
                continue
            scoped = {**(filters or {}), "source": wanted}
            best = kb.store.search_bm25(tokenize(f"{citation['text']} {anchor}"), 1, groups, scoped)
            if best:
                out[source] = (best[0][0], score)
        return out


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


# ---------------------------------------------------------------- registry

def _navigate() -> Retriever:
    from lingxi.knowledge.navigate import NavigateRetriever  # it subclasses Retriever: imported when used

    return NavigateRetriever()


_BUILTIN: dict[str, Callable[[], Retriever]] = {
    "bm25": Bm25Retriever, "dense": DenseRetriever, "hybrid": HybridRetriever, "graph": GraphRetriever,
    "navigate": _navigate}
_registered: dict[str, Callable[[], Retriever]] = {}


def register_retriever(name: str, factory: Callable[[], Retriever]) -> None:
    """Make ``factory()`` the retriever called ``name`` (``kb search --mode NAME``, fusion lists).

    Raises:
        ValueError: a built-in name, or a name that cannot be part of a ``fuse:`` list.
    """
    if name in _BUILTIN:
        raise ValueError(f"'{name}' is a built-in retriever")
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"retriever name {name!r}: use letters, digits, '_' and '-'")
    _registered[name] = factory


def unregister_retriever(name: str) -> None:
    """Forget a retriever added with :func:`register_retriever` (tests)."""
    _registered.pop(name, None)


def available_retrievers() -> dict[str, Callable[[], Retriever]]:
    """Every known name -> a factory (entry points are imported only when used)."""
    from importlib.metadata import entry_points

    found: dict[str, Callable[[], Retriever]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _BUILTIN:
            found[ep.name] = lambda ep=ep: ep.load()()
    return found | _registered | _BUILTIN


def get_retriever(name: str) -> Retriever:
    """The retriever called ``name``; ``fuse:a+b+c`` fuses registered ones.

    Raises:
        UsageError: an unknown name (the message lists the known ones) or a bad fusion list.
    """
    if name.startswith(FUSE_PREFIX):
        parts = [p.strip() for p in name[len(FUSE_PREFIX):].split("+")]
        if len(parts) < 2 or not all(parts) or len(set(parts)) != len(parts):
            raise UsageError(f"'{name}': a fusion lists two or more different retrievers, e.g. fuse:bm25+dense+graph")
        members = [get_retriever(p) for p in parts]
        return FusedRetriever(members, name=FUSE_PREFIX + "+".join(parts))
    if name.startswith(MemberDenseRetriever.PREFIX) and len(name) > len(MemberDenseRetriever.PREFIX):
        return MemberDenseRetriever(name[len(MemberDenseRetriever.PREFIX):])
    # a built-in or registered name is found without reading every installed package's entry
    # points (about 10 ms with the full extras, on every search)
    known = _registered | _BUILTIN if name in _registered or name in _BUILTIN else available_retrievers()
    if name not in known:
        raise UsageError(f"unknown search mode '{name}'; expected auto, one of {', '.join(sorted(known))}, "
                         f"{MemberDenseRetriever.PREFIX}MEMBER (of a concatenated embedder) or {FUSE_PREFIX}A+B…")
    made = known[name]()
    if not isinstance(made, Retriever):
        raise UsageError(f"retriever '{name}' is a {type(made).__name__}, not a lingxi Retriever")
    if not made.name:
        made.name = name
    return made
