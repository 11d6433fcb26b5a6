"""Hybrid retrieval that adapts to the collection: weighted z-score fusion whose weights come
from how often each retriever's top result is corroborated by the other one.

Why not reciprocal-rank fusion: RRF gives both lists equal say. When one retriever is much
weaker on a collection (an English-only embedder on Chinese text, or BM25 on entity queries
whose words do not match the answer's), its noise is mixed into every ranking and the hybrid
ends up below the better retriever alone.

The signal (label-free): for each query, a retriever is *corroborated* when its top-1 chunk
appears in the other retriever's top-10. Over the queries a knowledge base has answered, the
retriever that is corroborated more often is the more reliable one on this collection (a
random ranker's top-1 is almost never in a good ranker's top-10, while a good ranker's top-1
often is in a noisy one's). Each retriever's reliability is the smoothed rate; the fusion
weight of BM25 is::

    w = sigmoid(sharpness * (r_bm25 - r_dense) / se)

where ``se`` is the standard error of the difference, so a clear difference selects one
retriever almost exclusively and an unclear one mixes both. The scores of the union of both
candidate lists are z-normalised per retriever (against that retriever's own candidate list)
and combined with weights (w, 1 - w). Before enough queries are seen the prior is equal weight.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

#: Top-k of the other retriever in which a retriever's top-1 counts as corroborated.
AGREE_AT = 10


@dataclass
class FusionStats:
    """Running corroboration counts of one knowledge base (kept across queries)."""

    queries: int = 0
    bm25_confirmed: int = 0
    dense_confirmed: int = 0
    sharpness: float = 2.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def observe(self, bm25_ids: list[str], dense_ids: list[str]) -> None:
        if not bm25_ids or not dense_ids:
            return
        with self._lock:
            self.queries += 1
            self.bm25_confirmed += bm25_ids[0] in dense_ids[:AGREE_AT]
            self.dense_confirmed += dense_ids[0] in bm25_ids[:AGREE_AT]

    def bm25_weight(self) -> float:
        with self._lock:
            n = self.queries
            rb = (self.bm25_confirmed + 1) / (n + 2)
            rd = (self.dense_confirmed + 1) / (n + 2)
        se = math.sqrt((rb * (1 - rb) + rd * (1 - rd)) / (n + 2))
        z = (rb - rd) / max(se, 1e-9)
        return 1.0 / (1.0 + math.exp(-self.sharpness * z))

    def to_dict(self) -> dict:
        return {"queries": self.queries, "bm25_confirmed": self.bm25_confirmed,
                "dense_confirmed": self.dense_confirmed, "bm25_weight": round(self.bm25_weight(), 4)}


def zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    std = float(reference.std()) if len(reference) > 1 else 0.0
    return (values - float(reference.mean())) / (std if std > 1e-9 else 1.0)


def fuse(ids: list[str], bm25: np.ndarray, dense: np.ndarray, bm25_ref: np.ndarray, dense_ref: np.ndarray,
         w_bm25: float) -> list[tuple[str, float]]:
    """Combine both scores of the candidate ``ids``; best first."""
    score = w_bm25 * zscore(bm25, bm25_ref) + (1.0 - w_bm25) * zscore(dense, dense_ref)
    order = np.argsort(-score, kind="stable")
    return [(ids[i], float(score[i])) for i in order]
