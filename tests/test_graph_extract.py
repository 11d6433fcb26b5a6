"""Facts extracted from a knowledge base's chunks into a graph: the quote rule, provenance and
groups on every edge, incremental reruns, and the refusal of a model too small to be trusted
(for extraction and for text-to-Cypher, whose own rules are tested in test_graph.py).
The fake engine stands in for the trusted model (none of 1B parameters ships); the slow test
runs the real bundled model to its refusal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kb_fixtures.helpers import kb_settings

from lingxi.engines.base import ModelInfo
from lingxi.engines.fake import FakeEngine
from lingxi.errors import UsageError
from lingxi.graph.answer import ask
from lingxi.graph.extract import check_reply, extract, extraction_schema
from lingxi.knowledge import create_kb

pytest.importorskip("kuzu", reason="needs the graph extra: pip install 'lingxi[graph]'")

LABELS = "阿司匹林用于缓解头痛和发热。"
CYP = "华法林主要由CYP2C9代谢；氟康唑抑制CYP2C9。"
CYPHER = "MATCH (d:Drug)-[:TREATS]->(:Symptom {name: '头痛'}) RETURN d.name"


def triples(*rows: tuple[str, str, str, str, str]) -> str:
    keys = ("head", "head_type", "relation", "tail", "tail_type")
    return json.dumps({"triples": [dict(zip(keys, r)) for r in rows]}, ensure_ascii=False)


class TinyModel(FakeEngine):
    """The fake engine describing itself as a 135M-parameter model (too small to be trusted)."""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, engine="fake", details={"n_params": 135_000_000})


def make_kb(tmp_path: Path):
    settings = kb_settings(tmp_path / "home")
    public, clinical = tmp_path / "public", tmp_path / "clinical"
    public.mkdir()
    clinical.mkdir()
    (public / "labels.md").write_text(f"# 药品说明\n\n{LABELS}\n", encoding="utf-8")
    (clinical / "cyp.md").write_text(f"# 代谢\n\n{CYP}\n", encoding="utf-8")
    kb = create_kb("med", settings)
    kb.ingest([public], progress=False)
    kb.ingest([clinical], groups=["clinical"], progress=False)
    return settings, kb


def graph_store(tmp_path: Path, read_only: bool = False):
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    return KuzuGraphStore(tmp_path / "graph", read_only=read_only)


def test_reply_checks_keep_only_what_the_chunk_writes():
    reply = "```json\n" + triples(
        ("阿司匹林", "Drug", "TREATS", "头痛", "Symptom"),
        ("阿司匹林", "Drug", "TREATS", "偏头痛", "Disease"),  # invented: the text does not say 偏头痛
        ("青霉素", "Drug", "TREATS", "发热", "Symptom"),  # invented entity
        ("阿司匹林", "Drug", "TREATS", "阿司匹林", "Drug"),  # self-reference
        ("阿司匹林", "drug type", "TREATS", "发热", "Symptom"),  # not a label
    ) + "\n```"
    kept, reasons, proposed = check_reply(reply, LABELS, "1.0.0.0", ["clinical"])
    assert [(t.head, t.relation, t.tail, t.source, t.groups) for t in kept] == [
        ("阿司匹林", "TREATS", "头痛", "1.0.0.0", ("clinical",))]
    assert proposed == 5 and len(reasons) == 4
    assert "'偏头痛' not written in the chunk" in reasons[0] and "'青霉素'" in reasons[1]
    assert "self-referencing" in reasons[2] and "not a label" in reasons[3]
    assert check_reply("I think aspirin treats headaches.", LABELS, "1.0.0.0", [])[1] == [
        '1.0.0.0: the reply is not {"triples": [...]} JSON']
    only = check_reply(triples(("阿司匹林", "Drug", "CAUSES", "发热", "Symptom")), LABELS, "x", [], ["TREATS"])
    assert only[0] == [] and "not one of TREATS" in only[1][0]
    # full-width letters and a name broken over two lines are still written in the chunk
    wide = check_reply(triples(("华法林", "Drug", "METABOLIZED_BY", "CYP2C9", "Enzyme"),
                               ("华法林", "Drug", "TREATS", "deep vein thrombosis", "Disease")),
                       "华法林由ＣＹＰ２Ｃ９代谢，用于deep vein\nthrombosis。", "x", [])
    assert len(wide[0]) == 2, wide[1]
    assert check_reply("", LABELS, "x", [])[0] is None  # not JSON: nothing kept, the chunk asked again


def test_the_schema_names_the_allowed_labels():
    schema = extraction_schema(["TREATS"], ["Drug", "Symptom"])
    item = schema["properties"]["triples"]["items"]["properties"]
    assert item["relation"] == {"enum": ["TREATS"]} and item["head_type"] == {"enum": ["Drug", "Symptom"]}
    assert "pattern" in extraction_schema()["properties"]["triples"]["items"]["properties"]["relation"]


def test_extracted_facts_keep_their_chunk_and_its_groups_and_reruns_read_only_changes(tmp_path):
    settings, kb = make_kb(tmp_path)
    with kb:
        docs = {d.source.rsplit("/", 1)[-1]: d for d in kb.store.documents()}
        engine = FakeEngine(replies=[
            triples(("阿司匹林", "Drug", "TREATS", "头痛", "Symptom"), ("阿司匹林", "Drug", "TREATS", "发热", "Symptom")),
            triples(("华法林", "Drug", "METABOLIZED_BY", "CYP2C9", "Enzyme"),
                    ("氟康唑", "Drug", "INHIBITS", "CYP2C9", "Enzyme"), ("利福平", "Drug", "INDUCES", "CYP2C9", "Enzyme")),
        ])
        graph = graph_store(tmp_path)
        report = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        graph.close()
        assert (report.chunks, report.read, report.skipped) == (2, 2, 0)
        assert (report.proposed, report.kept, report.rejected) == (5, 4, 1)
        assert "'利福平' not written in the chunk" in report.reasons[0]
        assert report.written["edges_added"] == 4

        reader = graph_store(tmp_path, read_only=True)
        edges = {(e.head, e.relation, e.tail): e for e in reader.neighbors(
            [("Drug", "阿司匹林"), ("Drug", "华法林"), ("Drug", "氟康唑")], None)}
        cyp_chunk = kb.store.chunk_ids(docs["cyp.md"].doc_no)[0]
        assert edges[("华法林", "METABOLIZED_BY", "CYP2C9")].source == cyp_chunk
        assert edges[("华法林", "METABOLIZED_BY", "CYP2C9")].groups == ("clinical",)
        assert edges[("阿司匹林", "TREATS", "头痛")].groups == ()
        # the inhibition was read from a clinical document: a public reader's answer never walks it
        public = ask(reader, "华法林和氟康唑有相互作用吗？", groups=[])
        assert all("INHIBITS" not in p for p in public.paths)
        assert ask(reader, "华法林和氟康唑有相互作用吗？", groups=["clinical"]).answers == ["CYP2C9"]
        reader.close()

        # a rerun reads nothing; a changed document only its own chunk
        seen = len(engine.prompts)
        graph = graph_store(tmp_path)
        again = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (again.read, again.skipped) == (0, 2) and len(engine.prompts) == seen
        (tmp_path / "public" / "labels.md").write_text("# 药品说明\n\n布洛芬用于缓解头痛。\n", encoding="utf-8")
        kb.ingest([tmp_path / "public"], progress=False)
        engine.enqueue(triples(("布洛芬", "Drug", "TREATS", "头痛", "Symptom")))
        changed = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (changed.read, changed.skipped, changed.kept, changed.removed) == (1, 1, 1, 2)
        assert "布洛芬" in engine.prompts[-1][-1]["content"]
        treats = {(e.head, e.tail) for e in graph.neighbors([("Symptom", "头痛"), ("Symptom", "发热")], None)}
        assert treats == {("布洛芬", "头痛")}  # what the page said about aspirin went with the old text
        # a deleted document takes its facts along at the next run
        kb.delete(str(tmp_path / "clinical" / "cyp.md"))
        after = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (after.read, after.removed) == (0, 2) and graph.counts()["edges"] == 1
        # a document whose groups change has its facts written again with the new groups
        kb.ingest([tmp_path / "public"], groups=["clinical"], progress=False)
        engine.enqueue(triples(("布洛芬", "Drug", "TREATS", "头痛", "Symptom")))
        regrouped = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (regrouped.read, regrouped.removed, regrouped.kept) == (1, 1, 1)
        edge, = graph.neighbors([("Drug", "布洛芬")], None)
        assert edge.groups == ("clinical",)
        assert graph.neighbors([("Drug", "布洛芬")], []) == []
        # a reply that is not the JSON asked for leaves the chunk to be asked again
        kb.ingest([tmp_path / "public"], groups=[], progress=False)
        engine.enqueue("sorry, I cannot help with that", triples(("布洛芬", "Drug", "TREATS", "头痛", "Symptom")))
        failed = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (failed.read, failed.unreadable) == (1, 1)
        retried = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert (retried.read, retried.unreadable, retried.kept) == (1, 0, 1)
        # another graph keeps its own record
        other = extract(kb, graph, engine, graph_name="other", model_name="fake", progress=False)
        assert other.read == 1  # the one chunk left
        graph.close()


def test_extraction_leaves_a_fact_the_graph_already_holds_as_it_is(tmp_path):
    from lingxi.graph.triples import Triple

    _, kb = make_kb(tmp_path)
    with kb:
        graph = graph_store(tmp_path)
        graph.write([Triple("华法林", "Drug", "METABOLIZED_BY", "CYP2C9", "Enzyme", source="curated.csv:2")])
        engine = FakeEngine(replies=[json.dumps({"triples": []}),
                                     triples(("华法林", "Drug", "METABOLIZED_BY", "CYP2C9", "Enzyme"))])
        report = extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False)
        assert report.written["edges_unchanged"] == 1 and report.written["edges_added"] == 0
        kb.delete(str(tmp_path / "clinical" / "cyp.md"))
        assert extract(kb, graph, engine, graph_name="g", model_name="fake", progress=False).removed == 0
        edge, = graph.neighbors([("Drug", "华法林")], None)
        assert (edge.source, edge.groups) == ("curated.csv:2", ())  # not made clinical, not deleted
        graph.close()


def test_a_model_too_small_to_be_trusted_is_refused_before_anything_is_read(tmp_path):
    _, kb = make_kb(tmp_path)
    with kb:
        tiny = TinyModel(replies=[triples(("阿司匹林", "Drug", "TREATS", "头痛", "Symptom"))])
        with pytest.raises(UsageError, match="too small to be trusted to extract facts.*graph import"):
            extract(kb, None, tiny, graph_name="g", model_name="smollm2", progress=False)
        assert tiny.prompts == []
        with pytest.raises(UsageError, match="not a relation or type name: bad-name"):
            extract(kb, None, FakeEngine(), graph_name="g", model_name="fake", relations=["bad-name"], progress=False)


def test_cli_extract_reports_and_refuses_cleanly(tmp_path, capsys, monkeypatch):
    from lingxi.cli import main

    settings, kb = make_kb(tmp_path)
    kb.close()
    config = tmp_path / "lingxi.toml"
    reply = triples(("阿司匹林", "Drug", "TREATS", "头痛", "Symptom"))
    config.write_text(
        f'home = "{tmp_path / "home"}"\ndefault_embedder = "hash"\ndefault_model = "fake"\n'
        '[embedders.hash]\nengine = "hash"\ndim = 512\n'
        f'[models.fake]\nengine = "fake"\nreplies = {json.dumps([reply, json.dumps({"triples": []}), CYPHER])}\n',
        encoding="utf-8")
    monkeypatch.setenv("LINGXI_CONFIG", str(config))

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, done.value.code, out, err)

    done = run("graph", "extract", "med", "--kb", "med", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["read"], data["kept"], data["edges"]) == (2, 1, 1)
    done = run("graph", "query", "med", "MATCH (d:Drug)-[:TREATS]->(s:Symptom) RETURN d.name, s.name", "--json")
    assert json.loads(done.stdout)["rows"] == [["阿司匹林", "头痛"]]
    # the knowledge base's graph retriever now finds the chunk the fact was read from
    done = run("kb", "search", "med", "阿司匹林治疗什么？", "--mode", "graph", "--json")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert [h["source"] for h in hits] == ["public/labels.md"] and LABELS in hits[0]["text"]
    done = run("graph", "ask", "med", "Which drug treats headache?", "--cypher", "--json")
    data = json.loads(done.stdout)
    assert (data["mode"], data["rows"], data["cypher"]) == ("cypher", [["阿司匹林"]], CYPHER)
    missing = run("graph", "extract", "med", "--kb", "nope")
    assert missing.returncode != 0 and "nope" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_the_bundled_model_is_refused_with_the_way_out(tmp_path, capsys, monkeypatch):
    from lingxi.cli import main

    _, kb = make_kb(tmp_path)
    kb.close()
    config = tmp_path / "lingxi.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\ndefault_embedder = "hash"\n'
                      '[embedders.hash]\nengine = "hash"\ndim = 512\n', encoding="utf-8")
    monkeypatch.setenv("LINGXI_CONFIG", str(config))
    with pytest.raises(SystemExit) as done:
        main(["graph", "extract", "med", "--kb", "med", "--model", "smollm2"])
    _, err = capsys.readouterr()
    assert done.value.code != 0 and "too small to be trusted" in err and "Traceback" not in err
    assert not (tmp_path / "home" / "graphs" / "med").exists()  # refused before the graph was created
    with pytest.raises(SystemExit) as done:
        main(["graph", "ask", "med", "Which drug treats headache?", "--cypher", "--model", "smollm2"])
    _, err = capsys.readouterr()
    assert done.value.code != 0 and "too small to be trusted to write Cypher" in err and "Traceback" not in err
