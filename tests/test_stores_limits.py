"""One suite for every quota limiter: in-process, Redis/Valkey and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
import types

import pytest
from store_servers import pg_schema_url, redis_prefix, redis_url

from lingxi.errors import RateLimitError, UsageError
from lingxi.stores import limits as limits_module
from lingxi.stores.keys import ApiKey, Limits
from lingxi.stores.limits import MemoryLimiter, PostgresLimiter, RedisLimiter

NOON = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 43200 + 5  # 5 s into a minute, mid-day (UTC)


@pytest.fixture
def clock(monkeypatch):
    now = types.SimpleNamespace(t=NOON)
    monkeypatch.setattr(limits_module, "time", types.SimpleNamespace(time=lambda: now.t))
    return now


@pytest.fixture(params=["memory", "redis", "postgres"])
def make(request, tmp_path_factory, clock):
    """``make()``: a limiter; limiters made by one test share their counters (gateway replicas)."""
    if request.param == "memory":
        shared = MemoryLimiter()
        return lambda: shared  # one process has one limiter
    if request.param == "redis":
        url, prefix = redis_url(), redis_prefix()
        return lambda: RedisLimiter(url, prefix=prefix)
    url = pg_schema_url(tmp_path_factory)
    return lambda: PostgresLimiter(url)


def drive(body, *limiters):
    """Run ``body()`` and close the limiters in one event loop (async clients belong to theirs)."""
    async def go():
        try:
            return await body()
        finally:
            for limiter in limiters:
                await limiter.close()

    return asyncio.run(go())


def key(**limits) -> ApiKey:
    return ApiKey(id="k1", tenant="acme", limits=Limits(**limits))


def test_requests_are_limited_per_minute_and_refusals_use_no_quota(make, clock):
    limiter, k = make(), key(rpm=2, rpd=3)

    async def run():
        await limiter.admit(k)
        await limiter.admit(k)
        for _ in range(3):
            with pytest.raises(RateLimitError) as info:
                await limiter.admit(k)
        assert "2 requests per minute" in str(info.value) and info.value.retry_after_s == 55
        clock.t += 60  # next minute, same day: the three refusals did not use the day's quota
        await limiter.admit(k)
        with pytest.raises(RateLimitError, match="3 requests per day"):
            await limiter.admit(k)
        await limiter.admit(ApiKey(id="k2", tenant="acme", limits=Limits(rpm=2)))  # another key is apart

    drive(run, limiter)


def test_a_spent_token_window_refuses_the_next_request(make):
    limiter, k = make(), key(tpm=100)

    async def run():
        await limiter.admit(k)
        await limiter.add_tokens(k, 100)
        with pytest.raises(RateLimitError, match="100 tokens per minute"):
            await limiter.admit(k)

    drive(run, limiter)


def test_reservations_count_before_generation_and_settle_after(make):
    limiter, k = make(), key(tpm=100, tpd=1000)

    async def run():
        await limiter.reserve_tokens(k, 60)
        with pytest.raises(RateLimitError) as info:
            await limiter.reserve_tokens(k, 60)  # 120 > 100: refused, and counts nothing
        assert "100 tokens per minute" in str(info.value) and 1 <= info.value.retry_after_s <= 60
        await limiter.add_tokens(k, 20 - 60)  # the first request used 20 of its 60
        await limiter.reserve_tokens(k, 80)  # 20 + 80 = 100: exactly the limit
        with pytest.raises(RateLimitError):
            await limiter.reserve_tokens(k, 1)
        with pytest.raises(UsageError, match="more than key k1's limit of 100 tokens per minute"):
            await limiter.reserve_tokens(k, 101)

    drive(run, limiter)


def test_the_day_window_refuses_a_reservation_too(make, clock):
    limiter, k = make(), key(tpm=100, tpd=150)

    async def run():
        await limiter.reserve_tokens(k, 100)
        clock.t += 60
        with pytest.raises(RateLimitError, match="150 tokens per day"):
            await limiter.reserve_tokens(k, 60)
        await limiter.reserve_tokens(k, 50)  # the refused 60 was counted in neither window

    drive(run, limiter)


def test_giving_back_more_than_was_counted_never_goes_below_zero(make, clock):
    limiter, k = make(), key(tpm=100)

    async def run():
        await limiter.reserve_tokens(k, 50)
        clock.t += 60  # settled in the next minute: nothing was counted there yet
        await limiter.add_tokens(k, -50)
        await limiter.reserve_tokens(k, 100)
        with pytest.raises(RateLimitError):
            await limiter.reserve_tokens(k, 1)

    drive(run, limiter)


def test_concurrent_reservations_from_two_replicas_never_overrun_the_limit(make):
    one, two, k = make(), make(), key(tpm=100)

    async def run():
        async def reserve(limiter):
            try:
                await limiter.reserve_tokens(k, 10)
                return True
            except RateLimitError:
                return False

        return await asyncio.gather(*(reserve(one if i % 2 else two) for i in range(30)))

    assert sum(drive(run, one, two)) == 10
