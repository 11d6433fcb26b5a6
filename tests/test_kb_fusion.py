"""Adaptive fusion: the weights follow which retriever the other one corroborates, so hybrid is
not dragged below the better retriever by a much weaker one (as plain RRF is)."""

from __future__ import annotations

import numpy as np
import pytest

from lingxi.evaluate.retrieval import evaluate_run
from lingxi.knowledge.fusion import MIN_QUERIES, FusionStats, fuse


def _simulate(good_noise: float, bad_noise: float, good_is_bm25: bool, seed: int = 0):
    """Queries over 500 docs with 3 relevant each; a good and a bad ranker (noisy relevance)."""
    rng = np.random.default_rng(seed)
    n_docs, ids = 500, [f"d{i}" for i in range(500)]
    queries = []
    for q in range(120):
        rel = rng.choice(n_docs, 3, replace=False)
        truth = np.zeros(n_docs)
        truth[rel] = 1.0
        good = truth * 3 + rng.normal(0, good_noise, n_docs)
        bad = truth * 3 + rng.normal(0, bad_noise, n_docs)
        queries.append((f"q{q}", rel, (good, bad) if good_is_bm25 else (bad, good)))
    return ids, queries


def _ndcg(ids, queries, scorer):
    run, qrels = {}, {}
    for q, rel, scores in queries:
        order = scorer(scores)
        run[q] = [(ids[i], 0.0) for i in order[:10]]
        qrels[q] = {ids[i]: 1 for i in rel}
    return evaluate_run(run, qrels)["ndcg@10"]


def _hybrid(ids, queries):
    stats = FusionStats()
    tops = []
    for _, _, (b, d) in queries:
        bt, dt = np.argsort(-b)[:50], np.argsort(-d)[:50]
        stats.observe([ids[i] for i in bt], [ids[i] for i in dt])
        tops.append((bt, dt))
    w = stats.bm25_weight()

    def scorer(scores):
        b, d = scores
        bt, dt = np.argsort(-b)[:50], np.argsort(-d)[:50]
        cand = list(dict.fromkeys(list(bt) + list(dt)))
        fused = fuse([ids[i] for i in cand], b[cand], d[cand], b[bt], d[dt], w)
        pos = {ids[i]: i for i in cand}
        return [pos[i] for i, _ in fused]
    return scorer, w


def test_weak_dense_is_switched_off():
    ids, queries = _simulate(good_noise=0.8, bad_noise=6.0, good_is_bm25=True)
    scorer, w = _hybrid(ids, queries)
    assert w == 1.0
    bm25 = _ndcg(ids, queries, lambda s: np.argsort(-s[0]))
    assert _ndcg(ids, queries, scorer) >= bm25


def test_weak_bm25_is_switched_off():
    ids, queries = _simulate(good_noise=0.8, bad_noise=6.0, good_is_bm25=False)
    scorer, w = _hybrid(ids, queries)
    assert w == 0.0
    dense = _ndcg(ids, queries, lambda s: np.argsort(-s[1]))
    assert _ndcg(ids, queries, scorer) >= dense


def test_equal_retrievers_are_mixed_and_fusion_helps():
    ids, queries = _simulate(good_noise=1.5, bad_noise=1.5, good_is_bm25=True)
    scorer, w = _hybrid(ids, queries)
    assert 0.1 < w < 0.9
    best = max(_ndcg(ids, queries, lambda s: np.argsort(-s[0])), _ndcg(ids, queries, lambda s: np.argsort(-s[1])))
    assert _ndcg(ids, queries, scorer) > best


def _after(queries: int, mean: float, sd: float = 0.2, overlap: float = 0.35, corroboration=(0.7, 0.7)) -> FusionStats:
    """The statistics after ``queries`` queries whose corroboration differences (BM25 minus dense)
    have this mean and deviation, and whose top-50 lists share ``overlap``."""
    return FusionStats(queries=queries, diff_sum=mean * queries, diff_sq_sum=queries * (sd * sd + mean * mean),
                       observed=queries, corroboration_sums=[c * queries for c in corroboration],
                       overlap_sums=[overlap * queries] * 2)


