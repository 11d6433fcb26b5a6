"""Quotas and rate limits per API key: requests and tokens per minute and per day.

Fixed windows (the current minute, the current UTC day). A request is counted when it is
admitted (:meth:`Limiter.admit`). Its tokens are either reserved before it generates
(:meth:`Limiter.reserve_tokens`, e.g. its ``max_tokens``: concurrent requests cannot overrun a
token limit, because each one's share is counted before any of them runs) and settled after it
(:meth:`Limiter.add_tokens` with the difference, negative to give back what was not used), or
only counted when it finishes (``add_tokens`` alone: a token limit then stops the *next*
request once the window is spent). A refused request or reservation is not counted. Refusals
raise :class:`RateLimitError` with the seconds until the window that refused it resets (the
HTTP layer sends them as ``Retry-After``).

Every check-and-count is atomic: one primitive per backend (``_take``) checks all the windows
and counts in all of them, or in none. Backends: :class:`MemoryLimiter` (one gateway process,
a lock); :class:`RedisLimiter` (one Lua script: one round trip) and :class:`PostgresLimiter`
(one SQL function call: one statement, one transaction) share counters between replicas.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from lingxi.errors import RateLimitError, UsageError
from lingxi.stores.keys import ApiKey
from lingxi.stores.connect import connect_pg, connect_pg_async, connect_redis, state_url
from lingxi.stores.migrations import migrate

#: window name -> seconds
WINDOWS = {"minute": 60, "day": 86400}


class Take(NamedTuple):
    """One counter change: add ``n`` to ``counter`` ("req" or "tok") in ``window``, refused when
    ``limit`` (None = no check) would be exceeded: ``used + n > limit`` for a positive ``n``,
    ``used >= limit`` (nothing left) for ``n <= 0``. A counter never goes below zero."""

    window: str
    counter: str
    limit: int | None
    n: int


def _refused(take: Take, used: int) -> bool:
    if take.limit is None:
        return False
    return used + take.n > take.limit if take.n > 0 else used >= take.limit


def _refuse(key: ApiKey, take: Take, now: float) -> RateLimitError:
    seconds = WINDOWS[take.window]
    retry = math.ceil(seconds - now % seconds)
    what = "requests" if take.counter == "req" else "tokens"
    return RateLimitError(
        f"rate limit reached for key {key.id} (tenant '{key.tenant}'): {take.limit} {what} per {take.window}; "
        f"retry in {retry} s",
        retry_after_s=retry,
    )


def _token_limit(key: ApiKey, window: str) -> int | None:
    return key.limits.tpm if window == "minute" else key.limits.tpd


class Limiter(ABC):
    """Counters per key and window. Subclasses implement one atomic primitive, :meth:`_take`."""

    async def admit(self, key: ApiKey) -> None:
        """Count one request, or raise RateLimitError if any of the key's limits is spent."""
        limits = key.limits
        takes = []
        for window, req, tok in (("minute", limits.rpm, limits.tpm), ("day", limits.rpd, limits.tpd)):
            if req:
                takes.append(Take(window, "req", req, 1))
            if tok:
                takes.append(Take(window, "tok", tok, 0))  # no tokens left: refuse, count nothing
        if takes:
            await self._apply(key, takes)

    async def reserve_tokens(self, key: ApiKey, tokens: int) -> None:
        """Count ``tokens`` now, before they are generated, or raise RateLimitError (counting
        nothing) if that would exceed the key's token limit in any window. Settle afterwards with
        ``add_tokens(key, used - tokens)``.

        Raises:
            RateLimitError: the window has fewer than ``tokens`` left (``retry_after_s`` set).
            UsageError: ``tokens`` exceeds the whole limit, so no wait would help.
        """
        if tokens <= 0 or not (key.limits.tpm or key.limits.tpd):
            return
        for window in WINDOWS:
            limit = _token_limit(key, window)
            if limit is not None and tokens > limit:
                raise UsageError(f"this request reserves {tokens} tokens, more than key {key.id}'s limit of "
                                 f"{limit} tokens per {window}: ask for fewer (max_tokens)")
        await self._apply(key, [Take(w, "tok", _token_limit(key, w), tokens) for w in WINDOWS])

    async def add_tokens(self, key: ApiKey, tokens: int) -> None:
        """Count the tokens of a finished request; a negative number gives back the unused part
        of a reservation. Never refuses."""
        if not tokens or not (key.limits.tpm or key.limits.tpd):
            return
        await self._apply(key, [Take(w, "tok", None, tokens) for w in WINDOWS])

    async def _apply(self, key: ApiKey, takes: list[Take]) -> None:
        now = time.time()
        refused = await self._take(key, takes, now)
        if refused is not None:
            raise _refuse(key, takes[refused], now)

    @abstractmethod
    async def _take(self, key: ApiKey, takes: list[Take], now: float) -> int | None:
        """Atomically: if no take is refused, apply them all and return None; else apply none and
        return the index of the first refused one."""

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

    async def _take(self, key, takes, now):
        slots = [(key.id, t.window, t.counter, self._index(t.window, now)) for t in takes]
        with self._lock:
            self._prune(now)
            for i, (take, slot) in enumerate(zip(takes, slots)):
                if _refused(take, self._counts.get(slot, 0)):
                    return i
            for take, slot in zip(takes, slots):
                if take.n:
                    self._counts[slot] = max(0, self._counts.get(slot, 0) + take.n)
        return None


