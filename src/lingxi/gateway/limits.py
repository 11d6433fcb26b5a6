"""Quotas and rate limits per API key: requests and tokens per minute and per day.

Fixed windows (the current minute, the current UTC day). A request is counted when it is
admitted; its tokens are counted when it finishes, because a completion's length is not known
before it is generated. So a token limit stops the *next* request once the window is spent.
A refused request is not counted. Refusals raise :class:`RateLimitError` with the seconds until
the window that refused it resets (the HTTP layer sends them as ``Retry-After``).

Backends: :class:`MemoryLimiter` (one gateway process); :class:`RedisLimiter` (atomic INCR with
expiry) and :class:`PostgresLimiter` (atomic upsert) share counters between replicas.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from lingxi.errors import RateLimitError
from lingxi.gateway.keys import ApiKey, Limits
from lingxi.stores.connect import connect_pg, connect_pg_async, connect_redis, state_url
from lingxi.stores.migrations import migrate

#: window name -> seconds
WINDOWS = {"minute": 60, "day": 86400}


def _checks(limits: Limits) -> list[tuple[str, str, int]]:
    """(window, counter, limit) for every limit that is set."""
    out = []
    for window, req, tok in (("minute", limits.rpm, limits.tpm), ("day", limits.rpd, limits.tpd)):
        if req:
            out.append((window, "req", req))
        if tok:
            out.append((window, "tok", tok))
    return out


def _refuse(key: ApiKey, window: str, counter: str, limit: int, now: float) -> RateLimitError:
    seconds = WINDOWS[window]
    retry = math.ceil(seconds - now % seconds)
    what = "requests" if counter == "req" else "tokens"
    return RateLimitError(
        f"rate limit reached for key {key.id} (tenant '{key.tenant}'): {limit} {what} per {window}; "
        f"retry in {retry} s",
        retry_after_s=retry,
    )


class Limiter(ABC):
    @abstractmethod
    async def admit(self, key: ApiKey) -> None:
        """Count one request, or raise RateLimitError if any of the key's limits is spent."""

    @abstractmethod
    async def add_tokens(self, key: ApiKey, tokens: int) -> None:
        """Count the tokens of a finished request."""

    async def close(self) -> None:
        """Release connections."""


