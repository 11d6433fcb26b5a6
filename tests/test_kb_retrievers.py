"""Retrievers by name: the registry, fusion of any list of them, the graph retriever (groups
enforced on the graph's edges and on the chunks they lead to) and the ``auto`` mode's rules."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_lingxi
from test_graph import falkordb_url  # noqa: F401  (a fixture: FalkorDB started for the module)
from kb_fixtures.helpers import kb_settings, make_pdf

from lingxi.errors import UsageError
from lingxi.knowledge import create_kb, open_kb
from lingxi.knowledge.fusion import MIN_QUERIES, FusionStats, fuse, fuse_many
from lingxi.knowledge.mode_router import LONG_CHUNKS, LONG_SECTIONS, choose
from lingxi.knowledge.retrievers import (
    Bm25Retriever,
    FusedRetriever,
    Retriever,
    get_retriever,
    register_retriever,
    unregister_retriever,
)

DRUGS_MD = """# Drug labels

## Warfarin

Warfarin is an anticoagulant taken against blood clots. Warfarin is metabolized by the liver enzyme CYP2C9.

## Fluconazole

Fluconazole is an antifungal medicine for yeast infections.

## Aspirin

Aspirin relieves headache and fever in adults.
"""

CLINICAL_MD = """# Clinical notes

## Interactions

Fluconazole blocks CYP2C9, so warfarin given with it stays longer in the blood and bleeding becomes likely.
"""


@pytest.fixture
def settings(tmp_path):
    return kb_settings(tmp_path / "home")


@pytest.fixture
def docs(tmp_path):
    root = tmp_path / "med"
    root.mkdir()
    (root / "drugs.md").write_text(DRUGS_MD, encoding="utf-8")
    return root


@pytest.fixture
def kb(settings, docs, tmp_path):
    base = create_kb("med", settings)
    base.ingest([docs], progress=False)
    clinical = tmp_path / "restricted"
    clinical.mkdir()
    (clinical / "clinical.md").write_text(CLINICAL_MD, encoding="utf-8")
    base.ingest([clinical], groups=["clinical"], progress=False)
    yield base
    base.close()


class TitleRetriever(Retriever):
    """A retriever a plugin could add: documents whose title shares a word with the query, found
    through the store's BM25 restricted by a title filter (so groups stay inside the query)."""

    name = "title"

    def search(self, kb, query, k, groups, filters):
        words = {w.casefold() for w in query.text.split()}
        titles = [d.title for d in kb.store.documents() if words & {w.casefold() for w in d.title.split()}]
        if not titles:
            return []
        return kb.store.search_bm25(query.tokens, k, groups, {**(filters or {}), "title": titles})


@pytest.fixture
def title_retriever():
    register_retriever("title", TitleRetriever)
    yield
    unregister_retriever("title")


# ---------------------------------------------------------------- registry and fusion


def test_unknown_and_builtin_names(title_retriever):
    with pytest.raises(UsageError, match="unknown search mode 'nope'.*bm25.*dense.*graph.*hybrid.*title"):
        get_retriever("nope")
    with pytest.raises(ValueError, match="built-in"):
        register_retriever("bm25", Bm25Retriever)
    with pytest.raises(UsageError, match="two or more different"):
        get_retriever("fuse:bm25+bm25")
    fused = get_retriever("fuse:bm25+title")
    assert isinstance(fused, FusedRetriever) and [m.name for m in fused.members] == ["bm25", "title"]


def test_a_registered_retriever_searches_and_fuses(kb, title_retriever):
    hits = kb.search("Clinical interactions warfarin", mode="title", k=3)
    assert hits and {Path(h.source).name for h in hits} == {"clinical.md"}
    # groups apply inside its query like everywhere else
    assert kb.search("Clinical interactions warfarin", mode="title", k=3, groups=["sales"]) == []
    fused = kb.search("Clinical interactions warfarin", mode="fuse:bm25+dense+title", k=3)
    assert fused[0].source.endswith("clinical.md")
    assert ("bm25", "dense", "title") in kb._fusions


