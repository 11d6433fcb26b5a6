"""The PostgreSQL knowledge store's BM25 index (kept by ingest) against the embedded store's
bm25s: the same scores, never stale between an ingest and its prepare(), and knowledge bases
stored before the index existed adopt it. Needs a real PostgreSQL (slow tier)."""

from __future__ import annotations

import numpy as np
import pytest
from kb_fixtures.helpers import kb_settings, make_folder
from store_servers import pg_url

from lingxi.knowledge import create_kb
from lingxi.knowledge.types import Block, Chunk, Document
from lingxi.stores.connect import connect_pg
from lingxi.stores.knowledge_pg import MIGRATIONS, PgKnowledgeStore, schema_name
from lingxi.stores.migrations import migrate
from lingxi.text import tokenize

pytestmark = pytest.mark.slow

QUERIES = ["notice period resignation", "违约金 合同", "revenue quarter", "parking visitors lot", "差旅报销发票",
           "firewall port dashboard", "annual leave days"]


def test_postgres_bm25_scores_what_the_embedded_store_scores(tmp_path, tmp_path_factory):
    folder = make_folder(tmp_path / "docs")
    embedded = create_kb("parity", kb_settings(tmp_path / "a"))
    scaled = create_kb("parity", kb_settings(tmp_path / "b", "postgres", pg_url(tmp_path_factory)))
    try:
        for kb in (embedded, scaled):
            kb.ingest([folder], progress=False)
        for query in QUERIES:
            a = embedded.search_ids(query, mode="bm25", k=5)
            b = scaled.search_ids(query, mode="bm25", k=5)
            assert a and [i for i, _ in a] == [i for i, _ in b], query
            np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)
            # hybrid fuses the same BM25 scores on both stores
            assert scaled.search_ids(query, mode="hybrid", k=3, learn=False)
    finally:
        embedded.drop()
        scaled.drop()


def _chunk(doc: str, n: int, text: str) -> Chunk:
    return Chunk(id=f"{doc}-{n}", text=text, hash=f"{doc}-{n}-{len(text)}")


def test_a_search_between_an_ingest_and_its_prepare_sees_the_change(tmp_path_factory):
    store = PgKnowledgeStore(pg_url(tmp_path_factory), "stale", create=True)
    try:
        store.set_meta({"dim": 4})
        doc = Document("d1", "d1.txt", "D1", [Block("违约金为合同金额的百分之五。")])
        texts = ["违约金为合同金额的百分之五。", "年假为十五天。"]
        chunks = [_chunk("d1", i, t) for i, t in enumerate(texts)]
        store.replace_document(doc, 1, "h1", [], chunks, np.ones((2, 4), np.float32), [tokenize(t) for t in texts])
        assert [i for i, _ in store.search_bm25(tokenize("违约金"), 5, None, None)] == ["d1-0"]
        store.prepare()
        store.replace_document(doc, 1, "h2", [], chunks[1:], np.ones((1, 4), np.float32), [tokenize(texts[1])])
        assert store.search_bm25(tokenize("违约金"), 5, None, None) == []  # removed, not yet re-packed
        store.prepare()
        assert store.search_bm25(tokenize("违约金"), 5, None, None) == []
        assert [i for i, _ in store.search_bm25(tokenize("年假"), 5, ["hr"], None)] == ["d1-1"]  # public chunk
        store.delete_document(1)
        assert store.search_bm25(tokenize("年假"), 5, None, None) == []
    finally:
        store.drop()


def test_a_knowledge_base_stored_before_the_bm25_index_adopts_it(tmp_path_factory):
    url, name = pg_url(tmp_path_factory), "legacy"
    conn = connect_pg(url)
    schema = schema_name(name)
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(f'SET search_path TO "{schema}", public')
    migrate(conn, "knowledge", MIGRATIONS[:1])  # the schema as the first release made it
    conn.execute("INSERT INTO documents VALUES (1, 'd1', 'd1.txt', 'D1', 'h', '{}', '{}', 0)")
    conn.execute("INSERT INTO chunks (id, doc_no, text, context, headings, page, hash, tsv, embedding) VALUES "
                 "('d1-0', 1, 'x', '', '[]', NULL, 'h', to_tsvector('simple', %s), '[1,0,0,0]')",
                 (" ".join(tokenize("The notice period for resignation is thirty days.")),))
    conn.close()
    store = PgKnowledgeStore(url, name)
    try:
        assert [i for i, _ in store.search_bm25(tokenize("notice period"), 5, None, None)] == ["d1-0"]
        store.prepare()
        assert [i for i, _ in store.search_bm25(tokenize("resignation"), 5, None, None)] == ["d1-0"]
    finally:
        store.drop()
