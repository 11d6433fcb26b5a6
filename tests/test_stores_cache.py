"""One contract suite for every answer-cache store: in-process, SQLite and Redis/Valkey (a real
server). The matching on top of them is tested in test_cache.py."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from store_servers import redis_prefix, redis_url

from lingxi.stores.cache import Entry, MemoryCacheStore, RedisCacheStore, SQLiteCacheStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make(request, tmp_path):
    if request.param == "memory":
        return lambda: MemoryCacheStore(100, 3600)
    if request.param == "sqlite":
        return lambda: SQLiteCacheStore(tmp_path / "cache.sqlite", 100, 3600)
    url, prefix = redis_url(), redis_prefix()
    return lambda: RedisCacheStore(url, prefix, 100, 3600)


def entry(key: str, partition: str, text: str, answer: str, seed: int) -> Entry:
    vector = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return Entry(key, partition, text, vector, {"id": answer, "text": "答案：" + answer}, time.time())


def test_entries_come_back_by_key_and_logs_by_partition_incrementally(make):
    async def go():
        store = make()
        try:
            assert await store.get("nope") is None
            first = entry("k1", "p1", "How do I reset my password?", "a1", 1)
            await store.put(first)
            await store.put(entry("k2", "p2", "另一个分区的问题", "a2", 2))
            got = await store.get("k1")
            assert (got.partition, got.text, got.response) == ("p1", first.text, first.response)
            items, cursor = await store.log_since("p1", None)
            assert [i.key for i in items] == ["k1"] and items[0].text == first.text
            np.testing.assert_array_equal(items[0].vector, first.vector)
            assert (await store.log_since("p1", cursor))[0] == []
            await store.put(entry("k3", "p1", "重置密码怎么做？", "a3", 3))
            newer, _ = await store.log_since("p1", cursor)
            assert [i.key for i in newer] == ["k3"]
            await store.put(entry("k1", "p1", first.text, "a1-new", 4))  # the same key again: replaced
            assert (await store.get("k1")).response["id"] == "a1-new"
            empty, _ = await store.log_since("p-unknown", None)
            assert empty == []
        finally:
            await store.close()

    asyncio.run(go())


def test_an_entry_without_a_vector_is_stored_and_logged_without_one(make):
    async def go():
        store = make()
        try:
            await store.put(Entry("k", "p", "exact only", None, {"id": "x"}, time.time()))
            assert (await store.get("k")).response == {"id": "x"}
            items, _ = await store.log_since("p", None)
            assert [(i.key, i.vector) for i in items] == [("k", None)]
        finally:
            await store.close()

    asyncio.run(go())
