"""A question answered by Cypher that a model trusted to write composes from the graph's schema.

    lingxi graph ask NAME "List every drug metabolized by CYP2C9" --cypher --model strong

The model sees the node types and relation kinds the caller may read (``(:Drug {name})-[:TREATS]->
(:Disease {name})``) and replies with one query. The query must pass the read-only rule
(:func:`lingxi.graph.cypher.check_read_only`): a generated ``DELETE``/``SET``/``CREATE`` is refused
and nothing runs.

It then runs **on a projection**: a throwaway embedded (Kùzu) graph holding only the facts the
caller's groups may read, so no query, however written, reaches another group's facts, and the
model writes for one dialect whatever the store. Only a trusted operator (``groups=None``) on an
embedded graph queries it directly, label-word nodes included, as ``graph query`` does. Copying
costs time: at 100,000 edges of which 10% are restricted, 5.4 s from Kùzu and 9.6 s from
FalkorDB (``benchmarks/graph.py``). A query is stopped after ``TIMEOUT_S``; at most ``MAX_ROWS`` rows are
kept, node and relationship values as their properties.

The answer is the query's rows as they come back: nothing is generated, so a wrong query gives
wrong rows, never invented ones, and the query is returned with them to be checked.

The bundled SmolLM2-135M is refused (:func:`lingxi.graph.extract.require_trusted`); path
questions go through :func:`lingxi.graph.answer.ask`, which needs no model.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.graph.answer import GraphAnswer
from lingxi.graph.cypher import check_read_only
from lingxi.graph.triples import Triple
from lingxi.stores.graph import Edge, GraphStore

#: Rows kept in an answer.
MAX_ROWS = 50
#: A model's query is stopped after this long.
TIMEOUT_S = 10.0
#: How a query starts; a reply that starts otherwise (and does not write) is not a query.
_READS = ("MATCH", "OPTIONAL", "WITH", "UNWIND", "RETURN")

_SYSTEM = ("You write one read-only Cypher query (MATCH ... RETURN) for the Kùzu graph database that answers the "
           "question over this graph. "
           "Every node has a `name` property. Use only the node labels and relationship types listed, with the "
           "arrows as listed. Reply with the query only.\n\nGraph schema:\n")


def visible_edges(store: GraphStore, groups: list[str] | None) -> list[Edge]:
    """Every fact ``groups`` may read (label-word nodes have no edges)."""
    return store.edges(groups)


def schema_text(edges: list[Edge]) -> str:
    kinds = sorted({(e.head_type, e.relation, e.tail_type) for e in edges})
    return "\n".join(f"(:{h} {{name}})-[:{r}]->(:{t} {{name}})" for h, r, t in kinds)


def query_from_reply(reply: str) -> str:
    """The query in a model's reply (a fenced block, or the text itself)."""
    fenced = re.search(r"```(?:cypher)?\s*(.*?)```", reply, re.S | re.I)
    return (fenced.group(1) if fenced else reply).strip().rstrip(";").strip()


def ask_cypher(store: GraphStore, question: str, engine: Any, *, model_name: str,
               groups: list[str] | None = None) -> GraphAnswer:
    """Answer ``question`` with the rows of a model-written, read-only query (see the module docstring).

    Returns ``mode="unknown"`` when the query finds no rows or the store rejects it (a syntax
    error, a label the caller's facts do not have), with the query.

    Raises:
        UsageError: an empty question, a model too small to be trusted, a generated query that
            writes (the query is named; nothing runs).
    """
    from lingxi.engines.base import GenerationParams
    from lingxi.graph.extract import require_trusted

    if not question or not question.strip():
        raise UsageError("the question is empty")
    require_trusted(engine, model_name, "write Cypher")
    edges = visible_edges(store, groups)
    if not edges:
        return GraphAnswer("I don't know: this graph holds no facts you may read.", False, "unknown")
    prompt = [{"role": "system", "content": _SYSTEM + schema_text(edges)},
              {"role": "user", "content": question}]
    query = query_from_reply(engine.generate(prompt, GenerationParams(max_tokens=256, temperature=0.0)).text)
    try:
        check_read_only(query)
    except UsageError as exc:
        raise UsageError(f"the model's query was refused, nothing ran ({exc}): {query!r}") from None
    if not query or query.split(None, 1)[0].upper() not in _READS:
        answer = GraphAnswer(f"I don't know: the model did not write a query ({query[:80]!r})", False, "unknown")
        answer.cypher = query
        return answer
    try:
        if groups is None and store.kind == "kuzu":  # a trusted operator's own view, as `graph query`
            result = _timed(store, query)
        else:  # anyone else, and FalkorDB graphs (one dialect for the model): the projection
            result = _on_projection(store, edges, query)
    except UsageError as exc:  # the model's Cypher, not the user's input: say so and answer nothing
        answer = GraphAnswer(f"I don't know: the model's query did not run ({exc}) (Cypher: {query})", False,
                             "unknown")
        answer.cypher = query
        return answer
    rows = [[_plain(v) for v in r] for r in result.rows[:MAX_ROWS]]
    values = list(dict.fromkeys(str(r[0]) for r in rows if r and r[0] is not None))
    text = "; ".join(", ".join(str(v) for v in r) for r in rows) if rows else "no rows"
    answer = GraphAnswer(f"{text} (Cypher: {query})" if rows else f"I don't know: the query found no rows "
                         f"(Cypher: {query})", bool(rows), "cypher" if rows else "unknown", answers=values)
    answer.cypher, answer.columns, answer.rows = query, list(result.columns), rows
    return answer


def _on_projection(store: GraphStore, edges: list[Edge], query: str) -> Any:
    """Run ``query`` on a throwaway embedded graph of ``edges`` only (with their nodes' aliases)."""
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    aliases = {n.key: n.aliases for n in store.nodes()}
    triples = [Triple(e.head, e.head_type, e.relation, e.tail, e.tail_type, source=e.source, groups=e.groups,
                      head_aliases=aliases.get(e.head_key, ()), tail_aliases=aliases.get(e.tail_key, ()))
               for e in edges]
    with tempfile.TemporaryDirectory(prefix="lingxi-projection-") as tmp:
        writer = KuzuGraphStore(Path(tmp) / "g")
        try:
            writer.write(triples)
        finally:
            writer.close()
        reader = KuzuGraphStore(Path(tmp) / "g", read_only=True)
        try:
            return _timed(reader, query)
        finally:
            reader.close()


def _timed(store: Any, query: str) -> Any:
    """``store.run_read(query)`` stopped after :data:`TIMEOUT_S` (a Kùzu store)."""
    store.set_timeout(TIMEOUT_S)
    try:
        return store.run_read(query)
    finally:
        store.set_timeout(0)


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: a node or relationship object becomes its properties."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    properties = getattr(value, "properties", None)
    return _plain(properties) if isinstance(properties, dict) else str(value)


__all__ = ["ask_cypher", "query_from_reply", "schema_text", "visible_edges"]
