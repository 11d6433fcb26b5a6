"""Where a knowledge graph lives: one small interface, :class:`GraphStore`, with an embedded
backend (Kùzu, :mod:`lingxi.graph.kuzu_store`) and a server backend (FalkorDB,
:mod:`lingxi.stores.graph_falkordb`), chosen by name (``[graph] store``).

The shared part lives here: merging aliases into canonical nodes before anything is written,
and the rule every read follows: an edge is visible to a caller whose groups share one of the
edge's groups, or to anyone when the edge has none (public), or to a trusted caller
(``groups=None``). Backends only create tables, write rows and run Cypher.

What this module does *not* do: parse files (:mod:`lingxi.graph.triples`) or answer questions
(:mod:`lingxi.graph.answer`).
"""

from __future__ import annotations

import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from lingxi.graph.triples import Triple

NodeKey = tuple[str, str]  # (type, name)
#: Nodes of this type hold the words that name a relation or a type in questions (the
#: ``{"label", "words"}`` rows of an import), not facts: counts leave them out.
LABEL_TYPE = "LingxiLabel"


@dataclass(frozen=True)
class Node:
    type: str
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> NodeKey:
        return (self.type, self.name)


@dataclass(frozen=True)
class Edge:
    """A stored fact, as a read returns it (only ever one the caller may see)."""

    head_type: str
    head: str
    relation: str
    tail_type: str
    tail: str
    groups: tuple[str, ...] = ()
    source: str = ""

    @property
    def head_key(self) -> NodeKey:
        return (self.head_type, self.head)

    @property
    def tail_key(self) -> NodeKey:
        return (self.tail_type, self.tail)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


@dataclass
class WriteReport:
    """What one import changed."""

    nodes_added: int = 0  # nodes of facts; the words of relations and types are ``labels_added``
    labels_added: int = 0
    edges_added: int = 0
    edges_updated: int = 0
    edges_unchanged: int = 0
    aliases_added: int = 0
    merged: dict[str, str] = field(default_factory=dict)  # alias as written -> canonical name

    def to_dict(self) -> dict[str, Any]:
        return {"nodes_added": self.nodes_added, "labels_added": self.labels_added, "edges_added": self.edges_added,
                "edges_updated": self.edges_updated, "edges_unchanged": self.edges_unchanged,
                "aliases_added": self.aliases_added, "merged": self.merged}


