"""The gateway's OpenAI-compatible API, driven by the real ``openai`` SDK against a real server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from gateway_helpers import SlowEngine, gateway_settings, running

from lingxi.engines.fake import FakeEngine


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine("fake")


@pytest.fixture
def server(tmp_path, fake):
    with running(gateway_settings(tmp_path), engines={"fake": fake}) as srv:
        yield srv


def client(srv, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)


def test_chat_completion_through_the_sdk(server, fake):
    fake.enqueue("灵犀 answers in Chinese and English.")
    r = client(server).chat.completions.create(
        model="fake", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"}])
    assert r.object == "chat.completion"
    assert r.model == "fake"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "灵犀 answers in Chinese and English."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 6 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # the engine got the conversation as messages, system prompt included
    assert fake.prompts[-1][0] == {"role": "system", "content": "Be brief."}


def test_stream_gives_the_same_text_usage_and_ends_with_done(server, fake):
    fake.enqueue("one two three four", "one two three four")
    chunks = list(client(server).chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4

    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json={"model": "fake", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["completion_tokens"] == 4


def test_text_completions_and_params(server, fake):
    fake.enqueue("alpha beta gamma delta")
    r = client(server).completions.create(model="fake", prompt="Say four words", max_tokens=2)
    assert r.object == "text_completion"
    assert r.choices[0].text == "alpha beta "
    assert r.choices[0].finish_reason == "length"
    assert fake.prompts[-1] == "Say four words"

    fake.enqueue("a b c")
    streamed = "".join(c.choices[0].text for c in client(server).completions.create(
        model="fake", prompt="p", stream=True) if c.choices)
    assert streamed == "a b c"


def test_embeddings_float_and_base64(server):
    c = client(server)
    # the SDK asks for base64 by default and decodes it
    r = c.embeddings.create(model="hash", input=["the cat sat", "猫坐在垫子上"])
    assert [d.index for d in r.data] == [0, 1]
    v = np.array(r.data[0].embedding)
    assert v.shape == (32,) and abs(np.linalg.norm(v) - 1) < 1e-5
    f = c.embeddings.create(model="hash", input="the cat sat", encoding_format="float")
    assert np.allclose(f.data[0].embedding, v, atol=1e-6)
    q = c.embeddings.create(model="hash", input="the cat sat", encoding_format="float",
                            extra_body={"input_type": "query"})
    assert len(q.data[0].embedding) == 32
    assert r.usage.prompt_tokens > 0


def test_models_lists_chat_models_and_embedders(server):
    ids = [m.id for m in client(server).models.list()]
    assert {"fake", "fake2", "smollm2", "hash"} <= set(ids)
    assert client(server).models.retrieve("fake").id == "fake"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("nope")


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"model": "fake"}).encode(), "messages"),
    (json.dumps({"model": "fake", "messages": "hi"}).encode(), "messages"),
    (json.dumps({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}).encode(), "role"),
    (json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x"}], "temperature": 9}).encode(),
     "temperature"),
    (json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x"}], "n": 3}).encode(), "n"),
    (json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}).encode(),
     "max_tokens"),
    (json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x"}],
                 "tools": [{"type": "function", "function": {"name": "f"}}]}).encode(), "tool calling"),
    (json.dumps({"model": "fake", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
     "image_url"),
])
def test_bad_requests_get_openai_shaped_400(server, body, fragment):
    r = httpx.post(server.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert fragment in err["message"]


def test_unknown_model_is_404_and_lists_known_ones(server):
    with pytest.raises(openai.NotFoundError) as info:
        client(server).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"
    assert "fake" in info.value.body["message"]
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_huge_body_is_413_and_unknown_route_404(tmp_path):
    with running(gateway_settings(tmp_path, max_body_bytes=1000)) as srv:
        big = {"model": "fake", "messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(srv.url + "/v1/chat/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"x" * 500
        r = httpx.post(srv.url + "/v1/chat/completions", content=chunks())
        assert r.status_code == 413
        r = httpx.get(srv.url + "/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = httpx.get(srv.url + "/v1/chat/completions")
        assert r.status_code == 405 and "error" in r.json()
        # and the server is still fine
        assert httpx.get(srv.url + "/healthz").json() == {"status": "ok"}


def test_context_length_error_is_400(tmp_path):
    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake", context_length=8)}) as srv:
        with pytest.raises(openai.BadRequestError) as info:
            client(srv).chat.completions.create(model="fake", messages=[{"role": "user", "content": "word " * 50}])
        assert info.value.body["code"] == "context_length_exceeded"
        # streamed: the error comes before the first byte, so it is a plain HTTP error too
        with pytest.raises(openai.BadRequestError):
            list(client(srv).chat.completions.create(
                model="fake", messages=[{"role": "user", "content": "word " * 50}], stream=True))


def test_engine_failure_is_an_openai_error_and_the_server_survives(server, fake):
    from lingxi.errors import EngineError

    fake.enqueue(EngineError("llama.cpp crashed"))
    with pytest.raises(openai.InternalServerError) as info:
        client(server).chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    assert "llama.cpp crashed" in info.value.body["message"]
    fake.enqueue(ZeroDivisionError("a bug"))
    with pytest.raises(openai.InternalServerError) as info:
        client(server).chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "server_error"
    fake.enqueue("still here")
    assert client(server).chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "x"}]).choices[0].message.content == "still here"


def test_full_queue_answers_429_with_retry_after(tmp_path):
    gate = threading.Event()
    slow = SlowEngine(tokens=30, delay_s=0.02, gate=gate)
    settings = gateway_settings(tmp_path, max_concurrency=1, max_queue=0)
    with running(settings, engines={"slow": slow}) as srv:
        first = threading.Thread(target=lambda: client(srv).chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "x"}]))
        first.start()
        deadline = time.time() + 5
        while slow.produced == 0 and time.time() < deadline:
            time.sleep(0.005)
        r = httpx.post(srv.url + "/v1/chat/completions",
                       json={"model": "slow", "messages": [{"role": "user", "content": "y"}]})
        gate.set()  # the first request held its slot until now
        first.join()
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
        # the slot is free again
        ok = httpx.post(srv.url + "/v1/chat/completions",
                        json={"model": "slow", "messages": [{"role": "user", "content": "y"}], "max_tokens": 2})
        assert ok.status_code == 200


def test_waiting_requests_are_served_in_turn(tmp_path):
    slow = SlowEngine(tokens=5, delay_s=0.01)
    with running(gateway_settings(tmp_path, max_concurrency=1, max_queue=8), engines={"slow": slow}) as srv:
        results = []

        def call():
            results.append(httpx.post(srv.url + "/v1/chat/completions", timeout=30,
                                      json={"model": "slow", "messages": [{"role": "user", "content": "y"}]}))
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200] * 4
        assert srv.gateway.admission.active == 0


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_stops_generation(tmp_path, stream):
    slow = SlowEngine(tokens=500, delay_s=0.01)
    with running(gateway_settings(tmp_path), engines={"slow": slow}) as srv:
        body = {"model": "slow", "stream": stream, "messages": [{"role": "user", "content": "long"}]}
        if stream:
            with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body) as resp:
                lines = resp.iter_lines()
                for _ in range(3):
                    next(lines)
        else:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=0.3)
        assert slow.finished.wait(5), "generation kept running after the client left"
        assert slow.produced < 200
        deadline = time.time() + 2
        while srv.gateway.admission.active and time.time() < deadline:
            time.sleep(0.01)
        assert srv.gateway.admission.active == 0
        if stream:  # what was streamed before the hang-up is still charged
            deadline = time.time() + 2
            while "lingxi_tokens_total" not in httpx.get(srv.url + "/metrics").text and time.time() < deadline:
                time.sleep(0.01)
            assert 'lingxi_tokens_total{kind="completion",model="slow",tenant="local"}' in httpx.get(
                srv.url + "/metrics").text


@pytest.mark.parametrize(("status", "expected", "type_"), [
    (400, 400, "invalid_request_error"),  # the upstream judged the request: re-sending cannot help
    (429, 429, "rate_limit_error"),       # passed on with Retry-After, so SDKs back off
    (401, 502, "upstream_error"),         # the gateway's own upstream key: not the caller's fault
    (503, 502, "upstream_error"),
])
def test_upstream_errors_reach_the_client_with_the_right_status(tmp_path, fake, status, expected, type_):
    from lingxi.errors import UpstreamError

    with running(gateway_settings(tmp_path), engines={"fake": fake}) as srv:
        fake.enqueue(UpstreamError("http://up/v1", "no", status=status, retry_after_s=7))
        r = httpx.post(srv.url + "/v1/chat/completions",
                       json={"model": "fake", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == expected and r.json()["error"]["type"] == type_
    assert (r.headers.get("retry-after") == "7") == (expected == 429)


def test_metrics_health_and_access_log(tmp_path, fake, capfd):
    settings = gateway_settings(tmp_path, access_log=True)
    with running(settings, engines={"fake": fake}) as srv:
        fake.enqueue("one two three")
        client(srv).chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
        httpx.post(srv.url + "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
        assert httpx.get(srv.url + "/healthz").status_code == 200
        deadline = time.time() + 5
        while httpx.get(srv.url + "/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert httpx.get(srv.url + "/readyz").json()["status"] == "ready"
        text = httpx.get(srv.url + "/metrics").text
    assert 'lingxi_requests_total{model="fake",route="/v1/chat/completions",status="200",tenant="local"} 1.0' in text
    # a made-up model name does not become a label of its own
    assert 'lingxi_requests_total{model="unknown",route="/v1/chat/completions",status="404",tenant="local"} 1.0' in text
    assert 'model="nope"' not in text
    assert 'lingxi_tokens_total{kind="completion",model="fake",tenant="local"} 3.0' in text
    assert "lingxi_ttft_seconds_count" in text and "lingxi_queue_seconds_count" in text
    err = capfd.readouterr().err
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    ok = [e for e in logged if e.get("status") == 200 and e.get("path") == "/v1/chat/completions"]
    assert ok and ok[0]["model"] == "fake" and ok[0]["completion_tokens"] == 3 and ok[0]["tenant"] == "local"
    assert any(e.get("status") == 404 for e in logged)


def test_cost_is_counted_from_configured_prices(tmp_path):
    from lingxi.config import parse_config

    settings = parse_config({
        "home": str(tmp_path), "default_model": "paid",
        "models": {"paid": {"engine": "fake", "cost_per_mtok_in": 1.0, "cost_per_mtok_out": 2.0}},
        "gateway": {"cache": {"enabled": False}, "access_log": False},
    })
    with running(settings, engines={"paid": FakeEngine("paid", replies=["a b c d"])}) as srv:
        r = client(srv).chat.completions.create(model="paid", messages=[{"role": "user", "content": "x y"}])
        text = httpx.get(srv.url + "/metrics").text
    expected = (r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6
    line = next(li for li in text.splitlines() if li.startswith('lingxi_cost_usd_total{model="paid"'))
    assert float(line.split()[-1]) == pytest.approx(expected)


def test_feedback_is_stored(server):
    from lingxi.stores.feedback import SQLiteFeedbackStore as FeedbackStore

    r = httpx.post(server.url + "/v1/feedback", json={
        "response_id": "chatcmpl-1", "model": "fake", "rating": -1, "comment": "wrong",
        "messages": [{"role": "user", "content": "2+2?"}], "answer": "5"})
    assert r.status_code == 200
    bad = httpx.post(server.url + "/v1/feedback", json={"response_id": "x", "model": "fake", "rating": 5})
    assert bad.status_code == 400
    rows = FeedbackStore(server.gateway.settings.home_dir / "gateway" / "feedback.db").rows()
    assert [(x["rating"], x["answer"], x["tenant"]) for x in rows] == [(-1, "5", "local")]
    assert rows[0]["messages"] == [{"role": "user", "content": "2+2?"}]


def test_web_ui_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "灵犀" in r.text and "/v1/chat/completions" in r.text and "/v1/feedback" in r.text


def test_a_failure_mid_stream_ends_the_stream_with_an_error_event(tmp_path):
    from lingxi.engines.base import ChatEngine, Chunk, ModelInfo
    from lingxi.errors import EngineError

    class Breaks(ChatEngine):
        engine_name = "breaks"

        @property
        def info(self):
            return ModelInfo(name=self.name, engine=self.engine_name)

        def stream(self, prompt, params=None):
            yield Chunk(text="half ")
            raise EngineError("the model crashed mid-answer")

    with running(gateway_settings(tmp_path), engines={"breaks": Breaks("breaks")}) as srv:
        c = client(srv)
        with pytest.raises(openai.APIError, match="crashed mid-answer"):
            for _ in c.chat.completions.create(model="breaks", messages=[{"role": "user", "content": "x"}],
                                               stream=True):
                pass
        assert httpx.get(srv.url + "/healthz").status_code == 200


def test_langchain_openai_client_works_unchanged(server, fake):
    langchain_openai = pytest.importorskip("langchain_openai", reason="pip install 'lingxi[dev]'")
    fake.enqueue("Paris.", "巴黎 是 法国 的 首都")
    llm = langchain_openai.ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model="fake",
                                      temperature=0, max_retries=0)
    reply = llm.invoke("What is the capital of France?")
    assert reply.content == "Paris." and reply.usage_metadata["output_tokens"] == 1
    streamed = "".join(part.content for part in llm.stream("法国的首都是哪里？"))
    assert streamed == "巴黎 是 法国 的 首都"
    vectors = langchain_openai.OpenAIEmbeddings(
        base_url=server.url + "/v1", api_key="unused", model="hash", check_embedding_ctx_length=False,
    ).embed_documents(["灵犀", "Lingxi"])
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0
