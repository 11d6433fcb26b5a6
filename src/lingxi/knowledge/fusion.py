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
per-query differences (BM25 minus dense) give a paired t statistic and an effect size d (the mean
difference over its standard deviation; 0.2 is Cohen's "small" effect, ``EFFECT``).

Both retrievers are mixed, ``w_bm25 = 0.5 + 0.25 * clip(d / EFFECT, -1, 1)`` (0.5 before any
evidence, and until ``MIN_QUERIES`` queries are seen). The less corroborated one is switched off
(weight 0; hybrid ranks like the other) only when the difference is sure (|t| >= 2) and not
negligible (|d| >= ``EFFECT``), *and* mixing cannot help:

* the two find mostly the same chunks (their top-50 lists share ``AGREE`` or more on average):
  mixing can only reorder them, and the better one orders them better (BM25 on DBpedia's entity
  queries, sharing 0.62 of MiniLM's top 50: nDCG@10 falls with every step of BM25 weight); or
* the weaker one is noise: on average under ``NOISE`` of its top 5 are in the other's top 50
  (MiniLM on Chinese, 0.31).

Where each finds chunks the other misses, the mix beats either alone even when one is clearly
better: CMRC with e5-small (d 0.38, lists sharing 0.26) is at 0.9841 nDCG@10 with BM25 alone
(0.9854 with dense breaking its ties) and 0.987-0.990 mixed at w_bm25 0.5-0.75; on the long
documents the navigation benchmark reads (lists sharing 0.29-0.39) the mix finds the right
section first for 1 to 4 more of 20 to 45 questions than either alone, also where d reaches
-0.52. A rule on t alone switched a retriever off for good wherever the two differed a little (t
grows with the square root of the queries seen), and a rule on t and d switched BM25 off on a
development set of The Rust Reference (d -0.52: 12 first results right against 14 mixed).

Scores of the union of both candidate lists are z-normalised per retriever (against that
retriever's own candidate list) and combined with weights (w, 1 - w).
"""

from __future__ import annotations

import math
import threading
import numpy as np

#: A retriever's top-``TOP`` results are checked against the other's top-``AGAINST``.
TOP, AGAINST = 5, 50
#: Queries needed before the statistics may switch a retriever off.
MIN_QUERIES = 10
#: |t| from which one retriever is taken as clearly better (about 95% confidence).
CLEAR = 2.0
#: |d| (mean difference over its standard deviation) from which a difference is not negligible.
EFFECT = 0.2
#: Mean share of two top-``AGAINST`` lists in common from which the retrievers find the same chunks.
AGREE = 0.5
#: Mean corroboration under which a retriever's top results are noise.
NOISE = 0.45


class FusionStats:
    """Running corroboration statistics of one fused list of retrievers (kept across queries).

    With two retrievers (``bm25``, ``dense``: the hybrid) the state is the sum and the sum of
    squares of the per-query difference of their corroborations, as it always was. With more,
    each retriever ``i`` keeps the sums of ``c_i - mean(c_j, j != i)``; for two this is the same
    difference, seen from each side.
    """

    def __init__(self, queries: int = 0, diff_sum: float = 0.0, diff_sq_sum: float = 0.0,
                 names: tuple[str, ...] = ("bm25", "dense"), sums: list[float] | None = None,
                 sq_sums: list[float] | None = None, observed: int = 0,
                 corroboration_sums: list[float] | None = None, overlap_sums: list[float] | None = None):
        if len(names) < 2:
            raise ValueError("fusion needs at least two retrievers")
        self.names = tuple(names)
        self.queries = queries
        m = len(self.names)
        if sums is None:  # the two-retriever form (fusion.json written before retrievers had names)
            sums = [diff_sum, -diff_sum] if m == 2 else [0.0] * m
            sq_sums = [diff_sq_sum] * 2 if m == 2 else [0.0] * m
        if len(sums) != m or sq_sums is None or len(sq_sums) != m:
            raise ValueError(f"fusion state for {m} retrievers has {len(sums)} sums")
        self.sums, self.sq_sums = [float(x) for x in sums], [float(x) for x in sq_sums]
        # Each retriever's corroboration and its lists' overlap with the others', summed over the
        # ``observed`` queries (state written before these were kept has none: nothing is switched off
        # until ``MIN_QUERIES`` more are seen).
        if corroboration_sums is None or overlap_sums is None:
            observed, corroboration_sums, overlap_sums = 0, [0.0] * m, [0.0] * m
        if len(corroboration_sums) != m or len(overlap_sums) != m:
            raise ValueError(f"fusion state for {m} retrievers has {len(corroboration_sums)} corroboration "
                             f"and {len(overlap_sums)} overlap sums")
        self.observed = observed
        self.corroboration_sums = [float(x) for x in corroboration_sums]
        self.overlap_sums = [float(x) for x in overlap_sums]
        self._lock = threading.Lock()

    @property
    def diff_sum(self) -> float:
        return self.sums[0]

    @property
    def diff_sq_sum(self) -> float:
        return self.sq_sums[0]

    def observe(self, *ranked: list[str]) -> None:
        """Count one query from each retriever's ranked ids (as many lists as ``names``)."""
        if len(ranked) != len(self.names):
            raise ValueError(f"expected {len(self.names)} ranked lists, got {len(ranked)}")
        if any(len(r) < TOP for r in ranked):
            return  # too few candidates (a tiny collection or no word in common) to tell anything
        tops = [set(r[:AGAINST]) for r in ranked]
        m = len(ranked)
        corroborated, overlaps = [], []
        for i, r in enumerate(ranked):
            others = [j for j in range(m) if j != i]
            corroborated.append(sum(sum(1 for x in r[:TOP] if x in tops[j]) for j in others) / (TOP * len(others)))
            overlaps.append(sum(len(tops[i] & tops[j]) / max(len(tops[i]), len(tops[j])) for j in others) / len(others))
        with self._lock:
            self.queries += 1
            self.observed += 1
            for i, c in enumerate(corroborated):
                d = c - (sum(corroborated) - c) / (m - 1)
                self.sums[i] += d
                self.sq_sums[i] += d * d
                self.corroboration_sums[i] += c
                self.overlap_sums[i] += overlaps[i]

    def t(self, i: int = 0) -> float:
        """Paired t statistic of retriever ``i``'s corroboration minus the others' (default the
        first: BM25 minus dense for the hybrid)."""
        with self._lock:
            n, s, s2 = self.queries, self.sums[i], self.sq_sums[i]
        if n < 2:
            return 0.0
        mean = s / n
        var = max(s2 / n - mean * mean, 0.0) * n / (n - 1)
        if var <= 1e-12:
            return 0.0 if abs(mean) < 1e-12 else math.copysign(1e6, mean)
        return mean / math.sqrt(var / n)

    def effect(self, i: int = 0) -> float:
        """Effect size d of retriever ``i``'s corroboration minus the others': the mean difference
        over its standard deviation, t / sqrt(queries) (unlike t, it does not grow with the queries
        seen)."""
        n = self.queries
        return self.t(i) / math.sqrt(n) if n >= 2 else 0.0

    def corroboration(self, i: int = 0) -> float | None:
        """Retriever ``i``'s mean corroboration (None before ``MIN_QUERIES`` observed queries)."""
        with self._lock:
            return self.corroboration_sums[i] / self.observed if self.observed >= MIN_QUERIES else None

    def overlap(self, i: int = 0) -> float | None:
        """The mean share of retriever ``i``'s top-``AGAINST`` list that the others' hold, over the
        longer of the two lists (None before ``MIN_QUERIES`` observed queries)."""
        with self._lock:
            return self.overlap_sums[i] / self.observed if self.observed >= MIN_QUERIES else None

    def weights(self) -> list[float]:
        """One weight per retriever, summing to 1: equal before ``MIN_QUERIES`` queries; then
        ``0.5 + 0.25 * clip(d / EFFECT, -1, 1)`` before normalising, except that a retriever surely
        (t <= -CLEAR) and not negligibly (d <= -EFFECT) less corroborated than the rest gets 0 where
        its lists agree with the others' (overlap >= AGREE) or it is noise (corroboration < NOISE),
        and one surely and not negligibly more corroborated gets full say where its lists agree."""
        m = len(self.names)
        if self.queries < MIN_QUERIES:
            return [1.0 / m] * m
        raw = []
        for i in range(m):
            t, d = self.t(i), self.effect(i)
            overlap, corroboration = self.overlap(i), self.corroboration(i)
            agree = overlap is not None and overlap >= AGREE
            noise = corroboration is not None and corroboration < NOISE
            if t >= CLEAR and d >= EFFECT and agree:
                raw.append(1.0)
            elif t <= -CLEAR and d <= -EFFECT and (agree or noise):
                raw.append(0.0)
            else:
                raw.append(0.5 + 0.25 * max(-1.0, min(1.0, d / EFFECT)))
        total = sum(raw)
        return [r / total for r in raw] if total > 0 else [1.0 / m] * m

    def bm25_weight(self) -> float:
        """The first retriever's weight (BM25's, in the hybrid)."""
        return self.weights()[0]

    def state(self) -> dict:
        """What is saved between runs (read back with ``FusionStats(**state)``)."""
        with self._lock:  # one query's counts, copied together
            queries, sums, sq_sums = self.queries, list(self.sums), list(self.sq_sums)
            seen = {"observed": self.observed, "corroboration_sums": list(self.corroboration_sums),
                    "overlap_sums": list(self.overlap_sums)} if self.observed else {}
        if self.names == ("bm25", "dense"):
            return {"queries": queries, "diff_sum": sums[0], "diff_sq_sum": sq_sums[0], **seen}
        return {"queries": queries, "names": list(self.names), "sums": sums, "sq_sums": sq_sums, **seen}

    def to_dict(self) -> dict:
        overlap = self.overlap()
        out = {**{k: v for k, v in self.state().items() if k not in ("corroboration_sums", "overlap_sums")},
               "t": round(self.t(), 3), "d": round(self.effect(), 3),
               "overlap": None if overlap is None else round(overlap, 3), "bm25_weight": round(self.bm25_weight(), 4)}
        if self.names != ("bm25", "dense"):
            out.pop("bm25_weight")
            out["weights"] = dict(zip(self.names, (round(w, 4) for w in self.weights()), strict=True))
        return out


def zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    std = float(reference.std()) if len(reference) > 1 else 0.0
    return (values - float(reference.mean())) / (std if std > 1e-9 else 1.0)


def fuse(ids: list[str], bm25: np.ndarray, dense: np.ndarray, bm25_ref: np.ndarray, dense_ref: np.ndarray,
         w_bm25: float) -> list[tuple[str, float]]:
    """Combine both scores of the candidate ``ids``; best first (two retrievers, see :func:`fuse_many`)."""
    return fuse_many(ids, [bm25, dense], [bm25_ref, dense_ref], [w_bm25, 1.0 - w_bm25])


def fuse_many(ids: list[str], scores: list[np.ndarray], refs: list[np.ndarray],
              weights: list[float]) -> list[tuple[str, float]]:
    """Combine each retriever's scores of the candidate ``ids`` (z-normalised against its
    ``refs``) with ``weights``; best first.

    A retriever switched off (weight 0) still breaks exact ties of the others.
    """
    z = [zscore(np.asarray(s, dtype=np.float64), np.asarray(r, dtype=np.float64)) for s, r in zip(scores, refs, strict=True)]
    score = sum(w * zi for w, zi in zip(weights, z, strict=True)) + 1e-6 * sum(z)
    order = np.argsort(-score, kind="stable")
    return [(ids[i], float(score[i])) for i in order]
