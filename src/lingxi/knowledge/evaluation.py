"""Retrieval metrics on BEIR-layout data: nDCG@k, recall@k and MRR@k, and TREC run files.

The definitions follow ``trec_eval`` as BEIR uses it (through pytrec_eval): graded gains with
a log2 discount, ideal ranking from the qrels, judgements with score 0 count as non-relevant,
queries without any relevant document are skipped.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lingxi.errors import UsageError

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
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise UsageError(f"{what} {path}: line {n} is not JSON ({exc.msg})") from None
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    return rows


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


def evaluate_run(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, recall@k and MRR@k over the queries of ``qrels`` that have a relevant doc."""
    ndcg = recall = mrr = 0.0
    n = 0
    for qid, judged in qrels.items():
        relevant = {d: r for d, r in judged.items() if r > 0}
        if not relevant:
            continue
        n += 1
        ranked = [d for d, _ in run.get(qid, [])[:k]]
        dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        ndcg += dcg / idcg
        recall += sum(1 for d in ranked if d in relevant) / len(relevant)
        mrr += next((1.0 / (i + 1) for i, d in enumerate(ranked) if d in relevant), 0.0)
    if n == 0:
        raise UsageError("no query in the qrels has a relevant document")
    return {f"ndcg@{k}": ndcg / n, f"recall@{k}": recall / n, f"mrr@{k}": mrr / n, "queries": n}


def write_trec_run(run: Mapping[str, Iterable[tuple[str, float]]], path: str | Path, tag: str, depth: int = 100) -> None:
    """``qid Q0 docid rank score tag`` lines, ranks from 1, at most ``depth`` per query."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(list(hits)[:depth], 1):
                fh.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")
    tmp.replace(path)