class MemoryLimiter(Limiter):
    """Counters in this process. Old windows are dropped as time moves on."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, int], int] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0

    def _index(self, window: str, now: float) -> int:
        return int(now // WINDOWS[window])

    def _prune(self, now: float) -> None:
        minute = int(now // 60)
        if minute == self._pruned_at:
            return
        self._pruned_at = minute
        current = {w: self._index(w, now) for w in WINDOWS}
        self._counts = {k: v for k, v in self._counts.items() if k[3] == current[k[1]]}

    async def admit(self, key):
        checks = _checks(key.limits)
        if not checks:
            return
        now = time.time()
        with self._lock:
            self._prune(now)
            for window, counter, limit in checks:
                used = self._counts.get((key.id, window, counter, self._index(window, now)), 0)
                if used >= limit:  # requests: this one would be one too many; tokens: none left
                    raise _refuse(key, window, counter, limit, now)
            for window, counter, _ in checks:
                if counter == "req":
                    slot = (key.id, window, counter, self._index(window, now))
                    self._counts[slot] = self._counts.get(slot, 0) + 1

    async def add_tokens(self, key, tokens):
        if not tokens or not (key.limits.tpm or key.limits.tpd):
            return
        now = time.time()
        with self._lock:
            for window in WINDOWS:
                slot = (key.id, window, "tok", self._index(window, now))
                self._counts[slot] = self._counts.get(slot, 0) + tokens


class RedisLimiter(Limiter):
    """Counters in Redis/Valkey: ``{prefix}rl:{key}:{window}:{counter}:{index}`` with expiry."""

    def __init__(self, url: str, prefix: str = "lingxi:"):
        self._redis = connect_redis(url, what="the redis gateway state")
        self.prefix = prefix

    def _slot(self, key: ApiKey, window: str, counter: str, now: float) -> str:
        return f"{self.prefix}rl:{key.id}:{window}:{counter}:{int(now // WINDOWS[window])}"

    async def admit(self, key):
        checks = _checks(key.limits)
        if not checks:
            return
        now = time.time()
        tok_checks = [c for c in checks if c[1] == "tok"]
        req_checks = [c for c in checks if c[1] == "req"]
        if tok_checks:
            used = await self._redis.mget([self._slot(key, w, c, now) for w, c, _ in tok_checks])
            for (window, counter, limit), value in zip(tok_checks, used):
                if int(value or 0) >= limit:
                    raise _refuse(key, window, counter, limit, now)
        if req_checks:
            pipe = self._redis.pipeline(transaction=False)
            for window, counter, _ in req_checks:
                slot = self._slot(key, window, counter, now)
                pipe.incr(slot)
                pipe.expire(slot, WINDOWS[window] + 60)
            counts = (await pipe.execute())[::2]
            for (window, counter, limit), count in zip(req_checks, counts):
                if count > limit:
                    # Give the slots back: a refused request does not use the quota.
                    undo = self._redis.pipeline(transaction=False)
                    for w, c, _ in req_checks:
                        undo.decr(self._slot(key, w, c, now))
                    await undo.execute()
                    raise _refuse(key, window, counter, limit, now)

    async def add_tokens(self, key, tokens):
        if not tokens or not (key.limits.tpm or key.limits.tpd):
            return
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for window in WINDOWS:
            slot = self._slot(key, window, "tok", now)
            pipe.incrby(slot, tokens)
            pipe.expire(slot, WINDOWS[window] + 60)
        await pipe.execute()

    async def close(self):
        await self._redis.aclose()


def _m001_pg_counters(db: Any) -> None:
    db.execute("""CREATE TABLE IF NOT EXISTS lingxi_rate_counters (
        slot TEXT PRIMARY KEY, n BIGINT NOT NULL, expires DOUBLE PRECISION NOT NULL)""")


#: Ordered schema changes of the PostgreSQL counters.
PG_LIMIT_MIGRATIONS = [_m001_pg_counters]


class PostgresLimiter(Limiter):
    """Counters in PostgreSQL (table ``lingxi_rate_counters``): an atomic upsert per window.

    Expired windows are deleted at most once a minute by whichever replica notices first.
    """

    def __init__(self, url: str):
        self.url = url
        self._conn: Any = None
        self._swept = 0.0

    async def _db(self) -> Any:
        if self._conn is None or self._conn.closed:
            # The schema is created with a short-lived sync connection: migrate() is synchronous.
            await asyncio.to_thread(self._migrate)
            self._conn = await connect_pg_async(self.url, what="the postgres gateway state")
        return self._conn

    def _migrate(self) -> None:
        conn = connect_pg(self.url, what="the postgres gateway state")
        try:
            migrate(conn, "limits", PG_LIMIT_MIGRATIONS)
        finally:
            conn.close()

    @staticmethod
    def _slot(key: ApiKey, window: str, counter: str, now: float) -> tuple[str, float]:
        index = int(now // WINDOWS[window])
        return f"{key.id}:{window}:{counter}:{index}", (index + 1) * WINDOWS[window] + 60

    async def _add(self, db: Any, slot: str, expires: float, n: int) -> int:
        cur = await db.execute(
            "INSERT INTO lingxi_rate_counters (slot, n, expires) VALUES (%s, %s, %s) ON CONFLICT (slot) "
            "DO UPDATE SET n = lingxi_rate_counters.n + EXCLUDED.n RETURNING n", (slot, n, expires))
        return (await cur.fetchone())[0]

    async def admit(self, key):
        checks = _checks(key.limits)
        if not checks:
            return
        now = time.time()
        db = await self._db()
        if now - self._swept > 60:
            self._swept = now
            await db.execute("DELETE FROM lingxi_rate_counters WHERE expires < %s", (now,))
        tok = [c for c in checks if c[1] == "tok"]
        if tok:
            slots = [self._slot(key, w, c, now)[0] for w, c, _ in tok]
            cur = await db.execute("SELECT slot, n FROM lingxi_rate_counters WHERE slot = ANY(%s)", (slots,))
            used = dict(await cur.fetchall())
            for slot, (window, counter, limit) in zip(slots, tok):
                if used.get(slot, 0) >= limit:
                    raise _refuse(key, window, counter, limit, now)
        counted = []
        for window, counter, limit in (c for c in checks if c[1] == "req"):
            slot, expires = self._slot(key, window, counter, now)
            counted.append((slot, expires))
            if await self._add(db, slot, expires, 1) > limit:
                for s, e in counted:  # a refused request does not use the quota
                    await self._add(db, s, e, -1)
                raise _refuse(key, window, counter, limit, now)

    async def add_tokens(self, key, tokens):
        if not tokens or not (key.limits.tpm or key.limits.tpd):
            return
        now = time.time()
        db = await self._db()
        for window in WINDOWS:
            slot, expires = self._slot(key, window, "tok", now)
            await self._add(db, slot, expires, tokens)

    async def close(self):
        if self._conn is not None:
            await self._conn.close()


def create_limiter(settings: Any) -> Limiter:
    if settings.gateway.state == "redis":
        return RedisLimiter(state_url(settings, "redis"))
    if settings.gateway.state == "postgres":
        return PostgresLimiter(state_url(settings, "postgres"))
    return MemoryLimiter()
