"""``lingxi embed TEXT...``: embedding vectors from an embedder."""

from __future__ import annotations

import sys

import click

from lingxi.cli import emit_json, settings


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", default=None, help="Embedder name (default: default_embedder in config).")
@click.option("--query", "as_query", is_flag=True, help="Embed as search queries (matters for e5).")
@click.option("--json", "as_json", is_flag=True, help='Print {"model", "dim", "embeddings"}.')
def embed(texts: tuple[str, ...], model: str | None, as_query: bool, as_json: bool) -> None:
    """Embed TEXTS (none: one text per line of stdin)."""
    from lingxi.engines import load_embedder
    from lingxi.errors import UsageError

    items = list(texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not items:
        raise UsageError("nothing to embed: give TEXT arguments or lines on stdin")
    embedder = load_embedder(model, settings())
    vectors = embedder.embed(items, kind="query" if as_query else "passage")
    if as_json:
        emit_json({"model": embedder.name, "dim": int(vectors.shape[1]),
                   "embeddings": [[round(float(x), 6) for x in row] for row in vectors]})
        return
    for text, row in zip(items, vectors):
        head = " ".join(f"{x:+.4f}" for x in row[:6])
        click.echo(f"[{head} … dim {len(row)}]  {text[:60]}")
