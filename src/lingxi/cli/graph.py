"""``lingxi graph …``: import curated facts, query with read-only Cypher, ask along paths."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings

STORE = click.option("--store", type=click.Choice(["kuzu", "falkordb"]), default=None,
                     help="Where the graph lives (default: graph.store, i.e. embedded Kùzu).")


@click.group()
def graph() -> None:
    """Knowledge graphs: import facts, query them with Cypher, ask multi-hop questions."""


@graph.command("import")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@STORE
@click.option("--json", "as_json", is_flag=True, help="Print the import report as JSON.")
def import_(name: str, files: tuple[str, ...], store: str | None, as_json: bool) -> None:
    """Import FILES (JSONL lines or CSV rows {"head","head_type","relation","tail","tail_type"},
    optional "source", "groups", "head_aliases", "tail_aliases") into graph NAME.

    Every row is checked first; one bad row imports nothing. Node identity is (type, name);
    re-importing a file changes nothing.
    """
    from lingxi.graph import import_files

    report = import_files(name, list(files), settings(), store=store)
    if as_json:
        emit_json(report)
    else:
        words = f", words for {report['labels_added']} labels" if report["labels_added"] else ""
        click.echo(f"graph '{name}': {report['nodes_added']} nodes and {report['edges_added']} edges added, "
                   f"{report['edges_updated']} edges updated, {report['edges_unchanged']} unchanged{words}; "
                   f"now {report['nodes']} nodes, {report['edges']} edges")
        for written, name_ in report["merged"].items():  # an alias that names a node already there
            click.echo(f"  '{written}' is an alias of '{name_}': its facts went to that node")


@graph.command("query")
@click.argument("name")
@click.argument("cypher")
@STORE
@click.option("--json", "as_json", is_flag=True, help='Print {"columns": [...], "rows": [[...]]}.')
def query(name: str, cypher: str, store: str | None, as_json: bool) -> None:
    """Run a read-only Cypher query on graph NAME (CREATE, MERGE, SET, DELETE … are refused)."""
    from lingxi.graph import query as run

    result = run(name, cypher, settings(), store=store)
    if as_json:
        emit_json(result)
        return
    click.echo("\t".join(result["columns"]))
    for row in result["rows"]:
        click.echo("\t".join(str(v) for v in row))


@graph.command("ask")
@click.argument("name")
@click.argument("question")
@STORE
@click.option("--groups", default=None, help="Comma-separated groups to read as (default: every fact).")
@click.option("--cypher", is_flag=True,
              help="Have --model write a read-only Cypher query instead (a model trusted to write).")
@click.option("--model", default=None, help="The model that writes the query (--cypher; default: default_model).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"answer", "supported", "mode", "paths", "citations", ...} (with --cypher: '
                   '"cypher", "columns", "rows" too).')
def ask(name: str, question: str, store: str | None, groups: str | None, cypher: bool, model: str | None,
        as_json: bool) -> None:
    """Answer QUESTION from graph NAME: the entities it names, 1-3 hop paths, cited facts; or,
    with --cypher, the rows of a read-only query a trusted model writes (run on the facts the
    groups may read only)."""
    from lingxi.graph import ask as run

    groups_list = None if groups is None else [g.strip() for g in groups.split(",") if g.strip()]
    answer = run(name, question, settings(), groups=groups_list, store=store, cypher=cypher, model=model)
    if as_json:
        emit_json(answer.to_dict())
        return
    click.echo(answer.answer)
    for c in answer.citations:
        click.echo(f"  [{c['source']}] {c['text']}")
    if answer.supported and answer.suggestions:  # an "I don't know" says them itself
        click.echo(f"Did you mean: {', '.join(answer.suggestions)}? (not linked: ask again with the name)")


@graph.command("extract")
@click.argument("name")
@click.option("--kb", "kb_name", required=True, help="The knowledge base whose chunks are read.")
@click.option("--model", default=None,
              help="A chat model trusted to write (1B parameters or more; default: default_model).")
@click.option("--relations", default="", help="Comma-separated relations the model may use (default: any).")
@click.option("--types", default="", help="Comma-separated entity types the model may use (default: any).")
@STORE
@click.option("--json", "as_json", is_flag=True, help="Print the extraction report as JSON.")
def extract(name: str, kb_name: str, model: str | None, relations: str, types: str, store: str | None,
            as_json: bool) -> None:
    """Read facts out of knowledge base KB's chunks into graph NAME with a model trusted to write.

    Each fact's head and tail must be written in its chunk; the chunk id becomes its source and
    the document's groups its groups. Chunks already read (unchanged) are skipped.
    """
    from lingxi.graph import extract_from_kb

    def names(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    report = extract_from_kb(name, kb_name, settings(), model=model, relations=names(relations), types=names(types),
                             store=store, progress=not as_json)
    if as_json:
        emit_json(report)
        return
    click.echo(f"graph '{name}' from kb '{kb_name}': {report['read']} chunks read, {report['skipped']} unchanged, "
               f"{report['unreadable']} replies unreadable (asked again next run); {report['kept']} facts kept, "
               f"{report['rejected']} rejected, {report['removed']} removed with their changed text; "
               f"now {report.get('nodes', 0)} nodes, {report.get('edges', 0)} edges")
    for reason in report["reasons"][:5]:
        click.echo(f"  {reason}")


@graph.command("list")
@STORE
@click.option("--json", "as_json", is_flag=True, help='Print [{"name", "store", "nodes", "edges"}].')
def list_(store: str | None, as_json: bool) -> None:
    """Graphs on this machine (or the FalkorDB server), with their sizes."""
    from lingxi.graph import list_graphs

    rows = list_graphs(settings(), store=store)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no graphs; import facts into one with: lingxi graph import NAME FILE…")
    for r in rows:
        click.echo(f"{r['name']}  store={r['store']}  nodes={r['nodes']}  edges={r['edges']}")


@graph.command("delete")
@click.argument("name")
@STORE
@click.confirmation_option(prompt="Delete this graph and all its facts?")
def delete(name: str, store: str | None) -> None:
    """Delete graph NAME and all its facts (--yes to skip the question)."""
    from lingxi.graph import delete_graph

    delete_graph(name, settings(), store=store)
    click.echo(f"graph '{name}' deleted")