def test_hybrid_is_the_fusion_of_bm25_and_dense(kb):
    for query in ("warfarin enzyme", "headache fever", "antifungal yeast"):
        assert kb.search_ids(query, "hybrid", k=5) == kb.search_ids(query, "fuse:bm25+dense", k=5)
    # fixed weights (a benchmark's sweep) replace the learnt ones: all on BM25 ranks like BM25
    from lingxi.knowledge.retrievers import Query

    hybrid, before = get_retriever("hybrid"), kb.fusion_stats(("bm25", "dense")).queries
    for query in ("warfarin enzyme", "headache fever"):
        alone = [i for i, _ in kb.search_ids(query, "bm25", k=3)]
        fixed = hybrid.search(kb, Query(query, kb), 3, None, None, learn=False, weights=[1.0, 0.0])
        assert [i for i, _ in fixed][:len(alone)] == alone  # then the chunks BM25 did not match at all
    assert kb.fusion_stats(("bm25", "dense")).queries == before  # learn=False: nothing counted


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_concatenated_embedder_ranks_by_each_member_and_the_hybrid_fuses_them_all(tmp_path, tmp_path_factory, docs,
                                                                                    store):
    from store_servers import pg_url

    from lingxi.config import parse_config

    knowledge = {"store": store} | ({"pg_url": pg_url(tmp_path_factory)} if store == "postgres" else {})
    settings = parse_config({
        "home": str(tmp_path / "home"), "default_embedder": "wide", "models": {"fake": {"engine": "fake"}},
        "default_model": "fake", "knowledge": knowledge,
        "embedders": {"wide": {"engine": "hash", "dim": 512}, "narrow": {"engine": "hash", "dim": 64},
                      "both": {"engine": "concat", "members": ["wide", "narrow"]}}})
    clinical = tmp_path / "restricted"
    clinical.mkdir()
    (clinical / "clinical.md").write_text(CLINICAL_MD, encoding="utf-8")
    both, wide, narrow = (create_kb(f"{name}{os.getpid()}", settings, embedder=name) for name in ("both", "wide", "narrow"))
    for kb_ in (both, wide, narrow):
        kb_.ingest([docs], progress=False)
        kb_.ingest([clinical], groups=["clinical"], progress=False)
    assert both.embedder().dim == 576 and both.embedder_members() == ["wide", "narrow"] and wide.embedder_members() == []
    for query in ("warfarin enzyme", "headache fever", "CYP2C9 bleeding"):
        got = {name: [(h.text, h.score) for h in both.search(query, mode=f"dense:{name}", k=4)]
               for name in ("wide", "narrow")}
        for name, alone in (("wide", wide), ("narrow", narrow)):
            expected = [(h.text, h.score) for h in alone.search(query, mode="dense", k=4)]
            assert [t for t, _ in got[name]] == [t for t, _ in expected]  # the member's own ranking...
            assert np.allclose([s for _, s in got[name]], [s for _, s in expected], atol=1e-5)  # ...and cosine
        mean = {h.text: h.score for h in both.search(query, mode="dense", k=10)}
        member = {name: dict(both.search_ids(query, f"dense:{name}", k=10)) for name in ("wide", "narrow")}
        ids = dict(both.search_ids(query, "dense", k=10))
        for cid, score in ids.items():  # the concatenation's cosine is the mean of the members'
            assert score == pytest.approx((member["wide"][cid] + member["narrow"][cid]) / 2, abs=1e-5)
        assert len(mean) == len(ids)
        both.search(query, mode="hybrid", k=3)
    assert ("bm25", "dense:wide", "dense:narrow") in both._fusions
    # groups hold inside a member's search too
    assert all("CYP2C9, so" not in h.text for h in both.search("CYP2C9 bleeding", mode="dense:wide", k=10, groups=["sales"]))
    assert any("CYP2C9, so" in h.text for h in both.search("CYP2C9 bleeding", mode="dense:wide", k=10, groups=["clinical"]))
    with pytest.raises(UsageError, match="no 'nope' vectors: its embedder's members are wide, narrow"):
        both.search("warfarin", mode="dense:nope")
    with pytest.raises(UsageError, match="embedder 'wide' is not a concatenation"):
        wide.search("warfarin", mode="dense:wide")
    for kb_ in (both, wide, narrow):
        kb_.drop()