def fold(text: str) -> str:
    """The form names are compared in when linking and merging aliases: NFKC-normalised (names
    are stored so, and a Chinese input method types full-width letters: ＳＡＰ is SAP) and
    case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def visible(groups: tuple[str, ...] | list[str], caller: list[str] | None) -> bool:
    """The access rule: trusted callers (None) see all; others see public edges and edges sharing a group."""
    return caller is None or not groups or any(g in caller for g in groups)


class AliasIndex:
    """Names and aliases of every node, per type, folded: the one place aliases are resolved."""

    def __init__(self, nodes: list[Node]):
        self.nodes: dict[NodeKey, Node] = {n.key: n for n in nodes}
        self._by_name: dict[tuple[str, str], NodeKey] = {}
        for node in nodes:
            self._add(node)

    def _add(self, node: Node) -> None:
        for name in (node.name, *node.aliases):
            self._by_name.setdefault((node.type, fold(name)), node.key)

    def resolve(self, type_: str, name: str) -> NodeKey | None:
        return self._by_name.get((type_, fold(name)))

    def upsert(self, type_: str, name: str, aliases: tuple[str, ...],
               by_alias: bool = True) -> tuple[NodeKey, bool, tuple[str, ...]]:
        """The canonical node for ``(type_, name)`` (created when new), whether it is new, and the
        aliases it gained. ``by_alias=False``: only the exact name identifies the node."""
        key = self.nodes.get((type_, name)) and (type_, name) if not by_alias else self.resolve(type_, name)
        for alias in aliases if by_alias else ():  # an alias may name a node that exists under another name
            key = key or self.resolve(type_, alias)
        if key is None:
            node = Node(type_, name, tuple(a for a in aliases if fold(a) != fold(name)))
            self.nodes[node.key] = node
            self._add(node)
            return node.key, True, node.aliases
        node = self.nodes[key]
        known = {fold(node.name), *(fold(a) for a in node.aliases)}
        gained = tuple(dict.fromkeys(a for a in (name, *aliases) if fold(a) not in known))
        if gained:
            node = Node(node.type, node.name, node.aliases + gained)
            self.nodes[key] = node
            self._add(node)
        return key, False, gained


class GraphStore(ABC):
    """A named graph of typed nodes and typed edges with provenance and access groups.

    Implementations keep their own connection; one instance serves one graph.
    """

    kind: str = ""

    # ------------------------------------------------------------ backend primitives

    @abstractmethod
    def nodes(self) -> list[Node]:
        """Every node with its aliases (for linking names in a question and merging aliases)."""

    @abstractmethod
    def _has_kind(self, relation: str, head_type: str, tail_type: str) -> bool:
        """Whether edges of this kind can exist yet (the labels, and for Kùzu the table pair, exist)."""

    @abstractmethod
    def _read_rows(self, cypher: str) -> list[list[Any]]:
        """Rows of a query Lingxi wrote itself."""

    def edges_between(self, pairs: set[tuple[str, str, str]]) -> dict[tuple[str, str, str, str, str], Edge]:
        """Existing edges of the given (relation, head type, tail type) kinds, by triple key."""
        out: dict[tuple[str, str, str, str, str], Edge] = {}
        for relation, head_type, tail_type in pairs:
            if not self._has_kind(relation, head_type, tail_type):
                continue
            rows = self._read_rows(f"MATCH (a:`{head_type}`)-[r:`{relation}`]->(b:`{tail_type}`) "
                                   "RETURN a.name, b.name, r.groups, r.source")
            for head, tail, groups, source in rows:
                out[(head_type, head, relation, tail_type, tail)] = Edge(
                    head_type, head, relation, tail_type, tail, tuple(groups or ()), source or "")
        return out

    @abstractmethod
    def _apply(self, new_nodes: list[Node], changed_nodes: list[Node], new_edges: list[Edge],
               changed_edges: list[Edge]) -> None:
        """Write a checked, alias-resolved batch, all or nothing where the backend allows."""

    @abstractmethod
    def neighbors(self, keys: list[NodeKey], groups: list[str] | None) -> list[Edge]:
        """Edges touching any of ``keys`` (either direction) that the caller may see."""

    @abstractmethod
    def edges(self, groups: list[str] | None) -> list[Edge]:
        """Every edge the caller may see (text-to-Cypher's projection copies them)."""

    @abstractmethod
    def readable(self, groups: list[str] | None) -> bool:
        """The caller may see at least one edge (the gateway lists the graph to it)."""

    @abstractmethod
    def run_read(self, cypher: str, params: dict[str, Any] | None = None) -> QueryResult:
        """Run a Cypher query the backend itself executes read-only."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """``{"nodes": N, "edges": M}``."""

    @abstractmethod
    def delete_sources(self, sources: list[str]) -> int:
        """Delete the edges whose ``source`` is one of ``sources`` (facts read from a chunk that
        changed or is gone); their nodes stay. Returns how many were deleted."""

    def close(self) -> None:
        """Release the connection."""

    # ------------------------------------------------------------ shared behaviour

    def write(self, triples: list[Triple], nodes: list[Node] = (), *, update_existing: bool = True) -> WriteReport:
        """Import checked triples (and bare ``nodes``, e.g. the words naming a label): aliases merge
        into canonical nodes; an edge that exists gets the new source and groups (unless
        ``update_existing`` is false: extraction adds facts and leaves known ones as they are);
        re-importing the same file changes nothing."""
        report = WriteReport()
        index = AliasIndex(self.nodes())
        before = dict(index.nodes)
        for node in nodes:  # bare nodes (label words) are named exactly: shared words do not merge them
            index.upsert(node.type, node.name, node.aliases, by_alias=False)
        resolved: dict[tuple[str, str, str, str, str], Edge] = {}
        for t in triples:
            head, new_h, _ = index.upsert(t.head_type, t.head, t.head_aliases)
            tail, new_t, _ = index.upsert(t.tail_type, t.tail, t.tail_aliases)
            if fold(head[1]) != fold(t.head):
                report.merged[t.head] = head[1]
            if fold(tail[1]) != fold(t.tail):
                report.merged[t.tail] = tail[1]
            if head == tail:
                from lingxi.errors import UsageError

                raise UsageError(f"{t.source}: '{t.head}' and '{t.tail}' are aliases of one node, so "
                                 f"{t.relation} would be a self-referencing relation")
            edge = Edge(head[0], head[1], t.relation, tail[0], tail[1], tuple(sorted(t.groups)), t.source)
            resolved[(edge.head_type, edge.head, edge.relation, edge.tail_type, edge.tail)] = edge
        new_nodes = [n for k, n in index.nodes.items() if k not in before]
        changed_nodes = [n for k, n in index.nodes.items() if k in before and n != before[k]]
        report.labels_added = sum(n.type == LABEL_TYPE for n in new_nodes)
        report.nodes_added = len(new_nodes) - report.labels_added
        report.aliases_added = sum(len(n.aliases) for n in new_nodes) + sum(
            len(n.aliases) - len(before[n.key].aliases) for n in changed_nodes)
        existing = self.edges_between({(e.relation, e.head_type, e.tail_type) for e in resolved.values()})
        new_edges, changed_edges = [], []
        for key, edge in resolved.items():
            old = existing.get(key)
            if old is None:
                new_edges.append(edge)
            elif update_existing and (old.groups, old.source) != (edge.groups, edge.source):
                changed_edges.append(edge)
            else:
                report.edges_unchanged += 1
        report.edges_added, report.edges_updated = len(new_edges), len(changed_edges)
        if new_nodes or changed_nodes or new_edges or changed_edges:
            self._apply(new_nodes, changed_nodes, new_edges, changed_edges)
        return report

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> QueryResult:
        """A read-only Cypher query: writes are refused before the backend sees them, and the
        backend runs it read-only as well.

        Raises:
            UsageError: the query writes, or the backend rejects it (syntax, unknown label).
        """
        from lingxi.graph.cypher import check_read_only

        check_read_only(cypher)
        return self.run_read(cypher, params)


def open_store(name: str, settings: Any, store: str | None = None, *, read_only: bool = False) -> GraphStore:
    """The graph ``name`` in the configured store (``[graph] store``, or ``store`` to override);
    ``read_only`` for queries and questions (the embedded store then refuses writes itself).

    Raises:
        UsageError: a bad graph name or store.
        MissingExtraError: the backend's package is not installed (``lingxi[graph]``).
    """
    from lingxi.errors import UsageError

    cfg = settings.graph
    kind = store or cfg.store
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name) or len(name) > 64:
        raise UsageError(f"graph name {name!r}: use letters, digits, '-' and '_' (at most 64)")
    if kind == "kuzu":
        from lingxi.stores.graph_kuzu import KuzuGraphStore

        return KuzuGraphStore(settings.home_dir / "graphs" / name, read_only=read_only)
    if kind == "falkordb":
        from lingxi.stores.graph_falkordb import FalkorDBGraphStore, server_url

        return FalkorDBGraphStore(server_url(settings), name)
    raise UsageError(f"unknown graph store '{kind}': expected kuzu or falkordb")


__all__ = ["AliasIndex", "Edge", "GraphStore", "Node", "NodeKey", "QueryResult", "WriteReport", "fold",
           "open_store", "visible"]
