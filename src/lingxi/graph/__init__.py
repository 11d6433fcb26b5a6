"""Knowledge graphs: import curated facts, query them with read-only Cypher, and answer
questions along 1-3 hop paths with every fact cited.

    lingxi graph import NAME facts.jsonl      # {"head","head_type","relation","tail","tail_type"}
    lingxi graph query NAME "MATCH (d:Drug)-[:TREATS]->(s:Symptom) RETURN d.name" --json
    lingxi graph ask NAME "Which enzyme metabolizes the drug that treats migraine?" --json
    lingxi graph extract NAME --kb KB --model strong   # facts read out of a knowledge base's chunks
    lingxi graph ask NAME "List the drugs CYP2C9 metabolizes" --cypher --model strong

Graphs live in the stores layer (:mod:`lingxi.stores.graph`): Kùzu embedded by default,
FalkorDB as a server. Importing this package is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.graph.triples import ReadReport, Triple, read_triples


def import_files(name: str, paths: list[str | Path], settings: Any, *, store: str | None = None) -> dict[str, Any]:
    """Check every row of ``paths``, then write them to graph ``name`` in one go.

    Returns:
        the write report (nodes and edges added, updated, unchanged; aliases merged) and counts.

    Raises:
        UsageError: any row is malformed (every problem listed, ``file:line: reason``); nothing
            is written then.
    """
    from lingxi.errors import UsageError
    from lingxi.stores.graph import LABEL_TYPE, Node, open_store

    report = read_triples(paths)
    if report.problems:
        shown = report.problems[:20]
        more = f" (and {len(report.problems) - 20} more)" if len(report.problems) > 20 else ""
        raise UsageError(f"nothing imported: {len(report.problems)} bad row(s){more}: " + "; ".join(shown))
    if not report.triples and not report.labels:
        raise UsageError("nothing to import: the files hold no facts")
    graph = open_store(name, settings, store)
    try:
        labels = [Node(LABEL_TYPE, label, words) for label, words in report.labels.items()]
        written = graph.write(report.triples, labels).to_dict()
        written.update(graph.counts())
    finally:
        graph.close()
    return written


def open_graph(name: str, settings: Any, *, store: str | None = None) -> Any:
    """The graph ``name`` opened for reading (queries and questions)."""
    from lingxi.stores.graph import open_store

    return open_store(name, settings, store, read_only=True)


def query(name: str, cypher: str, settings: Any, *, store: str | None = None) -> dict[str, Any]:
    """``{"columns", "rows"}`` of a read-only Cypher query (writes are refused)."""
    graph = open_graph(name, settings, store=store)
    try:
        return graph.query(cypher).to_dict()
    finally:
        graph.close()


def ask(name: str, question: str, settings: Any, *, groups: list[str] | None = None,
        store: str | None = None, cypher: bool = False, model: str | None = None) -> Any:
    """A :class:`~lingxi.graph.answer.GraphAnswer` from the facts ``groups`` may read (None: all):
    along paths (no model), or with ``cypher`` from a query ``model`` writes
    (:mod:`lingxi.graph.text2cypher`; a model trusted to write)."""
    from lingxi.graph.answer import ask as ask_store

    engine = None
    if cypher:
        from lingxi.engines import load_engine
        from lingxi.graph.extract import require_trusted

        model = model or settings.default_model
        engine = load_engine(model, settings)
        require_trusted(engine, model, "write Cypher")
    graph = open_graph(name, settings, store=store)
    try:
        if cypher:
            from lingxi.graph.text2cypher import ask_cypher

            return ask_cypher(graph, question, engine, model_name=model, groups=groups)
        cfg = settings.graph
        return ask_store(graph, question, groups=groups, max_hops=cfg.max_hops, max_paths=cfg.max_paths)
    finally:
        graph.close()


def extract_from_kb(name: str, kb_name: str, settings: Any, *, model: str | None = None,
                    relations: list[str] | tuple[str, ...] = (), types: list[str] | tuple[str, ...] = (),
                    store: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Extract facts from knowledge base ``kb_name``'s chunks into graph ``name`` with ``model``
    (see :mod:`lingxi.graph.extract`); the report as a dict, with the graph's counts.

    Raises:
        UsageError: no such knowledge base, no documents, a model too small to be trusted.
    """
    from lingxi.engines import load_engine
    from lingxi.graph.extract import extract, preflight
    from lingxi.knowledge import open_kb
    from lingxi.stores.graph import open_store

    model_name = model or settings.default_model
    with open_kb(kb_name, settings) as kb:
        engine = load_engine(model_name, settings)
        preflight(kb, engine, model_name, relations, types)  # before the graph is opened (and created)
        graph = open_store(name, settings, store)
        try:
            report = extract(kb, graph, engine, graph_name=name, model_name=model_name, relations=relations,
                             types=types, progress=progress).to_dict()
            report.update(graph.counts())
            return report
        finally:
            graph.close()


def list_graphs(settings: Any, *, store: str | None = None) -> list[dict[str, Any]]:
    """Every graph in the store: ``{"name", "store", "nodes", "edges"}``, by name."""
    from lingxi.graph.reader import graph_names

    settings = _with_store(settings, store)
    out = []
    for name in graph_names(settings):
        graph = open_graph(name, settings)
        try:
            out.append({"name": name, "store": settings.graph.store, **graph.counts()})
        finally:
            graph.close()
    return out


def delete_graph(name: str, settings: Any, *, store: str | None = None) -> None:
    """Remove graph ``name`` and all its facts.

    Raises:
        UsageError: no such graph, or it is in use by a writer (an import) now.
    """
    import shutil

    from lingxi.errors import UsageError
    from lingxi.graph.reader import graph_names
    from lingxi.stores.graph import open_store

    settings = _with_store(settings, store)
    known = graph_names(settings)
    if name not in known:
        raise UsageError(f"no graph '{name}'; existing: {', '.join(known) or '(none)'}")
    graph = open_store(name, settings)  # the writer's lock: an import in progress is not cut off
    if settings.graph.store == "kuzu":
        graph.close()
        shutil.rmtree(graph.directory)
        return
    try:
        graph.delete_graph()
    finally:
        graph.close()


def _with_store(settings: Any, store: str | None) -> Any:
    if store is None or store == settings.graph.store:
        return settings
    return settings.model_copy(update={"graph": settings.graph.model_copy(update={"store": store})})


__all__ = ["ReadReport", "Triple", "ask", "delete_graph", "extract_from_kb", "import_files", "list_graphs", "open_graph",
           "query", "read_triples"]
