"""The embedded store: SQLite holds documents, chunks, tokens and vectors (the source of truth);
a BM25 index (bm25s) and a vector index (exact numpy below ``ann_threshold`` chunks, hnswlib
HNSW above) are derived from it and saved next to it, stamped with the content version.

Why this is crash-safe: every document is replaced in one SQLite transaction (WAL), and the
derived indexes are written to temporary names and renamed. After a kill -9 the database holds
every document that was committed and nothing half-written; an index whose version stamp does
not match the database is simply rebuilt from it on next use.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import missing_extra
from lingxi.stores.knowledge import PARTIAL_WIDER, DocRecord, KnowledgeStore, Scored, matches
from lingxi.knowledge.tree import TreeNode
from lingxi.knowledge.types import Chunk, Document, Hit
from lingxi.stores.connect import open_sqlite, sqlite_tx
from lingxi.stores.migrations import migrate


def _m1(db: sqlite3.Connection) -> None:
    _script(db, """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS documents (
            doc_no INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
            title TEXT NOT NULL, file_hash TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
            groups TEXT NOT NULL DEFAULT '[]', ingested_at REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS chunks (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            doc_no INTEGER NOT NULL REFERENCES documents(doc_no) ON DELETE CASCADE,
            text TEXT NOT NULL, context TEXT NOT NULL, headings TEXT NOT NULL, page INTEGER,
            hash TEXT NOT NULL, tokens TEXT NOT NULL, vector BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_no);
        CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash);
        """)


def _script(db: sqlite3.Connection, sql: str) -> None:
    # Statement by statement: executescript() would commit the migration's transaction early.
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m2_tree(db: sqlite3.Connection) -> None:
    # No foreign key: a document's tree is written before its row (see KnowledgeStore.replace_tree).
    _script(db, """
        CREATE TABLE IF NOT EXISTS tree (
            id TEXT PRIMARY KEY, doc_no INTEGER NOT NULL, parent TEXT NOT NULL, ord INTEGER NOT NULL,
            title TEXT NOT NULL, text TEXT NOT NULL, summary TEXT NOT NULL, hash TEXT NOT NULL,
            summary_key TEXT NOT NULL, chunks TEXT NOT NULL, page INTEGER, groups TEXT NOT NULL DEFAULT '[]');
        CREATE INDEX IF NOT EXISTS tree_doc ON tree(doc_no);
        CREATE INDEX IF NOT EXISTS tree_summary ON tree(summary_key);
        """)


#: Schema changes, in order (see :mod:`lingxi.stores.migrations`).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1, _m2_tree]


class _Index:
    """Search structures for one content version, built from the database."""

    def __init__(self, version: str, ids: list[str], doc_nos: np.ndarray, vectors: np.ndarray,
                 bm25: Any, hnsw: Any):
        self.version = version
        self.ids = ids
        self.pos = {cid: i for i, cid in enumerate(ids)}
        self.doc_nos = doc_nos
        self.vectors = vectors
        self.bm25 = bm25
        self.hnsw = hnsw
        self.masks: dict[str, np.ndarray | None] = {}


class SQLiteKnowledgeStore(KnowledgeStore):
    backend = "sqlite"

    def __init__(self, folder: str | Path, *, ann_threshold: int = 20000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ann_threshold = ann_threshold
        self._lock = threading.RLock()
        self._db = open_sqlite(self.folder / "kb.sqlite")
        migrate(self._db, "knowledge", MIGRATIONS)
        self._index: _Index | None = None

    # ------------------------------------------------------------ plumbing

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock, sqlite_tx(self._db):
            return fn(self._db)

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------ metadata

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._q("SELECT key, value FROM meta")}

    def set_meta(self, updates: dict[str, Any]) -> None:
        self._tx(lambda db: db.executemany(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [(k, json.dumps(v, ensure_ascii=False)) for k, v in updates.items()]))

    def version(self) -> str:
        row = self._q("SELECT value FROM meta WHERE key='version'")
        return json.loads(row[0][0]) if row else ""

    # ------------------------------------------------------------ documents

    def documents(self) -> list[DocRecord]:
        rows = self._q(
            "SELECT d.doc_no, d.key, d.source, d.title, d.file_hash, d.groups, COUNT(c.rowid) "
            "FROM documents d LEFT JOIN chunks c ON c.doc_no = d.doc_no GROUP BY d.doc_no ORDER BY d.doc_no")
        return [DocRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def chunk_ids(self, doc_no: int) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM chunks WHERE doc_no = ? ORDER BY rowid", (doc_no,))]

    def reserve_doc_no(self, key: str) -> int:
        def step(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT doc_no FROM documents WHERE key=?", (key,)).fetchone()
            if row:
                return row[0]
            cur = db.execute("SELECT value FROM meta WHERE key='next_doc_no'").fetchone()
            n = json.loads(cur[0]) if cur else 1
            db.execute("INSERT INTO meta VALUES ('next_doc_no', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (json.dumps(n + 1),))
            return n
        return self._tx(step)

    def vectors_for(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), 500):
            part = unique[i:i + 500]
            rows = self._q(f"SELECT hash, vector FROM chunks WHERE hash IN ({','.join('?' * len(part))})", part)
            out.update((h, np.frombuffer(v, dtype=np.float32)) for h, v in rows)
        return out

    def replace_document(self, doc: Document, doc_no: int, file_hash: str, groups: list[str],
                         chunks: list[Chunk], vectors: np.ndarray, tokens: list[list[str]]) -> tuple[int, int]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)

        def step(db: sqlite3.Connection) -> tuple[int, int]:
            old = set(db.execute("SELECT id, hash FROM chunks WHERE doc_no=?", (doc_no,)).fetchall())
            new = {(c.id, c.hash) for c in chunks}
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(doc_no) DO UPDATE SET "
                "key=excluded.key, source=excluded.source, title=excluded.title, file_hash=excluded.file_hash, "
                "metadata=excluded.metadata, groups=excluded.groups, ingested_at=excluded.ingested_at",
                (doc_no, doc.key, doc.source, doc.title, file_hash, json.dumps(doc.metadata, ensure_ascii=False),
                 json.dumps(sorted(groups)), time.time()))
            gone = old - new
            if gone:
                db.executemany("DELETE FROM chunks WHERE id=?", [(i,) for i, _ in gone])
            keep = {i for i, _ in old & new}
            db.executemany(
                "INSERT INTO chunks (id, doc_no, text, context, headings, page, hash, tokens, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(c.id, doc_no, c.text, c.context, json.dumps(c.headings, ensure_ascii=False), c.page, c.hash,
                  " ".join(t), vectors[i].tobytes())
                 for i, (c, t) in enumerate(zip(chunks, tokens, strict=True)) if c.id not in keep])
            self._bump(db)  # also when only groups or metadata changed: caches and ACL masks key on it
            return len(new - old), len(gone)

        return self._tx(step)

    def delete_document(self, doc_no: int) -> int:
        def step(db: sqlite3.Connection) -> int:
            n = db.execute("SELECT COUNT(*) FROM chunks WHERE doc_no=?", (doc_no,)).fetchone()[0]
            db.execute("DELETE FROM chunks WHERE doc_no=?", (doc_no,))
            db.execute("DELETE FROM tree WHERE doc_no=?", (doc_no,))
            db.execute("DELETE FROM documents WHERE doc_no=?", (doc_no,))
            self._bump(db)
            return n
        return self._tx(step)

    def set_file_hash(self, doc_nos: Sequence[int], file_hash: str) -> None:
        self._tx(lambda db: db.executemany("UPDATE documents SET file_hash=? WHERE doc_no=?",
                                           [(file_hash, n) for n in doc_nos]))

    def replace_tree(self, doc_no: int, groups: list[str], nodes: Sequence[TreeNode]) -> None:
        rows = [(n.id, doc_no, n.parent, n.order, n.title, n.text, n.summary, n.hash, n.summary_key,
                 json.dumps(n.chunks), n.page, json.dumps(sorted(groups))) for n in nodes]

        def step(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM tree WHERE doc_no=?", (doc_no,))
            db.executemany("INSERT INTO tree VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._tx(step)

    def tree(self, groups: list[str] | None, doc_nos: Sequence[int] | None = None) -> list[TreeNode]:
        sql = ("SELECT t.id, t.doc_no, t.parent, t.ord, t.title, t.text, t.summary, t.hash, t.summary_key, t.chunks, "
               "t.page, t.groups FROM tree t JOIN documents d ON d.doc_no = t.doc_no")
        args: list[Any] = []
        if doc_nos is not None:
            sql += f" WHERE t.doc_no IN ({','.join('?' * len(doc_nos))})"
            args = list(doc_nos)
        allowed = set(groups) if groups is not None else None
        return [TreeNode(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]), r[10])
                for r in self._q(sql + " ORDER BY t.doc_no, t.ord", args)
                if allowed is None or not (g := json.loads(r[11])) or allowed & set(g)]

    def tree_doc_nos(self) -> set[int]:
        return {int(r[0]) for r in self._q("SELECT DISTINCT doc_no FROM tree", [])}

    def summaries(self, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        unique = [k for k in dict.fromkeys(keys) if k]
        for i in range(0, len(unique), 500):
            part = unique[i:i + 500]
            out.update(self._q(f"SELECT summary_key, summary FROM tree WHERE summary_key IN "
                               f"({','.join('?' * len(part))})", part))
        return out

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta VALUES ('version', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (json.dumps(uuid.uuid4().hex[:16]),))

    # ------------------------------------------------------------ derived indexes

    def prepare(self) -> None:
        self.index()

    def index(self) -> _Index:
        """The search structures for the current version, loaded or rebuilt as needed."""
        version = self.version()
        with self._lock:
            if self._index is None or self._index.version != version:
                self._index = self._load_index(version)
            return self._index

    def _load_index(self, version: str) -> _Index:
        try:
            import bm25s
        except ImportError as exc:
            raise missing_extra("BM25 search", "knowledge", exc) from exc
        rows = self._q("SELECT id, doc_no, vector FROM chunks ORDER BY rowid")
        ids = [r[0] for r in rows]
        doc_nos = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        dim = int(self.meta().get("dim", 0))
        vectors = (np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                   if rows else np.zeros((0, dim), np.float32))
        del rows
        folder = self.folder / "index"
        folder.mkdir(exist_ok=True)
        bm25_dir = folder / f"bm25-{version}"
        bm25 = None
        if ids:
            if bm25_dir.is_dir():
                bm25 = bm25s.BM25.load(str(bm25_dir), load_corpus=False)
            else:
                bm25 = bm25s.BM25()
                bm25.index([(t.split(" ") if t else [""]) for (t,) in self._q("SELECT tokens FROM chunks ORDER BY rowid")],
                           show_progress=False)
                tmp = folder / f".tmp-bm25-{uuid.uuid4().hex[:8]}"
                bm25.save(str(tmp))
                tmp.rename(bm25_dir)
        hnsw = self._hnsw(folder, version, ids, vectors) if len(ids) >= self.ann_threshold else None
        for old in folder.iterdir():  # indexes of older versions are of no further use
            if version not in old.name and not old.name.startswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        return _Index(version, ids, doc_nos, vectors, bm25, hnsw)

    def _hnsw(self, folder: Path, version: str, ids: list[str], vectors: np.ndarray) -> Any:
        try:
            import hnswlib
        except ImportError as exc:
            raise missing_extra("the HNSW vector index", "knowledge", exc) from exc
        path = folder / f"hnsw-{version}.bin"
        index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        if path.is_file():
            index.load_index(str(path), max_elements=len(ids))
        else:
            index.init_index(max_elements=len(ids), ef_construction=100, M=16)
            index.add_items(vectors, np.arange(len(ids)))
            tmp = folder / f".tmp-hnsw-{uuid.uuid4().hex[:8]}"
            index.save_index(str(tmp))
            tmp.rename(path)
        index.set_ef(64)
        return index

    def _mask(self, idx: _Index, groups: list[str] | None, filters: dict | None) -> np.ndarray | None:
        """Which chunk positions the caller may see; None = all."""
        if groups is None and not filters:
            return None
        key = json.dumps([sorted(groups) if groups is not None else None, filters], sort_keys=True, default=str)
        if key not in idx.masks:
            allowed = []
            for doc_no, key_, source, title, metadata, doc_groups in self._q(
                    "SELECT doc_no, key, source, title, metadata, groups FROM documents"):
                g = json.loads(doc_groups)
                if groups is not None and g and not set(g) & set(groups):
                    continue
                meta = {**json.loads(metadata), "source": source, "title": title, "doc": str(doc_no), "key": key_}
                if matches(meta, filters):
                    allowed.append(doc_no)
            idx.masks[key] = np.isin(idx.doc_nos, np.array(allowed, dtype=np.int64))
        return idx.masks[key]

    # ------------------------------------------------------------ search

    @staticmethod
    def _top(scores: np.ndarray, k: int, mask: np.ndarray | None, ids: list[str], floor: float) -> Scored:
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top if scores[i] > floor]

    def _bm25_all(self, idx: _Index, tokens: list[str]) -> np.ndarray:
        vocab = idx.bm25.vocab_dict if idx.bm25 is not None else {}
        known = [vocab[t] for t in tokens if t in vocab]
        if not known:
            return np.zeros(len(idx.ids), dtype=np.float32)
        return idx.bm25.get_scores_from_ids(known)

    def search_bm25(self, tokens: list[str], k: int, groups: list[str] | None, filters: dict | None) -> Scored:
        idx = self.index()
        if not idx.ids:
            return []
        return self._top(self._bm25_all(idx, tokens), k, self._mask(idx, groups, filters), idx.ids, 0.0)

    def search_dense(self, vector: np.ndarray, k: int, groups: list[str] | None, filters: dict | None,
                     partial: bool = False) -> Scored:
        idx = self.index()
        if not idx.ids:
            return []
        mask = self._mask(idx, groups, filters)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if idx.hnsw is not None:
            visible = len(idx.ids) if mask is None else int(mask.sum())
            if visible >= 0.05 * len(idx.ids):
                want = min(visible, k)
                fetch = min(len(idx.ids), (int(k * len(idx.ids) / max(visible, 1)) * 2 + 10) * (PARTIAL_WIDER if partial else 1))
                labels, dist = idx.hnsw.knn_query(vector, k=fetch)
                out = [(idx.ids[i], 1.0 - float(d)) for i, d in zip(labels[0], dist[0], strict=True)
                       if mask is None or mask[i]]
                if len(out) >= want:
                    return out[:k]
            # Few visible chunks: exact search over them is both correct and fast.
            pos = np.flatnonzero(mask) if mask is not None else np.arange(len(idx.ids))
            scores = idx.vectors[pos] @ vector
            top = np.argsort(-scores)[:k]
            return [(idx.ids[pos[i]], float(scores[i])) for i in top]
        return self._top(idx.vectors @ vector, k, mask, idx.ids, -np.inf)

    def visible(self, ids: Sequence[str], groups: list[str] | None, filters: dict | None) -> list[str]:
        idx = self.index()
        mask = self._mask(idx, groups, filters)
        return [i for i in ids if i in idx.pos and (mask is None or mask[idx.pos[i]])]

    def score(self, ids: Sequence[str], tokens: list[str], vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index()
        pos = np.array([idx.pos[i] for i in ids], dtype=np.int64)
        if len(pos) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        vocab = idx.bm25.vocab_dict
        known = [vocab[t] for t in tokens if t in vocab]
        bm = (idx.bm25.get_scores_from_ids(known)[pos] if known else np.zeros(len(pos), np.float32))
        dense = idx.vectors[pos] @ np.asarray(vector, dtype=np.float32).reshape(-1)
        return np.asarray(bm, dtype=np.float32), dense

    def hits(self, scored: Scored) -> list[Hit]:
        if not scored:
            return []
        ids = [i for i, _ in scored]
        rows = self._q(
            "SELECT c.id, c.doc_no, d.source, d.title, c.text, c.headings, c.page FROM chunks c "
            f"JOIN documents d ON d.doc_no = c.doc_no WHERE c.id IN ({','.join('?' * len(ids))})", ids)
        by_id = {r[0]: r for r in rows}
        return [Hit(id=cid, doc=str(r[1]), source=r[2], title=r[3], text=r[4], score=score,
                    headings=json.loads(r[5]), page=r[6])
                for cid, score in scored if (r := by_id.get(cid))]

    def stats(self) -> dict[str, Any]:
        docs, chunks = self._q("SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)")[0]
        size = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
        return {"documents": docs, "chunks": chunks, "bytes_on_disk": size,
                "vector_index": "hnsw" if chunks >= self.ann_threshold else "exact"}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
