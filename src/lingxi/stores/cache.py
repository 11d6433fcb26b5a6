"""Where the gateway's answer cache keeps its answers: an in-process dict, an SQLite file, or
Redis/Valkey shared by gateway replicas.

A store holds entries (an answer under its key, written once, expiring after a TTL) and, per
partition (one cache scope), an append-only log of (question, vector) that each gateway
process mirrors in memory and reads incrementally (:meth:`CacheStore.log_since`), so a
semantic lookup costs one small read whatever the backend. The matching itself (exact and
semantic hits, the meaning guard, scoping) is :mod:`lingxi.gateway.cache`'s business.

Backends (``[gateway.cache] backend``): :class:`MemoryCacheStore`, :class:`SQLiteCacheStore`
(default, survives restarts), :class:`RedisCacheStore`; :func:`open_cache_store` picks one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import UpstreamError
from lingxi.stores.connect import connect_redis, open_sqlite, resolve_url, sqlite_tx
from lingxi.stores.migrations import migrate

__all__ = ["CACHE_STORE_ERRORS", "CacheStore", "Entry", "LogItem", "MemoryCacheStore", "RedisCacheStore",
           "SQLiteCacheStore", "open_cache_store"]

#: What a store raises when its backend is unavailable (Redis down, SQLite locked past its
#: timeout); the cache answers such a lookup as a miss.
CACHE_STORE_ERRORS = (UpstreamError, sqlite3.OperationalError)


@dataclass
class Entry:
    """One cached answer as the stores keep it."""

    key: str
    partition: str
    text: str
    vector: np.ndarray | None
    response: dict
    created: float


@dataclass
class LogItem:
    """One line of a partition's append-only log: enough to search, not the answer itself."""

    key: str
    text: str
    vector: np.ndarray | None
    created: float



class CacheStore(ABC):
    """Where answers live. Entries are written once; logs are per partition and append-only."""

    name: str = ""

    @abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (without its vector), or None if absent or expired."""

    @abstractmethod
    async def put(self, entry: Entry) -> None:
        """Store ``entry`` and append it to its partition's log."""

    @abstractmethod
    async def log_since(self, partition: str, cursor: Any) -> tuple[list[LogItem], Any]:
        """Log items of ``partition`` appended after ``cursor`` (None = from the start), and the new cursor."""

    async def close(self) -> None:
        """Release connections. Safe to call twice."""


class MemoryCacheStore(CacheStore):
    """In-process: a dict of entries (oldest evicted past ``max_entries``) and per-partition logs."""

    name = "memory"

    def __init__(self, max_entries: int, ttl_s: float):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._logs: dict[str, deque[tuple[int, LogItem]]] = {}
        self._seq = 0

    async def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.created + self.ttl_s < time.time():
            return None
        return entry

    async def put(self, entry: Entry) -> None:
        self._seq += 1
        self._entries.pop(entry.key, None)
        self._entries[entry.key] = entry
        self._logs.setdefault(entry.partition, deque()).append(
            (self._seq, LogItem(entry.key, entry.text, entry.vector, entry.created)))
        while len(self._entries) > self.max_entries:
            _, old = self._entries.popitem(last=False)
            log = self._logs.get(old.partition)
            while log and log[0][1].key not in self._entries:
                log.popleft()
            if log is not None and not log:
                del self._logs[old.partition]

    async def log_since(self, partition: str, cursor: Any) -> tuple[list[LogItem], Any]:
        log = self._logs.get(partition, ())
        start = cursor or 0
        items = [item for seq, item in log if seq > start]
        return items, (log[-1][0] if log else start)


def _m001_cache(db: Any) -> None:
    db.execute("""CREATE TABLE IF NOT EXISTS cache_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, partition TEXT NOT NULL,
        text TEXT NOT NULL, vector BLOB, response TEXT NOT NULL, created REAL NOT NULL)""")
    db.execute("CREATE INDEX IF NOT EXISTS cache_entries_partition ON cache_entries (partition, id)")
    db.execute("CREATE INDEX IF NOT EXISTS cache_entries_created ON cache_entries (created)")


#: Ordered schema changes of the SQLite cache store.
CACHE_MIGRATIONS = [_m001_cache]


