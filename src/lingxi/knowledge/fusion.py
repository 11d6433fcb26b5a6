"""Hybrid retrieval that adapts to the collection: z-score fusion whose weights come from how
often each retriever's top results are corroborated by the other one.

Why not reciprocal-rank fusion: RRF gives both lists equal say. When one retriever is much
weaker on a collection (an English-only embedder on Chinese text, or BM25 on entity queries
whose words are not the answer's words), its noise enters every ranking and the hybrid ends up
below the better retriever alone (measured: see docs/knowledge.md).

The signal needs no relevance labels. For a query, retriever A's *corroboration* is the share
of its top-5 chunks that appear in retriever B's top-50. A good ranker's top results are
usually found somewhere near the top of a noisy one, while a noisy ranker's top results are
rarely near the top of a good one, so over the queries a knowledge base has answered, the
retriever with the higher corroboration is the more reliable one on this collection. The
per-query differences (BM25 minus dense) give a paired t statistic:

* |t| >= 2 (a clear difference): the weaker retriever gets weight 0: hybrid ranks like the
  better one, which is never worse than the better one;
* otherwise both are mixed with ``w_bm25 = sigmoid(t)`` (0.5 before any evidence, and until
  ``MIN_QUERIES`` queries are seen).

Scores of the union of both candidate lists are z-normalised per retriever (against that
retriever's own candidate list) and combined with weights (w, 1 - w).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

#: A retriever's top-``TOP`` results are checked against the other's top-``AGAINST``.
TOP, AGAINST = 5, 50
#: Queries needed before the statistics may switch a retriever off.
MIN_QUERIES = 10
#: |t| from which one retriever is taken as clearly better (about 95% confidence).
CLEAR = 2.0


@dataclass
class FusionStats:
    """Running corroboration statistics of one knowledge base (kept across queries)."""

    queries: int = 0
    diff_sum: float = 0.0
    diff_sq_sum: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def observe(self, bm25_ids: list[str], dense_ids: list[str]) -> None:
        if len(bm25_ids) < TOP or len(dense_ids) < TOP:
            return  # too few candidates (a tiny collection or no word in common) to tell anything
        b_top, d_top = set(bm25_ids[:AGAINST]), set(dense_ids[:AGAINST])
        b = sum(1 for i in bm25_ids[:TOP] if i in d_top) / min(TOP, len(bm25_ids))
        d = sum(1 for i in dense_ids[:TOP] if i in b_top) / min(TOP, len(dense_ids))
        with self._lock:
            self.queries += 1
            self.diff_sum += b - d
            self.diff_sq_sum += (b - d) ** 2

    def t(self) -> float:
        """Paired t statistic of (BM25 corroboration - dense corroboration)."""
        with self._lock:
            n, s, s2 = self.queries, self.diff_sum, self.diff_sq_sum
        if n < 2:
            return 0.0
        mean = s / n
        var = max(s2 / n - mean * mean, 0.0) * n / (n - 1)
        if var <= 1e-12:
            return 0.0 if abs(mean) < 1e-12 else math.copysign(1e6, mean)
        return mean / math.sqrt(var / n)

    def bm25_weight(self) -> float:
        if self.queries < MIN_QUERIES:
            return 0.5
        t = self.t()
        if t >= CLEAR:
            return 1.0
        if t <= -CLEAR:
            return 0.0
        return 1.0 / (1.0 + math.exp(-t))

    def to_dict(self) -> dict:
        return {"queries": self.queries, "diff_sum": self.diff_sum, "diff_sq_sum": self.diff_sq_sum,
                "t": round(self.t(), 3), "bm25_weight": round(self.bm25_weight(), 4)}


def zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    std = float(reference.std()) if len(reference) > 1 else 0.0
    return (values - float(reference.mean())) / (std if std > 1e-9 else 1.0)


def fuse(ids: list[str], bm25: np.ndarray, dense: np.ndarray, bm25_ref: np.ndarray, dense_ref: np.ndarray,
         w_bm25: float) -> list[tuple[str, float]]:
    """Combine both scores of the candidate ``ids``; best first.

    A retriever switched off (weight 0) still breaks exact ties of the other one.
    """
    zb, zd = zscore(bm25, bm25_ref), zscore(dense, dense_ref)
    score = w_bm25 * zb + (1.0 - w_bm25) * zd + 1e-6 * (zb + zd)
    order = np.argsort(-score, kind="stable")
    return [(ids[i], float(score[i])) for i in order]