def test_a_small_difference_stays_mixed_however_many_queries_show_it():
    # On long documents BM25 and dense differ a little (effect size d 0.06-0.14) and their mix finds
    # the right section first far more often than either alone. t grows with the queries seen, so a
    # rule on t alone switched one off for good after a few hundred questions.
    small = _after(1000, 0.03)
    assert small.t() > 4 and small.effect() == pytest.approx(0.15, abs=0.001)
    assert small.bm25_weight() == pytest.approx(0.5 + 0.25 * small.effect() / 0.2)  # mixed, leaning to BM25
    assert _after(40, 0.03).bm25_weight() == pytest.approx(small.bm25_weight(), abs=0.01)  # 40 queries: the same
    assert _after(20, -0.08, overlap=0.62).bm25_weight() == pytest.approx(0.25, abs=0.01)  # not sure yet (t -1.8)


def test_a_clearly_weaker_retriever_is_switched_off_only_where_mixing_cannot_help():
    # d -0.4 with lists sharing 0.62 of their top 50, as BM25 beside MiniLM on DBpedia's entity
    # queries: the two find the same chunks, and the better one orders them alone.
    assert _after(1000, -0.08, overlap=0.62).bm25_weight() == 0.0
    # The same difference where each finds chunks the other misses (lists sharing 0.35, as on the
    # long documents, where BM25 was switched off on a Rust Reference set at d -0.52 and lost 2 of
    # 14 first results): mixed, leaning to the better one.
    assert _after(1000, -0.08).bm25_weight() == pytest.approx(0.25)
    assert _after(1000, 0.08).bm25_weight() == pytest.approx(0.75)  # CMRC with e5-small: 0.9854 alone, 0.987+ mixed
    # A retriever that is noise (under NOISE of its top 5 in the other's top 50, as MiniLM on
    # Chinese) is switched off however little the lists share.
    assert _after(1000, 0.08, overlap=0.2, corroboration=(0.45, 0.3)).bm25_weight() == 1.0
    # A fusion.json from before these were kept: mixed until MIN_QUERIES more queries are seen.
    old = FusionStats(queries=1000, diff_sum=-80.0, diff_sq_sum=1000 * (0.04 + 0.0064))
    assert old.effect() == pytest.approx(-0.4, abs=0.001) and old.bm25_weight() == pytest.approx(0.25)
    for _ in range(MIN_QUERIES):
        old.observe([f"b{i}" for i in range(50)], [f"b{i}" for i in range(5, 55)])
    assert old.overlap() == pytest.approx(0.9) and old.bm25_weight() == 0.0
    assert FusionStats(**old.state()).weights() == old.weights()


def test_a_knowledge_base_reads_back_what_its_fusion_learnt(tmp_path):
    # fusion.json is written now and then and read when the knowledge base opens (each CLI search is
    # a process of its own): the overlap and corroboration must come back with the differences, or
    # no retriever is ever switched off there
    from kb_fixtures.helpers import kb_settings
    from lingxi.knowledge.kb import create_kb, open_kb

    settings = kb_settings(tmp_path / "home")
    base = create_kb("docs", settings)
    for _ in range(MIN_QUERIES * 2):  # the two lists agree and dense is the better one
        base.fusion.observe([f"b{i}" for i in range(50)], [f"b{i}" for i in range(5, 55)])
    learnt = base.fusion.weights()
    assert learnt == [0.0, 1.0]
    base.close()
    again = open_kb("docs", settings)
    assert again.fusion.weights() == learnt and again.fusion.overlap() == pytest.approx(0.9)
    again.close()


def test_equal_weight_until_enough_queries():
    stats = FusionStats()
    for _ in range(MIN_QUERIES - 1):
        stats.observe(list("abcdefgh"), list("stuvwxyz"))
    assert stats.bm25_weight() == 0.5
    stats.observe(list("ab"), list("st"))  # too short to tell anything: not counted
    assert stats.queries == MIN_QUERIES - 1
