"""Embeddings cached by content hash, shared by every knowledge base on this machine.

Keyed by (embedder identity, sha256 of the embedded text): re-ingesting an unchanged chunk, or
the same chunk in another knowledge base, or a retrieval evaluation run twice, costs no model
call. Each batch is committed as soon as it is embedded, so an ingest killed half-way keeps
the work it did.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.stores.connect import open_sqlite, sqlite_tx
from lingxi.stores.migrations import migrate


def embedder_key(name: str, config_json: str) -> str:
    return f"{name}:{hashlib.sha256(config_json.encode()).hexdigest()[:12]}"


def _m001_embeddings(db: Any) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, hash TEXT NOT NULL, "
               "vector BLOB NOT NULL, PRIMARY KEY (model, hash)) WITHOUT ROWID")


EMBEDDING_MIGRATIONS = [_m001_embeddings]


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self._db = open_sqlite(path)
        migrate(self._db, "embeddings", EMBEDDING_MIGRATIONS)
        self._lock = threading.Lock()

    def get(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        with self._lock:
            for i in range(0, len(unique), 500):
                part = unique[i:i + 500]
                rows = self._db.execute(
                    f"SELECT hash, vector FROM embeddings WHERE model=? AND hash IN ({','.join('?' * len(part))})",
                    [model, *part]).fetchall()
                out.update((h, np.frombuffer(v, dtype=np.float32)) for h, v in rows)
        return out

    def put(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock, sqlite_tx(self._db):
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                                 [(model, h, vectors[i].tobytes()) for i, h in enumerate(hashes)])

    def embed(self, model: str, texts: Sequence[str], hashes: Sequence[str],
              embed_fn: Callable[[list[str]], np.ndarray], *, batch_size: int = 64,
              progress: Callable[[int], None] | None = None) -> tuple[dict[str, np.ndarray], int]:
        """Vectors for ``hashes`` (cached or newly embedded from ``texts``); returns them and how
        many texts were embedded now."""
        have = self.get(model, hashes)
        todo: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in have:
                todo.setdefault(h, t)
        items = list(todo.items())
        if progress and have:
            progress(len(have))  # found in the cache: done (a bar left at 0/485 would read as stuck)
        for i in range(0, len(items), batch_size):
            part = items[i:i + batch_size]
            vecs = embed_fn([t for _, t in part])
            self.put(model, [h for h, _ in part], vecs)
            have.update((h, vecs[j]) for j, (h, _) in enumerate(part))
            if progress:
                progress(len(part))
        return have, len(items)

    def close(self) -> None:
        with self._lock:
            self._db.close()
