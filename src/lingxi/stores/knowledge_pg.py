"""The scale-out store: PostgreSQL with pgvector (vectors, HNSW index) and Postgres full text.

Each knowledge base lives in its own schema (``lingxi_kb_<name>``), so several gateway
replicas and ingest workers share one database. Text is tokenised in Python exactly as in the
embedded store (jieba for Chinese, Snowball stems for English) and stored as a ``simple``
tsvector, so Chinese full text needs no Postgres extension; ranking is ``ts_rank_cd``.
Access control and metadata filters are part of every SQL query (groups are denormalised onto
the chunk rows, so the HNSW scan filters while it walks, with pgvector's iterative scan).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lingxi.errors import UsageError, missing_extra
from lingxi.stores.knowledge import DocRecord, KnowledgeStore, Scored
from lingxi.knowledge.types import Chunk, Document, Hit
from lingxi.stores.connect import connect_pg
from lingxi.stores.migrations import migrate


def _m1(cur: Any) -> None:
    cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cur.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value JSONB NOT NULL)")
    cur.execute("""CREATE TABLE IF NOT EXISTS documents (
        doc_no BIGINT PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL, title TEXT NOT NULL,
        file_hash TEXT NOT NULL, metadata JSONB NOT NULL DEFAULT '{}', groups TEXT[] NOT NULL DEFAULT '{}',
        ingested_at DOUBLE PRECISION NOT NULL)""")
    cur.execute("""CREATE TABLE IF NOT EXISTS chunks (
        id TEXT PRIMARY KEY, doc_no BIGINT NOT NULL REFERENCES documents(doc_no) ON DELETE CASCADE,
        text TEXT NOT NULL, context TEXT NOT NULL, headings JSONB NOT NULL, page INT, hash TEXT NOT NULL,
        tsv TSVECTOR NOT NULL, embedding vector NOT NULL, groups TEXT[] NOT NULL DEFAULT '{}',
        metadata JSONB NOT NULL DEFAULT '{}')""")
    cur.execute("CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_no)")
    cur.execute("CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash)")
    cur.execute("CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin(tsv)")
    cur.execute("CREATE INDEX IF NOT EXISTS chunks_groups ON chunks USING gin(groups)")
    cur.execute("CREATE SEQUENCE IF NOT EXISTS doc_no_seq")


#: Schema changes in order (see :mod:`lingxi.stores.migrations`); a knowledge base's steps are
#: recorded in its own schema.
MIGRATIONS: list[Callable[[Any], None]] = [_m1]


def schema_name(kb: str) -> str:
    safe = re.sub(r"[^a-z0-9_]", "_", kb.lower())[:40]
    return f"lingxi_kb_{safe}_{hashlib.sha256(kb.encode()).hexdigest()[:8]}"


class PgKnowledgeStore(KnowledgeStore):
    backend = "postgres"

    def __init__(self, url: str, name: str, *, create: bool = False):
        try:
            from pgvector.psycopg import register_vector
        except ImportError as exc:
            raise missing_extra("the postgres knowledge store", "pg", exc) from exc
        self.name = name
        self.schema = schema_name(name)
        self._lock = threading.RLock()
        self._conn = connect_pg(url, what="the postgres knowledge store")
        with self._conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self._conn)
        exists = self._conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name=%s",
                                    (self.schema,)).fetchone()
        if not exists and not create:
            raise UsageError(f"knowledge base '{name}' has no data in PostgreSQL (schema {self.schema} is missing)")
        self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self._conn.execute(f'SET search_path TO "{self.schema}", public')
        self._conn.execute("SET hnsw.iterative_scan = relaxed_order")
        migrate(self._conn, "knowledge", MIGRATIONS)
        self._has_hnsw = False

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ------------------------------------------------------------ metadata

    def meta(self) -> dict[str, Any]:
        return {k: v for k, v in self._q("SELECT key, value FROM meta")}

    def set_meta(self, updates: dict[str, Any]) -> None:
        with self._lock, self._conn.transaction():
            for k, v in updates.items():
                self._conn.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                                   (k, json.dumps(v, ensure_ascii=False)))

    def version(self) -> str:
        row = self._q("SELECT value FROM meta WHERE key='version'")
        return row[0][0] if row else ""

    def _bump(self) -> None:
        self._conn.execute("INSERT INTO meta VALUES ('version', %s) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                           (json.dumps(uuid.uuid4().hex[:16]),))

    # ------------------------------------------------------------ documents

    def documents(self) -> list[DocRecord]:
        rows = self._q("SELECT d.doc_no, d.key, d.source, d.title, d.file_hash, d.groups, COUNT(c.id) FROM documents d "
                       "LEFT JOIN chunks c ON c.doc_no = d.doc_no GROUP BY d.doc_no ORDER BY d.doc_no")
        return [DocRecord(r[0], r[1], r[2], r[3], r[4], list(r[5]), r[6]) for r in rows]

    def find_document(self, ref: str) -> DocRecord | None:
        for d in self.documents():
            if ref in (d.key, d.source, str(d.doc_no)):
                return d
        return None

    def reserve_doc_no(self, key: str) -> int:
        row = self._q("SELECT doc_no FROM documents WHERE key=%s", (key,))
        if row:
            return int(row[0][0])
        return int(self._q("SELECT nextval('doc_no_seq')")[0][0])

    def vectors_for(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        rows = self._q("SELECT DISTINCT ON (hash) hash, embedding FROM chunks WHERE hash = ANY(%s)",
                       (list(set(hashes)),))
        return {h: np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32) for h, v in rows}

    def replace_document(self, doc: Document, doc_no: int, file_hash: str, groups: list[str],
                         chunks: list[Chunk], vectors: np.ndarray, tokens: list[list[str]]) -> tuple[int, int]:
        meta = {**doc.metadata, "source": doc.source, "title": doc.title, "doc": str(doc_no), "key": doc.key}
        with self._lock, self._conn.transaction():
            old = set(self._conn.execute("SELECT id, hash FROM chunks WHERE doc_no=%s", (doc_no,)).fetchall())
            new = {(c.id, c.hash) for c in chunks}
            self._conn.execute(
                "INSERT INTO documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (doc_no) DO UPDATE SET "
                "key=excluded.key, source=excluded.source, title=excluded.title, file_hash=excluded.file_hash, "
                "metadata=excluded.metadata, groups=excluded.groups, ingested_at=excluded.ingested_at",
                (doc_no, doc.key, doc.source, doc.title, file_hash, json.dumps(doc.metadata, ensure_ascii=False),
                 sorted(groups), time.time()))
            gone = old - new
            if gone:
                self._conn.execute("DELETE FROM chunks WHERE id = ANY(%s)", ([i for i, _ in gone],))
            keep = {i for i, _ in old & new}
            # Unchanged chunks still take the document's current groups and metadata.
            self._conn.execute("UPDATE chunks SET groups=%s, metadata=%s WHERE doc_no=%s",
                               (sorted(groups), json.dumps(meta, ensure_ascii=False), doc_no))
            rows = [(c.id, doc_no, c.text, c.context, json.dumps(c.headings, ensure_ascii=False), c.page, c.hash,
                     " ".join(t), np.asarray(vectors[i], dtype=np.float32), sorted(groups),
                     json.dumps(meta, ensure_ascii=False))
                    for i, (c, t) in enumerate(zip(chunks, tokens, strict=True)) if c.id not in keep]
            if rows:
                with self._conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO chunks (id, doc_no, text, context, headings, page, hash, tsv, embedding, groups, "
                        "metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, to_tsvector('simple', %s), %s, %s, %s)", rows)
            self._bump()
            return len(new - old), len(gone)

    def delete_document(self, doc_no: int) -> int:
        with self._lock, self._conn.transaction():
            n = self._conn.execute("SELECT COUNT(*) FROM chunks WHERE doc_no=%s", (doc_no,)).fetchone()[0]
            self._conn.execute("DELETE FROM documents WHERE doc_no=%s", (doc_no,))
            self._bump()
            return int(n)

    def set_file_hash(self, doc_nos: Sequence[int], file_hash: str) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute("UPDATE documents SET file_hash=%s WHERE doc_no = ANY(%s)", (file_hash, list(doc_nos)))

    def prepare(self) -> None:
        dim = int(self.meta().get("dim") or 0)
        if dim and not self._has_hnsw:
            with self._lock, self._conn.transaction():
                # The graph is built much faster when it fits in memory.
                self._conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
                self._conn.execute(f"CREATE INDEX IF NOT EXISTS chunks_hnsw ON chunks USING hnsw "
                                   f"((embedding::vector({dim})) vector_cosine_ops)")
            self._has_hnsw = True

    # ------------------------------------------------------------ search

    @staticmethod
    def _where(groups: list[str] | None, filters: dict | None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if groups is not None:
            clauses.append("(cardinality(groups) = 0 OR groups && %s::text[])")
            args.append(list(groups))
        for key, want in (filters or {}).items():
            if isinstance(want, (list, tuple, set)):  # JSON equality, as in SQLite: 2 is not "2", true not "True"
                clauses.append("metadata->%s = ANY(%s::jsonb[])")
                args += [key, [json.dumps(w, ensure_ascii=False) for w in want]]
            else:
                clauses.append("metadata @> %s::jsonb")
                args.append(json.dumps({key: want}, ensure_ascii=False))
        return (" AND ".join(clauses) or "TRUE"), args

    @staticmethod
    def _tsquery(tokens: list[str]) -> str:
        return " | ".join("'" + t.replace("'", "''").replace("\\", "\\\\") + "'" for t in dict.fromkeys(tokens))

    def search_bm25(self, tokens: list[str], k: int, groups: list[str] | None, filters: dict | None) -> Scored:
        if not tokens:
            return []
        where, args = self._where(groups, filters)
        rows = self._q(f"SELECT id, ts_rank_cd(tsv, q, 1) AS s FROM chunks, to_tsquery('simple', %s) q "
                       f"WHERE tsv @@ q AND {where} ORDER BY s DESC, id LIMIT %s", [self._tsquery(tokens), *args, k])
        return [(i, float(s)) for i, s in rows]

    def search_dense(self, vector: np.ndarray, k: int, groups: list[str] | None, filters: dict | None) -> Scored:
        dim = int(self.meta().get("dim") or 0)
        if not dim:
            return []
        self.prepare()
        where, args = self._where(groups, filters)
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._lock, self._conn.transaction():
            self._conn.execute("SET LOCAL hnsw.ef_search = %s" % max(40, min(1000, 2 * k)))
            rows = self._conn.execute(
                f"SELECT id, 1 - (embedding::vector({dim}) <=> %s::vector({dim})) FROM chunks WHERE {where} "
                f"ORDER BY embedding::vector({dim}) <=> %s::vector({dim}) LIMIT %s", [v, *args, v, k]).fetchall()
        return [(i, float(s)) for i, s in rows]

    def score(self, ids: Sequence[str], tokens: list[str], vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not ids:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        q = self._tsquery(tokens) if tokens else ""
        rows = self._q("SELECT id, CASE WHEN %s = '' THEN 0 ELSE ts_rank_cd(tsv, to_tsquery('simple', %s), 1) END, "
                       "1 - (embedding <=> %s) FROM chunks WHERE id = ANY(%s)",
                       (q, q or "x", np.asarray(vector, dtype=np.float32).reshape(-1), list(ids)))
        by = {i: (b, d) for i, b, d in rows}
        b = np.array([by.get(i, (0.0, 0.0))[0] for i in ids], dtype=np.float32)
        d = np.array([by.get(i, (0.0, 0.0))[1] for i in ids], dtype=np.float32)
        return b, d

    def hits(self, scored: Scored) -> list[Hit]:
        if not scored:
            return []
        rows = self._q("SELECT c.id, c.doc_no, d.source, d.title, c.text, c.headings, c.page FROM chunks c "
                       "JOIN documents d ON d.doc_no = c.doc_no WHERE c.id = ANY(%s)", ([i for i, _ in scored],))
        by_id = {r[0]: r for r in rows}
        return [Hit(id=cid, doc=str(r[1]), source=r[2], title=r[3], text=r[4], score=score, headings=list(r[5]),
                    page=r[6]) for cid, score in scored if (r := by_id.get(cid))]

    def stats(self) -> dict[str, Any]:
        docs, chunks = self._q("SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)")[0]
        size = self._q("SELECT COALESCE(SUM(pg_total_relation_size(format('%%I.%%I', schemaname, tablename))), 0) "
                       "FROM pg_tables WHERE schemaname = %s", (self.schema,))[0][0]
        return {"documents": int(docs), "chunks": int(chunks), "bytes_on_disk": int(size), "vector_index": "hnsw"}

    def close(self) -> None:
        with self._lock:
            if not self._conn.closed:
                self._conn.close()

    def drop(self) -> None:
        with self._lock:
            self._conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.close()