def test_a_concatenation_checks_answers_across_languages_with_its_multilingual_member(tmp_path, docs):
    """The cross-language answer check compares sentences by meaning; with minilm+e5 it must use
    e5-small alone (the mean with MiniLM's cosine would weaken the very match it is for)."""
    from lingxi.config import parse_config
    from lingxi.engines import load_embedder
    from lingxi.knowledge.types import Hit

    settings = parse_config({  # the bundled names, hashed: which member is asked is what is tested
        "home": str(tmp_path / "home"), "models": {"fake": {"engine": "fake"}}, "default_model": "fake",
        "embedders": {"minilm": {"engine": "hash", "dim": 64}, "e5-small": {"engine": "hash", "dim": 32}}})
    base = create_kb("pair", settings, embedder="minilm+e5")
    base.ingest([docs], progress=False)
    hit = Hit(id="1.1.1.0", doc="1", source="drugs.md", title="", text="Aspirin relieves headache and fever.", score=1.0)
    similarity = base._similarity("阿司匹林治什么？", [hit])
    e5 = load_embedder("e5-small", settings)
    q, p = e5.embed(["阿司匹林治什么？"], kind="query")[0], e5.embed([hit.text])[0]
    assert similarity("阿司匹林治什么？", [hit.text]) == pytest.approx([float(p @ q)], abs=1e-6)
    base.close()


def test_fusion_state_of_two_reads_as_before_and_more_than_two_learn_who_is_noise():
    old = FusionStats(queries=40, diff_sum=12.0, diff_sq_sum=8.0)  # a fusion.json from before
    assert old.state() == {"queries": 40, "diff_sum": 12.0, "diff_sq_sum": 8.0}
    assert old.weights() == [old.bm25_weight(), 1.0 - old.bm25_weight()]

    rng = np.random.default_rng(0)
    stats = FusionStats(names=("a", "b", "noise"))
    ids = [f"d{i}" for i in range(300)]
    for _ in range(MIN_QUERIES * 3):
        truth = rng.normal(0, 1, 300)
        a = np.argsort(-(truth + rng.normal(0, 0.3, 300)))
        b = np.argsort(-(truth + rng.normal(0, 0.3, 300)))
        noise = rng.permutation(300)
        stats.observe([ids[i] for i in a[:50]], [ids[i] for i in b[:50]], [ids[i] for i in noise[:50]])
    w = stats.weights()
    assert w[2] == 0.0 and w[0] > 0.3 and w[1] > 0.3 and abs(sum(w) - 1.0) < 1e-9
    again = FusionStats(**stats.state())
    assert again.weights() == w


def test_fuse_many_of_two_is_fuse():
    ids = ["a", "b", "c", "d"]
    b, d = np.array([3.0, 0.0, 1.0, 2.0]), np.array([0.1, 0.9, 0.5, 0.2])
    assert fuse(ids, b, d, b, d, 0.3) == fuse_many(ids, [b, d], [b, d], [0.3, 0.7])



def test_title_and_heading_words_weigh_twice_in_bm25(tmp_path):
    from lingxi.knowledge.retrievers import CONTEXT_WEIGHT, bm25_tokens
    from lingxi.knowledge.types import Chunk
    from lingxi.text import tokenize

    chunk = Chunk(id="1.1.1.0", text="Exports rose in March.", context="Trade > Tariffs")
    assert sorted(bm25_tokens(chunk)) == sorted(tokenize("Trade Tariffs") * CONTEXT_WEIGHT + tokenize("Exports rose in March."))
    settings = kb_settings(tmp_path / "home")
    folder = tmp_path / "docs"
    folder.mkdir()
    # the same words once in a heading, once in the text: the section they name ranks first
    (folder / "a.md").write_text("# Notes\n\n## Misc\n\nParking tariff rules apply.\n", encoding="utf-8")
    (folder / "b.md").write_text("# Notes\n\n## Parking tariff\n\nThe garage closes at ten at night and opens at six.\n", encoding="utf-8")
    with create_kb("boost", settings) as base:
        base.ingest([folder], progress=False)
        assert base.search("parking tariff", mode="bm25", k=2)[0].source.endswith("b.md")

