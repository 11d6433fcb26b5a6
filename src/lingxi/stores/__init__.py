"""Persistence for every capability: one layer, each interface with an embedded backend and a
scale-out backend side by side, tested by one suite run against both.

Layout (one module per kind of thing stored; the interface first, then its backends)::

    connect.py          resolve_url (config, then environment), state_url, open_sqlite, sqlite_tx,
                        connect_pg(_async), connect_redis, connect_falkordb
    migrations.py       migrate(conn, store_name, steps): ordered steps recorded in lingxi_migrations
    keys.py             API keys        SQLite file         | Redis, PostgreSQL
    limits.py           quota counters  in-process          | Redis, PostgreSQL
    cache.py            answer cache    in-process, SQLite  | Redis
    feedback.py         thumbs up/down  SQLite file         | PostgreSQL
    knowledge.py        knowledge-base store interface (documents, chunks, BM25, dense)
    knowledge_sqlite.py   embedded: SQLite + bm25s + numpy/hnswlib
    knowledge_pg.py       scale-out: PostgreSQL + pgvector + a BM25 index kept by ingest
    embeddings.py       embedding cache by content hash (SQLite, per machine)
    graph.py            knowledge graphs    graph_kuzu.py (Kùzu) | graph_falkordb.py (FalkorDB)
    datasets.py         (next) training datasets and their versions, for the tuning recipes

The audit log (:mod:`lingxi.audit`, SQLite | PostgreSQL) keeps its hash-chain logic with the
audit package and gets its connections and migrations from here, as any store may.

Where a new store goes: a new module here named after what it stores (``audit.py``,
``datasets.py``), holding a small interface (an ABC with a handful of methods), its embedded
backend (SQLite through :func:`~lingxi.stores.connect.open_sqlite`, one file under
``settings.home_dir``) and its scale-out backend (PostgreSQL through
:func:`~lingxi.stores.connect.connect_pg`, or Redis through
:func:`~lingxi.stores.connect.connect_redis`), an ``open_*`` function that picks the backend
from config, and one migration list per SQL backend run with
:func:`~lingxi.stores.migrations.migrate`. Gateway state (keys, limits, feedback, audit)
follows ``gateway.state``; its URLs come from :func:`~lingxi.stores.connect.state_url`.
Its tests are one suite parametrised over both backends (see ``tests/test_stores_*.py``).

What this package does not hold: policy (who may read what, when a request may be cached,
how answers are ranked) — that stays with the capability that uses the store.

Importing this package is cheap; backends load their drivers when opened.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "resolve_url": "lingxi.stores.connect",
    "state_url": "lingxi.stores.connect",
    "open_sqlite": "lingxi.stores.connect",
    "sqlite_tx": "lingxi.stores.connect",
    "connect_pg": "lingxi.stores.connect",
    "connect_pg_async": "lingxi.stores.connect",
    "connect_redis": "lingxi.stores.connect",
    "connect_falkordb": "lingxi.stores.connect",
    "migrate": "lingxi.stores.migrations",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lingxi.stores' has no attribute {name!r}")
