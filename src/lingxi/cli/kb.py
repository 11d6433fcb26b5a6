"""``lingxi kb …``: create knowledge bases, ingest documents, search and ask with citations."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lingxi.cli import emit_json, settings
from lingxi.errors import UsageError


@click.group()
def kb() -> None:
    """Knowledge bases: ingest documents, search them, ask questions with cited answers."""


@kb.command("create")
@click.argument("name")
@click.option("--store", type=click.Choice(["sqlite", "postgres"]), default=None,
              help="Where it lives (default: knowledge.store, i.e. embedded SQLite).")
@click.option("--embedder", default=None,
              help="Embedder name (default: chosen at first ingest, e5-small for Chinese text).")
@click.option("--retrieval", default=None,
              help="Its retriever for answers (kb ask, kb: models): hybrid, bm25, dense, graph, navigate, fuse:A+B…, "
                   "auto (default: knowledge.retrieval).")
def create(name: str, store: str | None, embedder: str | None, retrieval: str | None) -> None:
    """Create an empty knowledge base NAME."""
    from lingxi.knowledge import create_kb
    from lingxi.knowledge.retrievers import get_retriever

    if retrieval not in (None, "auto"):
        get_retriever(retrieval)  # a bad name fails before anything is created
    base = create_kb(name, settings(), store=store, embedder=embedder)
    if retrieval is not None:
        base.set_retrieval(retrieval)
    click.echo(f"created knowledge base '{name}' ({base.store.backend})")
    base.close()


@kb.command("ingest")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--groups", default="", help="Comma-separated groups allowed to see these documents "
                                           "(default: everyone).")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest(name: str, paths: tuple[str, ...], groups: str, as_json: bool, quiet: bool) -> None:
    """Add or update the files and folders PATHS in knowledge base NAME.

    Unchanged files are skipped; changed ones re-embed only changed chunks. A file that cannot
    be read is reported and the rest is ingested. Exits 1 if any file failed.
    """
    from lingxi.knowledge import open_kb

    with open_kb(name, settings()) as base:
        report = base.ingest(list(paths), groups=[g for g in groups.split(",") if g.strip()], progress=not quiet)
        sources = {str(d.doc_no): Path(d.source).name for d in base.store.documents()} if report.flagged else {}
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
                   f"{len(report.errors)} failed; chunks +{report.chunks_added} -{report.chunks_removed} "
                   f"({report.chunks_embedded} embedded, {report.chunks_reused} reused of "
                   f"{report.chunks_embedded + report.chunks_reused}); {report.summaries_made} tree summaries made "
                   f"in {report.seconds:.1f}s")
    if report.flagged:
        files = sorted({sources.get(cid.split(".")[0], "?") for cid in report.flagged})
        click.echo(f"warning: {len(report.flagged)} chunk(s) of {', '.join(files[:5])} read as prompt injection (ids "
                   f"{', '.join(sorted(report.flagged)[:10])}); the gateway's injection stage will not "
                   "answer from them", err=True)
    for path, reason in report.errors.items():
        click.echo(f"error: {path}: {reason}", err=True)
    if report.errors:
        raise SystemExit(1)


def _filters(raw: tuple[str, ...]) -> dict | None:
    out = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter expects KEY=VALUE, got '{item}'")
        out[key] = value
    return out or None


def _groups(raw: str | None) -> list[str] | None:
    return None if raw is None else [g.strip() for g in raw.split(",") if g.strip()]


@kb.command("search")
@click.argument("name")
@click.argument("query")
@click.option("--mode", default="hybrid", show_default=True,
              help="Retriever: bm25, dense, hybrid, graph (the graph named like the knowledge base), navigate "
                   "(tree navigation), another registered one, fuse:A+B… (fused), or auto (chosen per query, and said).")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Results to return.")
@click.option("--groups", default=None, help="Search as a caller in these comma-separated groups.")
@click.option("--filter", "filters", multiple=True, help="Document metadata KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
def search(name: str, query: str, mode: str, k: int, groups: str | None, filters: tuple[str, ...],
           as_json: bool) -> None:
    """Search knowledge base NAME for QUERY.

    With --mode auto the JSON output is {"retrieval_mode", "reason", "hits"}, with --mode navigate
    {"hits", "scratchpad"} (hits are document-tree leaves, ids are node ids); a list of hits otherwise.
    """
    from lingxi.knowledge import open_kb

    with open_kb(name, settings()) as base:
        _has_documents(base)
        chosen = base.retrieval_mode(query, mode, groups=_groups(groups))
        nav = None
        if chosen.mode == "navigate":
            if filters:
                raise UsageError("search mode 'navigate' takes no --filter")
            nav = base.navigate(query, _groups(groups), k=k)
            hits = base.navigation_hits(nav)
        else:
            hits = base.search(query, mode=chosen.mode, k=k, groups=_groups(groups), filters=_filters(filters))
    if as_json:
        shown = [h.to_dict() for h in hits]
        out: object = shown
        if mode == "auto" or nav is not None:
            out = ({"retrieval_mode": chosen.mode, "reason": chosen.reason} if mode == "auto" else {}) | {"hits": shown}
            if nav is not None:
                out["scratchpad"] = nav.scratchpad
        emit_json(out)
        return
    if mode == "auto":
        click.echo(f"retrieval: {chosen.mode} ({chosen.reason})")
    if not hits:
        click.echo("no results")
    for h in hits:
        where = f"{h.source}" + (f" p.{h.page}" if h.page else "")
        click.echo(f"[{h.id}] {h.score:.3f}  {_place(h.title, h.headings)}  ({where})")
        click.echo("    " + h.text[:300].replace("\n", " ") + ("…" if len(h.text) > 300 else ""))


@kb.command("ask")
@click.argument("name")
@click.argument("question")
@click.option("--model", default=None, help="Chat model (default: default_model, the bundled SmolLM2).")
@click.option("--answer-mode", "mode", type=click.Choice(["auto", "generate", "extract"]), default=None,
              help="generate: the model writes, each sentence checked against its citation; extract: quote the "
                   "best-supported source sentences; auto (default, knowledge.answer_mode): extract with models "
                   "under 1B parameters, else generate and quote when the check fails.")
@click.option("--mode", "retrieval", default=None,
              help="Retriever: hybrid (default, knowledge.retrieval), bm25, dense, graph, navigate (tree navigation: "
                   "cites document-tree node ids), another registered one, fuse:A+B…, or auto (chosen per question, "
                   "and said).")
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True, help="Chunks to retrieve.")
@click.option("--groups", default=None, help="Ask as a caller in these comma-separated groups.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"answer", "supported", "mode", "retrieval_mode", "citations": [{"id", "source", "text", '
                   '"score"}]}, and "scratchpad" (the decisions) when navigate retrieved.')
def ask(name: str, question: str, model: str | None, mode: str | None, retrieval: str | None, k: int,
        groups: str | None, as_json: bool) -> None:
    """Answer QUESTION from knowledge base NAME, with verified citations, or say the documents do not.

    Answers are deterministic (greedy generation). mode in the JSON output is "generated",
    "extracted" (quoted from the documents), "graph" (the knowledge graph's facts, with "paths")
    or "unknown" (supported is then false); retrieval_mode is the retriever that found the sources
    (with --mode auto, the one chosen for this question).
    """
    from lingxi.knowledge import open_kb

    s = settings()
    with open_kb(name, s) as base:
        _has_documents(base)
        result = base.answer(question, _engine(model, mode or s.knowledge.answer_mode, s), groups=_groups(groups),
                             k=k, mode=mode, retrieval=retrieval)
    if as_json:
        emit_json(result.to_dict())
        return
    if retrieval == "auto":
        click.echo(f"retrieval: {result.retrieval_mode} ({result.retrieval_reason})", err=True)
    click.echo(result.answer)
    headings = {h.id: h.headings for h in result.hits}
    for c in result.citations:
        click.echo(f"  [{c.id}] {_place(c.source, headings.get(c.id, []))}: {c.text[:160].replace(chr(10), ' ')}")
    if not result.supported:
        click.echo("(not supported by the documents)", err=True)


def _place(name: str, headings: list[str]) -> str:
    """Where a passage is: its document and its last two headings (a long document's section)."""
    inner = [h for h in headings if h and h != name][-2:]
    return " › ".join([name, *inner])


def _has_documents(base: object) -> None:
    """An empty knowledge base is a step missed, not a question the documents cannot answer."""
    if not base.store.stats()["chunks"]:
        raise UsageError(f"knowledge base '{base.name}' has no documents yet: add some with "
                         f"`lingxi kb ingest {base.name} PATH…`")


def _engine(model: str | None, mode: str, s: object) -> object | None:
    """The chat engine, unless extracting (no model is loaded just to quote)."""
    if mode == "extract":
        return None
    from lingxi.engines import load_engine

    return load_engine(model, s)


@kb.command("delete")
@click.argument("name")
@click.argument("doc")
def delete(name: str, doc: str) -> None:
    """Remove document DOC (its number or source path) from NAME."""
    from lingxi.knowledge import open_kb

    with open_kb(name, settings()) as base:
        removed = base.delete(doc)
    click.echo(f"deleted '{doc}' ({removed} chunks)")


@kb.command("stats")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def stats(name: str, as_json: bool) -> None:
    """Documents, chunks, embedder, store and version of NAME."""
    from lingxi.knowledge import open_kb

    with open_kb(name, settings()) as base:
        data = base.stats()
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            click.echo(f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value}")


@kb.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Knowledge bases on this machine."""
    from lingxi.knowledge import list_kbs

    rows = list_kbs(settings())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no knowledge bases; create one with: lingxi kb create NAME")
    for r in rows:
        click.echo(f"{r['name']}  store={r['store']}  embedder={r.get('embedder') or '(auto)'}")
