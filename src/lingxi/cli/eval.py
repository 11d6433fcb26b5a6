"""``lingxi eval …``: measure retrieval quality on BEIR-layout data."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings


@click.group("eval")
def eval_group() -> None:
    """Evaluate retrieval (and, as other layers land, generation) with numbers."""


@eval_group.command("retrieval")
@click.option("--corpus", required=True, type=click.Path(dir_okay=False), help='corpus.jsonl: {"_id","title","text"}')
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help='queries.jsonl: {"_id","text"}')
@click.option("--qrels", required=True, type=click.Path(dir_okay=False), help="qrels TSV: query-id corpus-id score")
@click.option("--mode", type=click.Choice(["bm25", "dense", "hybrid"]), default="hybrid", show_default=True)
@click.option("--embedder", default=None, help="Embedder (default: as a new knowledge base would choose).")
@click.option("--save-run", type=click.Path(dir_okay=False), default=None, help="Write a TREC run file (top 100).")
@click.option("--json", "as_json", is_flag=True, help='Print {"ndcg@10","recall@10","mrr@10","queries","mode"}.')
@click.option("--quiet", is_flag=True, help="No progress bars.")
def retrieval(corpus: str, queries: str, qrels: str, mode: str, embedder: str | None, save_run: str | None,
              as_json: bool, quiet: bool) -> None:
    """nDCG@10, recall@10 and MRR@10 of a search mode; each corpus document is indexed whole."""
    from lingxi.knowledge.evaluation import evaluate_retrieval

    result = evaluate_retrieval(settings(), corpus, queries, qrels, mode=mode, embedder=embedder,
                                save_run=save_run, progress=not quiet)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"mode={result['mode']} embedder={result['embedder']} queries={result['queries']}  "
                   f"nDCG@10={result['ndcg@10']:.4f}  recall@10={result['recall@10']:.4f}  "
                   f"MRR@10={result['mrr@10']:.4f}")