# KEYS: counter slots; ARGV: n, limit (-1 = none), expiry seconds, for each slot in turn.
_REDIS_TAKE = """
for i = 1, #KEYS do
  local n = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  if limit >= 0 then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if (n > 0 and used + n > limit) or (n <= 0 and used >= limit) then
      return i
    end
  end
end
for i = 1, #KEYS do
  local n = tonumber(ARGV[3 * i - 2])
  if n ~= 0 then
    if redis.call('INCRBY', KEYS[i], n) < 0 then
      redis.call('SET', KEYS[i], 0)
    end
    redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
  end
end
return 0
"""


class RedisLimiter(Limiter):
    """Counters in Redis/Valkey: ``{prefix}rl:{key}:{window}:{counter}:{index}`` with expiry,
    checked and counted by one Lua script (atomic on the server, one round trip)."""

    def __init__(self, url: str, prefix: str = "lingxi:"):
        self._redis = connect_redis(url, what="the redis gateway state")
        self._script = self._redis.register_script(_REDIS_TAKE)
        self.prefix = prefix

    def _slot(self, key: ApiKey, window: str, counter: str, now: float) -> str:
        return f"{self.prefix}rl:{key.id}:{window}:{counter}:{int(now // WINDOWS[window])}"

    async def _take(self, key, takes, now):
        slots = [self._slot(key, t.window, t.counter, now) for t in takes]
        args: list[int] = []
        for t in takes:
            args += [t.n, -1 if t.limit is None else t.limit, WINDOWS[t.window] + 60]
        refused = int(await self._script(keys=slots, args=args))
        return refused - 1 if refused else None

    async def close(self):
        await self._redis.aclose()


def _m001_pg_counters(db: Any) -> None:
    db.execute("""CREATE TABLE IF NOT EXISTS lingxi_rate_counters (
        slot TEXT PRIMARY KEY, n BIGINT NOT NULL, expires DOUBLE PRECISION NOT NULL)""")


def _m002_pg_take_function(db: Any) -> None:
    # Rows are locked in the order given; callers pass slots sorted, so two calls never deadlock.
    db.execute("""
    CREATE OR REPLACE FUNCTION lingxi_take_counters(
        p_slots TEXT[], p_expires DOUBLE PRECISION[], p_limits BIGINT[], p_ns BIGINT[]) RETURNS INT
    LANGUAGE plpgsql AS $$
    DECLARE used BIGINT;
    BEGIN
      FOR i IN 1 .. coalesce(array_length(p_slots, 1), 0) LOOP
        IF p_limits[i] IS NOT NULL THEN
          INSERT INTO lingxi_rate_counters (slot, n, expires) VALUES (p_slots[i], 0, p_expires[i])
            ON CONFLICT (slot) DO NOTHING;
          SELECT n INTO used FROM lingxi_rate_counters WHERE slot = p_slots[i] FOR UPDATE;
          IF (p_ns[i] > 0 AND used + p_ns[i] > p_limits[i]) OR (p_ns[i] <= 0 AND used >= p_limits[i]) THEN
            RETURN i;
          END IF;
        END IF;
      END LOOP;
      FOR i IN 1 .. coalesce(array_length(p_slots, 1), 0) LOOP
        IF p_ns[i] <> 0 THEN
          INSERT INTO lingxi_rate_counters AS c (slot, n, expires) VALUES (p_slots[i], GREATEST(p_ns[i], 0), p_expires[i])
            ON CONFLICT (slot) DO UPDATE SET n = GREATEST(c.n + p_ns[i], 0);
        END IF;
      END LOOP;
      RETURN 0;
    END $$""")


#: Ordered schema changes of the PostgreSQL counters.
PG_LIMIT_MIGRATIONS = [_m001_pg_counters, _m002_pg_take_function]


class PostgresLimiter(Limiter):
    """Counters in PostgreSQL (table ``lingxi_rate_counters``), checked and counted by one call
    of the SQL function ``lingxi_take_counters`` (one statement: atomic, one round trip).

    Expired windows are deleted at most once a minute by whichever replica notices first.
    """

    def __init__(self, url: str):
        self.url = url
        self._conn: Any = None
        self._connecting = asyncio.Lock()
        self._swept = 0.0

    async def _db(self) -> Any:
        async with self._connecting:
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

    async def _take(self, key, takes, now):
        db = await self._db()
        if now - self._swept > 60:
            self._swept = now
            await db.execute("DELETE FROM lingxi_rate_counters WHERE expires < %s", (now,))
        slots = [self._slot(key, t.window, t.counter, now) for t in takes]
        order = sorted(range(len(takes)), key=lambda i: slots[i][0])
        cur = await db.execute(
            "SELECT lingxi_take_counters(%s::text[], %s::float8[], %s::bigint[], %s::bigint[])",
            ([slots[i][0] for i in order], [slots[i][1] for i in order], [takes[i].limit for i in order],
             [takes[i].n for i in order]))
        refused = (await cur.fetchone())[0]
        return order[refused - 1] if refused else None

    async def close(self):
        if self._conn is not None:
            await self._conn.close()


def create_limiter(settings: Any) -> Limiter:
    if settings.gateway.state == "redis":
        return RedisLimiter(state_url(settings, "redis"))
    if settings.gateway.state == "postgres":
        return PostgresLimiter(state_url(settings, "postgres"))
    return MemoryLimiter()
