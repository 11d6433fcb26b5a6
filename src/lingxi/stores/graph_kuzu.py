"""The embedded graph store: Kùzu, one database file per graph under ``home_dir/graphs/NAME``.

Kùzu is typed: one node table per node type (primary key ``name``) and one relationship table
per relation listing every (from type, to type) pair it connects. Kùzu cannot add a pair to an
existing relationship table, so an import that brings a new pair rebuilds that table inside
the import's transaction. New rows go in through ``COPY`` from Arrow tables (tens of thousands
of edges a second); changed rows through ``UNWIND ... SET``. One transaction per import:
nothing is half-written.

The upstream Kùzu project was archived in October 2025; its API is also served by a maintained
fork. This backend is kept thin (plain Cypher, the Python ``Connection``) so that a fork can
replace it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError, missing_extra
from lingxi.stores.graph import LABEL_TYPE, Edge, GraphStore, Node, NodeKey, QueryResult


def _kuzu() -> Any:
    try:
        import kuzu
    except ImportError as exc:
        raise missing_extra("the embedded graph store (Kùzu)", "graph", exc) from exc
    return kuzu


def _q(label: str) -> str:
    """A label as a quoted Cypher identifier (labels are checked identifiers: no backticks)."""
    return f"`{label}`"


def _literal_list(items: list[str]) -> str:
    """A Cypher list literal of strings. Kùzu cannot use a parameter inside a list predicate."""
    escaped = (s.replace("\\", "\\\\").replace("'", "\\'") for s in items)
    return "[" + ", ".join(f"'{s}'" for s in escaped) + "]"


def group_filter(rel: str, groups: list[str] | None) -> str:
    """The Cypher condition for the access rule on relationship variable ``rel``."""
    if groups is None:
        return "true"
    if not groups:
        return f"size({rel}.groups) = 0"
    return f"(size({rel}.groups) = 0 OR any(g IN {rel}.groups WHERE g IN {_literal_list(groups)}))"


def graph_names(folder: Path) -> list[str]:
    """The embedded graphs under ``folder`` (a Lingxi home's ``graphs/``), by name."""
    return sorted(d.name for d in folder.glob("*") if (d / "graph.kuzu").exists()) if folder.is_dir() else []


class KuzuGraphStore(GraphStore):
    kind = "kuzu"

    def __init__(self, directory: str | Path, *, read_only: bool = False):
        kuzu = _kuzu()
        self.directory = Path(directory)
        path = self.directory / "graph.kuzu"
        if read_only and not path.exists():
            name = self.directory.name
            known = graph_names(self.directory.parent)
            raise UsageError(f"no graph '{name}'; existing: {', '.join(known) or '(none)'}; import facts into it "
                             f"with `lingxi graph import {name} FILE…`")
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._db = kuzu.Database(str(path), read_only=read_only)
        except RuntimeError as exc:
            raise UsageError(f"cannot open graph '{self.directory.name}': {exc}") from exc
        self._conn = kuzu.Connection(self._db)
        self.read_only = read_only
        self._table_cache: dict[str, str] | None = None

    # ------------------------------------------------------------ helpers

    def _run(self, cypher: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return self._conn.execute(cypher, params or {})
        except RuntimeError as exc:  # Kùzu adds the query and a caret on further lines
            raise UsageError(f"graph query failed: {str(exc).splitlines()[0]}") from exc

    def _all(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        return self._run(cypher, params).get_all()

    def _tables(self) -> dict[str, str]:
        if self.read_only and self._table_cache is not None:  # a reader's schema cannot change under it
            return self._table_cache
        tables = {row[1]: row[2] for row in self._all("CALL show_tables() RETURN *")}
        self._table_cache = tables if self.read_only else None
        return tables

    def _of_kind(self, kind: str) -> list[str]:
        """The node (``"NODE"``) or relationship (``"REL"``) tables."""
        return [t for t, k in self._tables().items() if k == kind]

    def _pairs(self, relation: str) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self._all(f"CALL show_connection('{relation}') RETURN *")}

    # ------------------------------------------------------------ reads

    def nodes(self) -> list[Node]:
        out = []
        for name in self._of_kind("NODE"):
            for node_name, aliases in self._all(f"MATCH (n:{_q(name)}) RETURN n.name, n.aliases"):
                out.append(Node(name, node_name, tuple(aliases or ())))
        return out

    def _has_kind(self, relation, head_type, tail_type):
        tables = self._tables()
        if tables.get(relation) != "REL" or tables.get(head_type) != "NODE" or tables.get(tail_type) != "NODE":
            return False
        return (head_type, tail_type) in self._pairs(relation)

    def _read_rows(self, cypher):
        return self._all(cypher)

    def neighbors(self, keys: list[NodeKey], groups: list[str] | None) -> list[Edge]:
        by_type: dict[str, list[str]] = {}
        for type_, name in keys:
            by_type.setdefault(type_, []).append(name)
        tables = self._tables()
        out: list[Edge] = []
        for type_, names in by_type.items():
            if tables.get(type_) != "NODE":
                continue
            for direction in ("->", "<-"):
                left, right = ("-", direction) if direction == "->" else (direction, "-")
                rows = self._all(f"MATCH (a:{_q(type_)}){left}[r]{right}(b) WHERE a.name IN $names AND "
                                 f"{group_filter('r', groups)} RETURN a.name, label(r), label(b), b.name, "
                                 "r.groups, r.source", {"names": names})
                for a, rel, b_type, b, g, source in rows:
                    if direction == "->":
                        out.append(Edge(type_, a, rel, b_type, b, tuple(g or ()), source or ""))
                    else:
                        out.append(Edge(b_type, b, rel, type_, a, tuple(g or ()), source or ""))
        return out

    def edges(self, groups):
        out: list[Edge] = []
        for rel in self._of_kind("REL"):
            for a_type, a, b_type, b, g, source in self._all(
                    f"MATCH (a)-[r:{_q(rel)}]->(b) WHERE {group_filter('r', groups)} "
                    "RETURN label(a), a.name, label(b), b.name, r.groups, r.source"):
                out.append(Edge(a_type, a, rel, b_type, b, tuple(g or ()), source or ""))
        return out

    def readable(self, groups):
        return any(self._all(f"MATCH ()-[r:{_q(rel)}]->() WHERE {group_filter('r', groups)} RETURN 1 LIMIT 1")
                   for rel in self._of_kind("REL"))

    def set_timeout(self, seconds: float) -> None:
        """Stop any later query after ``seconds`` (0: no limit)."""
        self._conn.set_query_timeout(int(seconds * 1000))

    def run_read(self, cypher, params=None):
        if not self.read_only:  # the CLI and ask open the store read-only; a writer refuses to run user Cypher
            raise UsageError("this graph store was opened for writing: open it read-only to query")
        result = self._run(cypher, params)
        return QueryResult(list(result.get_column_names()), [list(r) for r in result.get_all()])

    def counts(self) -> dict[str, int]:
        nodes = sum(self._all(f"MATCH (n:{_q(t)}) RETURN count(*)")[0][0] for t in self._of_kind("NODE")
                    if t != LABEL_TYPE)
        edges = sum(self._all(f"MATCH ()-[r:{_q(t)}]->() RETURN count(*)")[0][0] for t in self._of_kind("REL"))
        return {"nodes": nodes, "edges": edges}

    # ------------------------------------------------------------ writes

    def _apply(self, new_nodes, changed_nodes, new_edges, changed_edges):
        import pyarrow as pa

        with self._transaction():
            tables = self._tables()
            for type_ in sorted({n.type for n in new_nodes} - set(tables)):
                self._run(f"CREATE NODE TABLE {_q(type_)}(name STRING PRIMARY KEY, aliases STRING[])")
            by_type: dict[str, list[Node]] = {}
            for node in new_nodes:
                by_type.setdefault(node.type, []).append(node)
            for type_, nodes in by_type.items():
                self._run(f"UNWIND $rows AS row CREATE (n:{_q(type_)} {{name: row.name, aliases: row.aliases}})",
                          {"rows": [{"name": n.name, "aliases": list(n.aliases)} for n in nodes]})
            for node in changed_nodes:
                self._run(f"MATCH (n:{_q(node.type)} {{name: $name}}) SET n.aliases = $aliases",
                          {"name": node.name, "aliases": list(node.aliases)})
            self._ensure_relations(new_edges, tables)
            groups_type = pa.list_(pa.string())
            by_kind: dict[tuple[str, str, str], list[Edge]] = {}
            for edge in new_edges:
                by_kind.setdefault((edge.relation, edge.head_type, edge.tail_type), []).append(edge)
            for (relation, head_type, tail_type), edges in by_kind.items():
                self._copy(relation, head_type, tail_type, pa.table({
                    "from": [e.head for e in edges], "to": [e.tail for e in edges],
                    "groups": pa.array([list(e.groups) for e in edges], type=groups_type),
                    "source": [e.source for e in edges]}))
            for edge in changed_edges:
                self._run(f"MATCH (a:{_q(edge.head_type)} {{name: $h}})-[r:{_q(edge.relation)}]->"
                          f"(b:{_q(edge.tail_type)} {{name: $t}}) SET r.groups = $g, r.source = $s",
                          {"h": edge.head, "t": edge.tail, "g": list(edge.groups), "s": edge.source})

    def delete_sources(self, sources):
        if not sources:
            return 0
        deleted = 0
        with self._transaction():
            for rel in self._of_kind("REL"):
                match = f"MATCH ()-[r:{_q(rel)}]->() WHERE r.source IN $s"
                n = self._all(f"{match} RETURN count(*)", {"s": list(sources)})[0][0]
                if n:
                    self._run(f"{match} DELETE r", {"s": list(sources)})
                    deleted += n
        return deleted

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """All the writes inside, or none of them."""
        self._run("BEGIN TRANSACTION")
        try:
            yield
            self._run("COMMIT")
        except BaseException:
            self._run("ROLLBACK")
            raise

    def _copy(self, relation: str, head_type: str, tail_type: str, table: Any) -> None:
        self._run(f"COPY {_q(relation)} FROM $rows (from='{head_type}', to='{tail_type}')", {"rows": table})

    def _ensure_relations(self, edges: list[Edge], tables: dict[str, str]) -> None:
        """Create each relationship table, or rebuild it when the import brings a new type pair."""
        import pyarrow as pa

        wanted: dict[str, set[tuple[str, str]]] = {}
        for edge in edges:
            wanted.setdefault(edge.relation, set()).add((edge.head_type, edge.tail_type))
        for relation, pairs in wanted.items():
            have = self._pairs(relation) if tables.get(relation) == "REL" else set()
            if relation in tables and tables[relation] != "REL":
                raise UsageError(f"'{relation}' is already a node type, so it cannot also be a relation")
            if pairs <= have:
                continue
            kept: list[tuple[str, str, list[list[Any]]]] = []
            if have:
                for head_type, tail_type in have:
                    kept.append((head_type, tail_type, self._all(
                        f"MATCH (a:{_q(head_type)})-[r:{_q(relation)}]->(b:{_q(tail_type)}) "
                        "RETURN a.name, b.name, r.groups, r.source")))
                self._run(f"DROP TABLE {_q(relation)}")
            spec = ", ".join(f"FROM {_q(h)} TO {_q(t)}" for h, t in sorted(have | pairs))
            self._run(f"CREATE REL TABLE {_q(relation)}({spec}, groups STRING[], source STRING)")
            for head_type, tail_type, rows in kept:
                if rows:
                    self._copy(relation, head_type, tail_type, pa.table({
                        "from": [r[0] for r in rows], "to": [r[1] for r in rows],
                        "groups": pa.array([list(r[2] or ()) for r in rows], type=pa.list_(pa.string())),
                        "source": [r[3] or "" for r in rows]}))

    def close(self) -> None:
        self._conn.close()
        self._db.close()


__all__ = ["KuzuGraphStore", "group_filter"]