# ---------------------------------------------------------------- the graph retriever

needs_graph = pytest.mark.skipif(importlib.util.find_spec("kuzu") is None,
                                 reason="needs the graph extra: pip install 'lingxi[graph]'")


def _graph(settings, tmp_path, rows):
    from lingxi.graph import import_files

    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    import_files("med", [path], settings)


@needs_graph
def test_graph_retriever_returns_the_chunks_behind_the_path(kb, settings, tmp_path):
    aspirin = kb.search("aspirin headache fever", mode="bm25", k=1)[0]
    _graph(settings, tmp_path, [
        {"head": "warfarin", "head_type": "Drug", "relation": "METABOLIZED_BY", "tail": "CYP2C9",
         "tail_type": "Enzyme", "source": "drugs.md#warfarin"},
        {"head": "aspirin", "head_type": "Drug", "relation": "TREATS", "tail": "headache", "tail_type": "Symptom",
         "source": aspirin.id},
        {"head": "fluconazole", "head_type": "Drug", "relation": "INHIBITS", "tail": "CYP2C9", "tail_type": "Enzyme",
         "source": "clinical.md#interactions", "groups": ["clinical"]},
    ])
    with open_kb("med", settings) as base:
        warfarin = base.search("Which enzyme metabolizes warfarin?", mode="graph", k=3)
        assert [h.headings[-1] for h in warfarin] == ["Warfarin"]  # "drugs.md#warfarin": its best chunk
        assert [i for i, _ in base.search_ids("What does aspirin treat?", mode="graph", k=3)] == [aspirin.id]
        assert base.search("Tell me about the weather", mode="graph", k=3) == []  # no entity named
        # the clinical edge and its chunk: seen by the clinical group, by nobody else
        question = "Which enzyme does fluconazole inhibit?"
        assert [h.headings[-1] for h in base.search(question, mode="graph", groups=["clinical"])] == ["Interactions"]
        assert base.search(question, mode="graph", groups=["sales"]) == []
        # the chunk says "blocks", not "inhibits": no sentence answers, the graph's fact does,
        # cited by that chunk; a caller who may not read the fact gets no answer
        answer = base.answer(question, groups=["clinical"], retrieval="graph", mode="extract")
        assert answer.supported and answer.mode == "graph" and answer.answer.startswith("CYP2C9 (")
        assert [c.source for c in answer.citations] == ["restricted/clinical.md"] and answer.to_dict()["paths"] == [
            ["fluconazole", "INHIBITS", "CYP2C9"]]
        assert not base.answer(question, groups=["sales"], retrieval="graph", mode="extract").supported
        fused = base.answer(question, groups=["clinical"], retrieval="fuse:bm25+dense+graph", mode="extract")
        assert fused.mode == "graph" and fused.paths == answer.paths  # a fusion with the graph answers alike
    # a public edge whose chunk is restricted: the path is found, the chunk is not shown
    _graph(settings, tmp_path, [{"head": "warfarin", "head_type": "Drug", "relation": "INTERACTS_WITH",
                                 "tail": "fluconazole", "tail_type": "Drug", "source": "clinical.md"}])
    with open_kb("med", settings) as base:
        q = "Which drug interacts with warfarin?"
        assert [h.headings[-1] for h in base.search(q, mode="graph", groups=["clinical"])] == ["Interactions"]
        assert base.search(q, mode="graph", groups=["sales"]) == []
        # nor answered from the graph: a fact with nothing the caller may read behind it is not cited
        assert not base.answer(q, groups=["sales"], retrieval="graph", mode="extract").supported
        assert base.answer(q, groups=["clinical"], retrieval="graph", mode="extract").mode == "graph"
        fused = base.search(q, mode="fuse:bm25+dense+graph", k=3, groups=["sales"])
        assert all(not h.source.endswith("clinical.md") for h in fused)