class SQLiteCacheStore(CacheStore):
    """One SQLite file (WAL): survives restarts; for one host. Calls run in a worker thread."""

    name = "sqlite"

    def __init__(self, path: Path, max_entries: int, ttl_s: float):
        self.path = Path(path)
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, durable=False, busy_timeout_s=10)
        migrate(self._db, "cache", CACHE_MIGRATIONS)
        self._puts = 0

    def _run(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    async def get(self, key: str) -> Entry | None:
        return await asyncio.to_thread(self._run, self._get, key)

    def _get(self, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT partition, text, response, created FROM cache_entries WHERE key = ? AND created >= ?",
            (key, time.time() - self.ttl_s)).fetchone()
        if row is None:
            return None
        return Entry(key, row[0], row[1], None, json.loads(row[2]), row[3])

    async def put(self, entry: Entry) -> None:
        await asyncio.to_thread(self._run, self._put, entry)

    def _put(self, entry: Entry) -> None:
        blob = None if entry.vector is None else np.asarray(entry.vector, dtype=np.float32).tobytes()
        with sqlite_tx(self._db):
            self._db.execute("DELETE FROM cache_entries WHERE key = ?", (entry.key,))
            self._db.execute(
                "INSERT INTO cache_entries (key, partition, text, vector, response, created) VALUES (?, ?, ?, ?, ?, ?)",
                (entry.key, entry.partition, entry.text, blob, json.dumps(entry.response, ensure_ascii=False),
                 entry.created))
            count = self._db.execute("SELECT count(*) FROM cache_entries WHERE partition = ?",
                                     (entry.partition,)).fetchone()[0]
            if count > self.max_entries:
                self._db.execute(
                    "DELETE FROM cache_entries WHERE id IN (SELECT id FROM cache_entries WHERE partition = ? "
                    "ORDER BY id LIMIT ?)", (entry.partition, count - self.max_entries))
            self._puts += 1
            if self._puts % 100 == 1:  # expired answers are never served; delete them now and then
                self._db.execute("DELETE FROM cache_entries WHERE created < ?", (time.time() - self.ttl_s,))

    async def log_since(self, partition: str, cursor: Any) -> tuple[list[LogItem], Any]:
        return await asyncio.to_thread(self._run, self._log_since, partition, cursor)

    def _log_since(self, partition: str, cursor: Any) -> tuple[list[LogItem], Any]:
        rows = self._db.execute(
            "SELECT id, key, text, vector, created FROM cache_entries WHERE partition = ? AND id > ? ORDER BY id",
            (partition, cursor or 0)).fetchall()
        items = [LogItem(key, text, None if blob is None else np.frombuffer(blob, dtype=np.float32), created)
                 for _, key, text, blob, created in rows]
        return items, (rows[-1][0] if rows else cursor or 0)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisCacheStore(CacheStore):
    """Redis/Valkey, shared by gateway replicas.

    Answers are JSON strings under ``<prefix>e:<key>`` with the TTL as Redis expiry; each
    partition's log is a Redis stream ``<prefix>s:<partition>`` (capped near ``max_entries``,
    its own expiry renewed on each write), read incrementally with an exclusive ``XRANGE``.
    """

    name = "redis"

    def __init__(self, url: str, prefix: str, max_entries: int, ttl_s: int):
        self.url = url
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl_s = int(ttl_s)
        self._redis = connect_redis(url, decode_responses=False, what="the redis cache backend")

    async def _call(self, coro: Any) -> Any:
        import redis

        try:
            return await coro
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise UpstreamError(self.url, f"cache server unreachable: {exc}", retryable=True) from exc

    async def get(self, key: str) -> Entry | None:
        raw = await self._call(self._redis.get(f"{self.prefix}e:{key}"))
        if raw is None:
            return None
        data = json.loads(raw)
        return Entry(key, data["p"], data["t"], None, data["r"], data["c"])

    async def put(self, entry: Entry) -> None:
        body = json.dumps({"p": entry.partition, "t": entry.text, "r": entry.response, "c": entry.created},
                          ensure_ascii=False)
        fields: dict[str, Any] = {"k": entry.key, "t": entry.text.encode("utf-8"), "c": repr(entry.created)}
        if entry.vector is not None:
            fields["v"] = np.asarray(entry.vector, dtype=np.float32).tobytes()
        stream = f"{self.prefix}s:{entry.partition}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"{self.prefix}e:{entry.key}", body.encode("utf-8"), ex=self.ttl_s)
        pipe.xadd(stream, fields, maxlen=self.max_entries, approximate=True)
        pipe.expire(stream, self.ttl_s)
        await self._call(pipe.execute())

    async def log_since(self, partition: str, cursor: Any) -> tuple[list[LogItem], Any]:
        start = b"(" + cursor if cursor else b"-"
        rows = await self._call(self._redis.xrange(f"{self.prefix}s:{partition}", min=start, max=b"+"))
        items = []
        for _, f in rows:
            vector = np.frombuffer(f[b"v"], dtype=np.float32) if b"v" in f else None
            items.append(LogItem(f[b"k"].decode(), f[b"t"].decode("utf-8"), vector, float(f[b"c"])))
        return items, (rows[-1][0] if rows else cursor)

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache_store(settings: Any) -> CacheStore:
    """The store ``settings.gateway.cache.backend`` names.

    Raises:
        ConfigError: the redis backend has no URL (neither ``gateway.cache.redis_url`` nor ``$LINGXI_REDIS_URL``).
        MissingExtraError: the backend's driver is not installed.
    """
    cfg = settings.gateway.cache
    if cfg.backend == "memory":
        return MemoryCacheStore(cfg.max_entries, cfg.ttl_s)
    if cfg.backend == "sqlite":
        path = Path(cfg.sqlite_path).expanduser() if cfg.sqlite_path else settings.home_dir / "gateway" / "cache.sqlite"
        return SQLiteCacheStore(path, cfg.max_entries, cfg.ttl_s)
    url = resolve_url(cfg.redis_url, "LINGXI_REDIS_URL", what="gateway.cache.redis_url",
                      needed_for="backend 'redis'", source=settings.source)
    return RedisCacheStore(url, cfg.redis_prefix, cfg.max_entries, cfg.ttl_s)
