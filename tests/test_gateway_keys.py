"""API keys, tenants, quotas and the loopback-only rule, on the embedded (SQLite) state."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import openai
import pytest
from gateway_helpers import gateway_settings, running

from lingxi.engines.fake import FakeEngine
from lingxi.errors import (
    AuthError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UsageError,
)
from lingxi.stores.keys import ApiKey, Limits, SQLiteKeyStore, hash_secret
from lingxi.stores.limits import MemoryLimiter
from lingxi.gateway.server import check_bind

MSG = [{"role": "user", "content": "hello"}]


def test_keys_are_stored_hashed_and_revocable(tmp_path):
    store = SQLiteKeyStore(tmp_path / "keys.db")
    assert not store.has_keys_sync()
    secret, key = store.create("acme", name="ci", groups=["legal", " hr "], limits=Limits(rpm=5))
    assert secret.startswith("lx-") and len(secret) > 40
    assert key.groups == ("legal", "hr") and key.limits.rpm == 5
    raw = (tmp_path / "keys.db").read_bytes()
    assert secret.encode() not in raw
    db = sqlite3.connect(tmp_path / "keys.db")
    assert db.execute("SELECT hash FROM keys").fetchone()[0] == hash_secret(secret)
    assert asyncio.run(store.authenticate(secret)) == key
    assert asyncio.run(store.authenticate(secret + "x")) is None
    store.revoke(key.id)
    assert asyncio.run(store.authenticate(secret)) is None
    assert store.list() == [] and store.list(include_revoked=True)[0].revoked
    with pytest.raises(NotFoundError):
        store.revoke("key_nope")
    with pytest.raises(UsageError):
        store.create("  ")
    with pytest.raises(UsageError):
        Limits(rpm=0)


def test_open_gateway_serves_loopback_only_and_refuses_to_bind_elsewhere(tmp_path):
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    with pytest.raises(UsageError, match="no API keys"):
        check_bind("0.0.0.0", store)
    check_bind("127.0.0.1", store)
    check_bind("::1", store)

    from lingxi.gateway.service import Gateway

    gw = Gateway(settings, keys=store)
    assert asyncio.run(gw.authenticate(None, "127.0.0.1")).tenant == "local"
    with pytest.raises(PermissionDeniedError):
        asyncio.run(gw.authenticate(None, "10.1.2.3"))
    store.create("acme")
    check_bind("0.0.0.0", store)  # keys exist: binding the network is allowed
    with pytest.raises(AuthError):
        asyncio.run(gw.authenticate(None, "127.0.0.1"))  # and now loopback needs a key too


def test_keys_over_http(tmp_path):
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    secret, key = store.create("acme", name="app")
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        ok = openai.OpenAI(base_url=srv.url + "/v1", api_key=secret, max_retries=0)
        assert ok.chat.completions.create(model="fake", messages=MSG).choices[0].message.content == "hello"
        for bad in ("lx-wrong", ""):
            c = openai.OpenAI(base_url=srv.url + "/v1", api_key=bad or "x", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                c.chat.completions.create(model="fake", messages=MSG)
            assert info.value.body["type"] == "authentication_error"
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fake", "messages": MSG})
        assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/healthz").status_code == 200  # probes need no key
        store.create("other")  # with no key left the gateway would be open to loopback again
        store.revoke(key.id)
        with pytest.raises(openai.AuthenticationError):
            ok.chat.completions.create(model="fake", messages=MSG)
        # /metrics names every tenant: tenants' keys may not read it, an operator key may
        other_secret, _ = store.create("other")
        assert httpx.get(srv.url + "/metrics").status_code == 401
        refused = httpx.get(srv.url + "/metrics", headers={"authorization": f"Bearer {other_secret}"})
        assert refused.status_code == 403 and "operator key" in refused.json()["error"]["message"]
        operator, _ = store.create("ops", groups=["*"])
        metrics = httpx.get(srv.url + "/metrics", headers={"authorization": f"Bearer {operator}"}).text
    assert 'tenant="acme"' in metrics


def test_open_loopback_gateway_refuses_what_a_web_page_could_send(tmp_path):
    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake")}) as srv:
        body = '{"model": "fake", "messages": [{"role": "user", "content": "hi"}]}'
        url = srv.url + "/v1/chat/completions"
        simple = httpx.post(url, content=body, headers={"content-type": "text/plain"})  # no CORS preflight
        assert simple.status_code == 415 and simple.json()["error"]["code"] == "unsupported_media_type"
        rebound = httpx.post(url, content=body, headers={"content-type": "application/json", "host": "evil.example"})
        assert rebound.status_code == 403 and "Host" in rebound.json()["error"]["message"]
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
            ok = httpx.post(url, content=body, headers={"content-type": "application/json", "host": host})
            assert ok.status_code == 200, host


def test_request_limit_gives_429_with_retry_after(tmp_path):
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    secret, _ = store.create("acme", limits=Limits(rpm=2))
    other, _ = store.create("globex")
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key=secret, max_retries=0)
        c.chat.completions.create(model="fake", messages=MSG)
        c.chat.completions.create(model="fake", messages=MSG)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model="fake", messages=MSG)
        retry = int(info.value.response.headers["retry-after"])
        assert 1 <= retry <= 60
        assert "2 requests per minute" in info.value.body["message"]
        # another tenant's key is not affected
        d = openai.OpenAI(base_url=srv.url + "/v1", api_key=other, max_retries=0)
        assert d.chat.completions.create(model="fake", messages=MSG).choices


def test_token_limit_stops_the_next_request():
    key = ApiKey(id="k1", tenant="t", limits=Limits(tpm=10, rpd=100))
    limiter = MemoryLimiter()

    async def run():
        await limiter.admit(key)
        await limiter.add_tokens(key, 12)  # the answer was longer than the budget left
        with pytest.raises(RateLimitError) as info:
            await limiter.admit(key)
        assert "10 tokens per minute" in str(info.value) and info.value.retry_after_s >= 1
        other = ApiKey(id="k2", tenant="t", limits=Limits(tpm=10))
        await limiter.admit(other)

    asyncio.run(run())


def test_refused_requests_do_not_use_the_quota():
    key = ApiKey(id="k1", tenant="t", limits=Limits(rpm=1, rpd=2))
    limiter = MemoryLimiter()

    async def run():
        await limiter.admit(key)
        for _ in range(3):
            with pytest.raises(RateLimitError):
                await limiter.admit(key)
        day = [v for (k, w, c, _), v in limiter._counts.items() if w == "day" and c == "req"]
        assert day == [1]

    asyncio.run(run())


def test_feedback_counts_against_the_request_limit(tmp_path):
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    secret, _ = store.create("acme", limits=Limits(rpm=2))
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        body = {"response_id": "chatcmpl-1", "model": "fake", "rating": 1}
        statuses = [httpx.post(srv.url + "/v1/feedback", json=body,
                               headers={"authorization": f"Bearer {secret}"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_token_limit_is_spent_when_used_reaches_it():
    from lingxi.errors import RateLimitError
    from lingxi.stores.keys import ApiKey
    from lingxi.stores.limits import MemoryLimiter

    key = ApiKey(id="k", tenant="t", limits=Limits(tpm=100))
    limiter = MemoryLimiter()

    async def run():
        await limiter.admit(key)
        await limiter.add_tokens(key, 100)
        with pytest.raises(RateLimitError):
            await limiter.admit(key)

    asyncio.run(run())