@needs_graph
@pytest.mark.parametrize("graph_store", ["kuzu", "falkordb"])
def test_an_open_knowledge_base_neither_locks_its_graph_nor_serves_a_stale_one(kb, settings, tmp_path, graph_store,
                                                                                request, monkeypatch):
    # a gateway keeps its knowledge bases open: an import must still get the graph's write lock,
    # and the next question must see what it added
    if graph_store == "falkordb":
        graph = settings.graph.model_copy(update={"store": "falkordb",
                                                  "falkordb_url": request.getfixturevalue("falkordb_url")})
        settings = settings.model_copy(update={"graph": graph})
        monkeypatch.setattr("lingxi.graph.reader.GRAPH_RECHECK_S", 0.0)
    aspirin = kb.search("aspirin headache fever", mode="bm25", k=1)[0]
    _graph(settings, tmp_path, [{"head": "aspirin", "head_type": "Drug", "relation": "TREATS", "tail": "headache",
                                 "tail_type": "Symptom", "source": aspirin.id}])
    warfarin = {"head": "warfarin", "head_type": "Drug", "relation": "METABOLIZED_BY", "tail": "CYP2C9",
                "tail_type": "Enzyme", "source": "drugs.md#warfarin"}
    try:
        with open_kb("med", settings) as base:
            assert base.search("Which enzyme metabolizes warfarin?", mode="graph") == []  # no warfarin yet
            assert [i for i, _ in base.search_ids("What does aspirin treat?", mode="graph")] == [aspirin.id]
            if graph_store == "kuzu":  # from another process: Kùzu's file lock is per process
                facts = tmp_path / "more.jsonl"
                facts.write_text(json.dumps(warfarin) + "\n")
                done = subprocess.run([sys.executable, "-m", "lingxi", "graph", "import", "med", str(facts)],
                                      env={**os.environ, "LINGXI_HOME": str(settings.home_dir)},
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
            else:
                _graph(settings, tmp_path, [warfarin])
            found = base.search("Which enzyme metabolizes warfarin?", mode="graph")
            assert [h.headings[-1] for h in found] == ["Warfarin"]
            assert choose(base, "Which enzyme metabolizes warfarin?").mode == "graph"
    finally:
        if graph_store == "falkordb":
            from lingxi.stores.graph import open_store

            store = open_store("med", settings)
            store.delete_graph()
            store.close()


def test_graph_mode_without_a_graph_says_how_to_make_one(kb):
    with pytest.raises(UsageError, match="has no graph: import one with 'lingxi graph import med FILE'"):
        kb.search("warfarin", mode="graph")


# ---------------------------------------------------------------- auto


@needs_graph
def test_auto_rules(kb, settings, tmp_path):
    assert choose(kb, "Which enzyme metabolizes warfarin?").mode == "hybrid"  # no graph yet
    _graph(settings, tmp_path, [
        {"head": "warfarin", "head_type": "Drug", "relation": "METABOLIZED_BY", "tail": "CYP2C9",
         "tail_type": "Enzyme", "source": "drugs.md"},
        {"head": "fluconazole", "head_type": "Drug", "relation": "INHIBITS", "tail": "CYP2C9", "tail_type": "Enzyme",
         "source": "clinical.md", "groups": ["clinical"]},
        {"label": "METABOLIZED_BY", "words": ["代谢", "breaks down"]},
    ])
    with open_kb("med", settings) as base:
        entity_and_relation = choose(base, "Which enzyme metabolizes warfarin?")
        assert entity_and_relation.mode == "graph" and "warfarin" in entity_and_relation.reason
        assert choose(base, "What breaks down warfarin in the liver?").mode == "graph"  # a label's words
        assert choose(base, "What else acts on the enzyme that warfarin needs?").mode == "graph"  # a chain
        assert choose(base, "Tell me about warfarin").mode == "hybrid"  # an entity, nothing asked about it
        # two entities: how they meet is the graph's to say, where the caller may read both
        assert choose(base, "Do warfarin and fluconazole interact?", ["clinical"]).mode == "graph"
        assert choose(base, "Do warfarin and fluconazole interact?", ["sales"]).mode == "hybrid"
        assert choose(base, "How do I reset my password?").mode == "hybrid"
        # the relation must be one the caller may read
        assert choose(base, "What does fluconazole inhibit?", ["clinical"]).mode == "graph"
        assert choose(base, "What does fluconazole inhibit?", ["sales"]).mode == "hybrid"
        # the reason shown names only entities with a fact the caller may read
        both = choose(base, "Which enzyme metabolizes warfarin, and fluconazole?", ["sales"])
        assert both.mode == "graph" and "warfarin" in both.reason and "fluconazole" not in both.reason
        answer = base.answer("Which enzyme metabolizes warfarin?", retrieval="auto", mode="extract")
        assert answer.to_dict()["retrieval_mode"] == "graph" and answer.retrieval_reason


def test_auto_picks_navigate_for_a_long_structured_document(tmp_path):
    settings = kb_settings(tmp_path / "home", chunk_tokens=20, chunk_overlap=0)
    folder = tmp_path / "code"
    folder.mkdir()
    sections = max(LONG_SECTIONS, LONG_CHUNKS // 2) + 10
    (folder / "code.md").write_text("# Civil code\n\n" + "\n\n".join(
        f"## Article {i}\n\nThe party to a contract shall perform duty number {i} in good faith. "
        f"A breach of duty {i} is compensated in full within thirty days." for i in range(1, sections + 1)),
        encoding="utf-8")
    (folder / "memo.md").write_text("# Memo\n\nLunch is at noon.\n", encoding="utf-8")
    with create_kb("law", settings) as base:
        base.ingest([folder], progress=False)
        chosen = choose(base, "What happens after a breach?")
        assert chosen.mode == "navigate" and "code.md" in chosen.reason
        answer = base.answer("What happens after a breach?", retrieval="auto", mode="extract")
        assert answer.retrieval_mode == "navigate" and answer.scratchpad
    with create_kb("memo", settings) as small:
        small.ingest([folder / "memo.md"], progress=False)
        assert choose(small, "When is lunch?").mode == "hybrid"
    # a regulation as a PDF has no headings, only numbered clauses: they count as its sections
    articles = [f"Article {i}. The party shall perform duty {i} in good faith and pay within thirty days."
                for i in range(1, sections + 1)]
    make_pdf(tmp_path / "rules.pdf", ["\n".join(articles[i:i + 15]) for i in range(0, len(articles), 15)])
    with create_kb("rules", settings) as rules:
        rules.ingest([tmp_path / "rules.pdf"], progress=False)
        chosen = choose(rules, "What happens after a breach?")
        assert chosen.mode == "navigate" and "rules.pdf" in chosen.reason


class _Bm25Named(Bm25Retriever):
    def __init__(self, name):
        self.name = name


# ---------------------------------------------------------------- CLI


def test_cli_search_and_ask_say_the_mode(tmp_path, settings, docs):
    config = tmp_path / "lingxi.toml"
    config.write_text(f'home = "{settings.home_dir}"\ndefault_embedder = "hash"\ndefault_model = "fake"\n'
                      '[embedders.hash]\nengine = "hash"\ndim = 512\n[models.fake]\nengine = "fake"\n',
                      encoding="utf-8")
    assert invoke_lingxi("kb", "create", "cli", config=config).returncode == 0
    assert invoke_lingxi("kb", "ingest", "cli", str(docs), "--quiet", config=config).returncode == 0
    out = invoke_lingxi("kb", "search", "cli", "warfarin enzyme", "--mode", "auto", "--json", config=config)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["retrieval_mode"] == "hybrid" and body["reason"] and body["hits"][0]["source"].endswith("drugs.md")
    out = invoke_lingxi("kb", "ask", "cli", "What relieves headache?", "--mode", "bm25", "--answer-mode", "extract",
                        "--json", config=config)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["retrieval_mode"] == "bm25"
    bad = invoke_lingxi("kb", "search", "cli", "warfarin", "--mode", "vectors", config=config)
    assert bad.returncode != 0 and "unknown search mode 'vectors'" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- gateway


@needs_graph
def test_gateway_serves_the_retrieval_mode_with_citations(tmp_path, docs):
    import httpx
    import openai
    from gateway_helpers import gateway_settings, running

    from lingxi.engines.fake import FakeEngine

    # the answer cache on: a repeated question is replayed with all it said (citations, mode, paths)
    settings = gateway_settings(tmp_path / "home", cache={"enabled": True, "backend": "memory", "semantic": False})
    base = create_kb("med", settings)
    base.ingest([docs], progress=False)
    base.close()
    _graph(settings, tmp_path, [{"head": "warfarin", "head_type": "Drug", "relation": "METABOLIZED_BY",
                                 "tail": "CYP2C9", "tail_type": "Enzyme", "source": "drugs.md#warfarin"},
                                {"head": "warfarin", "head_type": "Drug", "relation": "INTERACTS_WITH",
                                 "tail": "fluconazole", "tail_type": "Drug", "source": "drugs.md#warfarin"}])
    q = [{"role": "user", "content": "Which enzyme metabolizes warfarin?"}]
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        by_field = c.chat.completions.create(model="kb:med", messages=q,
                                             extra_body={"retrieval_mode": "graph", "answer_mode": "extract"})
        assert by_field.model_extra["retrieval_mode"] == "graph"
        cited = by_field.choices[0].message.model_extra["citations"]
        assert cited and all("drugs.md" in x["source"] for x in cited) and "CYP2C9" in cited[0]["text"]
        by_metadata = c.chat.completions.create(model="kb:med", messages=q, metadata={"retrieval_mode": "graph"},
                                                extra_body={"answer_mode": "extract"})
        assert by_metadata.model_extra["retrieval_mode"] == "graph"
        auto = c.chat.completions.create(model="kb:med", messages=q,
                                         extra_body={"retrieval_mode": "auto", "answer_mode": "extract"})
        assert auto.model_extra["retrieval_mode"] == "graph" and "warfarin" in auto.model_extra["retrieval_reason"]
        default = c.chat.completions.create(model="kb:med", messages=q, extra_body={"answer_mode": "extract"})
        assert default.model_extra["retrieval_mode"] == "hybrid"
        chunks = list(c.chat.completions.create(model="kb:med", messages=q, stream=True,
                                                extra_body={"retrieval_mode": "graph", "answer_mode": "extract"}))
        last = chunks[-1].choices[0].delta.model_extra
        assert last["retrieval_mode"] == "graph" and last["citations"]
        with pytest.raises(openai.BadRequestError, match="unknown search mode 'vectors'"):
            c.chat.completions.create(model="kb:med", messages=q, extra_body={"retrieval_mode": "vectors"})
        with pytest.raises(openai.BadRequestError, match="only kb: models"):
            c.chat.completions.create(model="fake", messages=q, extra_body={"retrieval_mode": "graph"})
        bad = httpx.post(srv.url + "/v1/chat/completions",
                         json={"model": "kb:med", "messages": q, "metadata": {"retrieval_mode": "no way"}})
        assert bad.status_code == 400 and "metadata.retrieval_mode" in bad.json()["error"]["message"]
        # no sentence of the chunk says it, the graph's fact does: its paths come back too
        fact = [{"role": "user", "content": "Which drug interacts with warfarin?"}]
        extra = {"retrieval_mode": "graph", "answer_mode": "extract"}
        graph_answer = c.chat.completions.create(model="kb:med", messages=fact, extra_body=extra)
        assert graph_answer.choices[0].message.content.startswith("fluconazole (warfarin -INTERACTS_WITH-> fluconazole)")
        assert graph_answer.model_extra["paths"] == [["warfarin", "INTERACTS_WITH", "fluconazole"]]
        streamed = list(c.chat.completions.create(model="kb:med", messages=fact, stream=True, extra_body=extra))
        assert streamed[-1].choices[0].delta.model_extra["paths"] == [["warfarin", "INTERACTS_WITH", "fluconazole"]]
        again = c.chat.completions.with_raw_response.create(model="kb:med", messages=fact, extra_body=extra)
        assert again.headers["x-lingxi-cache"] == "exact" and again.parse().model_extra["paths"] == [
            ["warfarin", "INTERACTS_WITH", "fluconazole"]]
    with open_kb("med", settings) as kb:
        kb.set_retrieval("graph")  # the knowledge base's own default
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        own = c.chat.completions.create(model="kb:med", messages=q, extra_body={"answer_mode": "extract"})
        assert own.model_extra["retrieval_mode"] == "graph"
