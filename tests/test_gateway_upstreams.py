"""Replicas of one model: balancing, failover, circuit breaker and health checks."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest
from gateway_helpers import SlowEngine, gateway_settings, running
from local_upstream import LocalUpstream

from lingxi.config import parse_config
from lingxi.engines.base import GenerationParams
from lingxi.engines.fake import FakeEngine
from lingxi.errors import ContextLengthError, UpstreamError
from lingxi.gateway.upstreams import ModelPool, Replica

MSG = [{"role": "user", "content": "hi"}]


def pool_of(*engines, **options) -> ModelPool:
    return ModelPool("m", [Replica(name=e.name, load=lambda e=e: e, engine=e) for e in engines], **options)


async def text_of(pool: ModelPool, prompt=MSG) -> str:
    return "".join([c.text async for c in pool.stream(prompt, GenerationParams())])


def down(status=503) -> UpstreamError:
    return UpstreamError("http://replica/v1", "unavailable", status=status, retryable=True)


def test_failover_before_the_first_token():
    a, b = FakeEngine("a"), FakeEngine("b")
    a.enqueue(down())
    b.enqueue("from b")
    pool = pool_of(a, b)
    assert asyncio.run(text_of(pool)) == "from b"  # a was tried first (idle tie, first turn) and failed
    assert len(a.prompts) == 1 and len(b.prompts) == 1
    assert pool.replicas[0].failures == 1 and pool.replicas[0].opened_at is None  # one failure: still closed


def test_a_failing_replica_is_skipped_and_its_breaker_opens_then_recovers():
    a, b = FakeEngine("a"), FakeEngine("b")
    pool = pool_of(a, b, retries=1, breaker_failures=2, breaker_reset_s=0.2)
    a.enqueue(down(), down(), "a is back")

    async def run():
        answers = [await text_of(pool, [{"role": "user", "content": f"q{i}"}]) for i in range(6)]
        assert answers == [f"q{i}" for i in range(6)]  # every request succeeded (b echoes)
        assert pool.replicas[0].state(time.monotonic(), 0.2) == "open"
        served_by_a = len(a.prompts)
        assert served_by_a == 2  # after two failures a got no more traffic
        await asyncio.sleep(0.25)  # half-open: one trial goes to a, succeeds, closes the breaker
        for i in range(4):
            await text_of(pool, [{"role": "user", "content": f"r{i}"}])
        assert pool.replicas[0].opened_at is None
        assert len(a.prompts) > served_by_a

    asyncio.run(run())


def test_a_trial_request_cancelled_before_its_first_token_does_not_shut_the_replica_out():
    slow = SlowEngine("a", tokens=3, delay_s=0.3)
    pool = pool_of(slow, breaker_failures=1, breaker_reset_s=0.01)
    replica = pool.replicas[0]
    replica.failures, replica.opened_at = 1, time.monotonic() - 1  # open, and past its reset time

    async def run():
        trial = asyncio.ensure_future(text_of(pool))
        await asyncio.sleep(0.05)
        assert replica.trial
        trial.cancel()  # the client left during the half-open trial
        await asyncio.gather(trial, return_exceptions=True)
        assert not replica.trial
        return await text_of(pool)  # the next request may try again

    assert asyncio.run(run()) == "w0 w1 w2 "


def test_client_errors_are_not_retried_elsewhere():
    a, b = FakeEngine("a"), FakeEngine("b")
    a.enqueue(ContextLengthError(5000, 2048))
    b.enqueue(ContextLengthError(5000, 2048))
    pool = pool_of(a, b)
    with pytest.raises(ContextLengthError):
        asyncio.run(text_of(pool))
    assert len(a.prompts) + len(b.prompts) == 1
    assert all(r.failures == 0 for r in pool.replicas)


def test_all_replicas_down_raises_the_last_error():
    a, b = FakeEngine("a"), FakeEngine("b")
    a.enqueue(down(502))
    b.enqueue(down(502))
    with pytest.raises(UpstreamError) as info:
        asyncio.run(text_of(pool_of(a, b, retries=3)))
    assert info.value.status == 502


def test_round_robin_when_idle_and_least_busy_under_load(tmp_path):
    a, b = FakeEngine("a"), FakeEngine("b")
    pool = pool_of(a, b)
    for i in range(6):
        asyncio.run(text_of(pool, [{"role": "user", "content": str(i)}]))
    assert len(a.prompts) == 3 and len(b.prompts) == 3

    slow_a, slow_b = SlowEngine("sa", tokens=20, delay_s=0.01), SlowEngine("sb", tokens=20, delay_s=0.01)
    settings = gateway_settings(tmp_path, replicas={"pair": ["sa", "sb"]})
    with running(settings, engines={"sa": slow_a, "sb": slow_b}) as srv:
        threads = [threading.Thread(target=lambda: httpx.post(
            srv.url + "/v1/chat/completions", json={"model": "pair", "messages": MSG}, timeout=30)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]]
    assert slow_a.produced == 60 and slow_b.produced == 60  # three requests each
    assert "pair" in ids


def test_unknown_replica_member_is_a_config_error(tmp_path):
    from lingxi.errors import ConfigError
    from lingxi.gateway.service import Gateway

    with pytest.raises(ConfigError, match="gateway.replicas.pair: unknown model 'ghost'"):
        Gateway(gateway_settings(tmp_path, replicas={"pair": ["fake", "ghost"]}))


@pytest.fixture
def upstreams():
    servers = [LocalUpstream(reply="answer from one"), LocalUpstream(reply="answer from two")]
    yield servers
    for s in servers:
        s.close()


def http_settings(tmp_path, urls, **gateway):
    models = {f"r{i}": {"engine": "openai", "base_url": u, "model": "m", "max_retries": 0, "timeout_s": 5}
              for i, u in enumerate(urls)}
    return parse_config({
        "home": str(tmp_path), "default_model": "r0", "models": models,
        "gateway": {"replicas": {"fleet": list(models)}, "cache": {"enabled": False}, "access_log": False,
                    "health_interval_s": 0, **gateway},
    })


def test_http_replicas_fail_over_on_5xx_and_connection_refused(tmp_path, upstreams):
    one, two = upstreams
    one.script = [503] * 20
    with running(http_settings(tmp_path, [one.url, two.url])) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        for _ in range(4):
            r = c.chat.completions.create(model="fleet", messages=MSG)
            assert r.choices[0].message.content == "answer from two"
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="fleet", messages=MSG, stream=True) if ch.choices)
        assert streamed == "answer from two"
        one.close()  # now refused at the socket
        one.script = []
        for _ in range(3):
            assert c.chat.completions.create(model="fleet", messages=MSG).choices[0].message.content == "answer from two"
        status = httpx.get(srv.url + "/readyz").json()["models"]["fleet"]
        assert {s["replica"]: s["breaker"] for s in status}["r0"] == "open"
        metrics = httpx.get(srv.url + "/metrics").text
    assert 'lingxi_replica_up{model="fleet",replica="r0"} 0.0' in metrics


def test_health_checks_mark_a_dead_replica(tmp_path, upstreams):
    one, two = upstreams
    dead_url = one.url
    one.close()
    with running(http_settings(tmp_path, [dead_url, two.url], health_interval_s=0.05)) as srv:
        deadline = time.time() + 5
        while time.time() < deadline:
            status = {s["replica"]: s for s in httpx.get(srv.url + "/readyz").json()["models"].get("fleet", [])}
            if status and not status["r0"]["healthy"]:
                break
            time.sleep(0.05)
        assert not status["r0"]["healthy"] and status["r1"]["healthy"]
        # an unhealthy replica gets no traffic while a healthy one exists: no failed attempt at all
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fleet", "messages": MSG})
        assert r.json()["choices"][0]["message"]["content"] == "answer from two"
        assert srv.gateway.pools["fleet"].replicas[0].failures == 0


# ---------------------------------------------------------------- timeouts and re-sending


def http_engine(url: str, **options):
    from lingxi.config import parse_config as parse
    from lingxi.engines.openai_upstream import OpenAIUpstream

    cfg = parse({"models": {"up": {"engine": "openai", "base_url": url, "model": "m", **options}}}).models["up"]
    return OpenAIUpstream("up", cfg)


async def first_text(engine) -> str:
    try:
        return "".join([c.text async for c in engine.astream(MSG, GenerationParams(max_tokens=8))])
    finally:
        await engine.aclose()


def test_an_upstream_that_never_answers_fails_fast_and_is_not_sent_twice():
    # It took 181 s: a 60 s read timeout x 3 attempts, re-sending a chat that may be running.
    up = LocalUpstream()
    try:
        up.script = ["hang"] * 3
        engine = http_engine(up.url, first_byte_timeout_s=0.2, max_retries=2)
        start = time.perf_counter()
        with pytest.raises(UpstreamError, match="timed out.*not re-sent"):
            asyncio.run(first_text(engine))
        assert time.perf_counter() - start < 3
        assert len(up.requests) == 1
        # the sync path (CLI, worker threads) follows the same rule
        with pytest.raises(UpstreamError, match="not re-sent"):
            list(http_engine(up.url, first_byte_timeout_s=0.2, max_retries=2).stream(MSG))
        assert len(up.requests) == 2
    finally:
        up.close()


def test_retry_after_send_re_sends_a_timed_out_request_when_configured():
    up = LocalUpstream(reply="late but here")
    try:
        up.script = ["hang"]
        engine = http_engine(up.url, first_byte_timeout_s=0.2, max_retries=2, retry_after_send=True)
        assert asyncio.run(first_text(engine)) == "late but here"
        assert len(up.requests) == 2
    finally:
        up.close()


def test_timeout_s_caps_the_whole_request():
    up = LocalUpstream()
    try:
        up.script = ["hang"]
        engine = http_engine(up.url, timeout_s=0.5, first_byte_timeout_s=30, max_retries=0)
        start = time.perf_counter()
        with pytest.raises(UpstreamError, match="timed out"):
            asyncio.run(first_text(engine))
        assert time.perf_counter() - start < 3
    finally:
        up.close()


def test_refused_connections_are_still_retried(monkeypatch):
    import socket

    from lingxi.engines.http import HttpUpstream

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits = []
    monkeypatch.setattr(HttpUpstream, "_backoff", lambda self, attempt, error: waits.append(error) or 0.0)
    engine = http_engine(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(UpstreamError, match="unreachable"):
        asyncio.run(first_text(engine))
    assert len(waits) == 2 and all(e.retryable for e in waits)
