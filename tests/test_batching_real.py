"""Continuous batching on the real bundled model (slow tier): cells freed on cancel, greedy answers
alone vs inside a batch, the next turn of a conversation reusing the cached prefix, and a grammar
or JSON schema per request inside one batch."""

from __future__ import annotations

import asyncio
import json

import pytest

from lingxi.config import LlamaCppModel, Settings
from lingxi.engines import GenerationParams, load_engine
from lingxi.errors import UsageError

pytestmark = pytest.mark.slow

# Short answers the model is sure of. llama.cpp is not batch-invariant: a batch of n tokens takes
# other matmul paths than a batch of one, which moves logits by up to ~1 (measured on SmolLM2), so
# long open-ended greedy texts drift apart after a few tokens where two candidates are close;
# these prompts have one clear answer. Measured: 3 of 4 texts identical; "2 + 2" is "The answer is
# 4." one way and "2 + 2 = 4" the other (its first token flips, in either direction between runs).
# (question, a word its answer must hold)
PROMPTS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is 2 + 2? Answer with a number.", "4"),
    ("What colour is the sky on a clear day? Answer in one word.", "sky"),
    ("What is the opposite of hot? Answer in one word.", "old"),
]


@pytest.fixture(scope="module")
def engine():
    # One thread: two OpenMP threads on shared cores spin at every barrier (see the README's
    # concurrency section); on a busy machine that made these tests several times slower.
    # The shared KV pool, named: left unset, a machine with memory to spare gets a stream per slot.
    e = load_engine("smol", Settings(models={"smol": LlamaCppModel(
        engine="llamacpp", parallel=4, n_threads=1, kv_per_slot=False)}))
    yield e
    e.close()


def _chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_cancel_frees_the_slot_and_its_kv_cells(engine):
    async def main():
        stream = engine.astream(_chat("Write a long story about a dragon."), GenerationParams(max_tokens=200, temperature=0))
        await stream.__anext__()
        seq = next(s.seq for s in engine.scheduler._slots if s.request is not None)
        await stream.aclose()
        return seq

    seq = asyncio.run(main())
    engine._thread.submit(lambda: None).result()  # the step that saw the cancel has run
    assert engine.scheduler.busy == 0
    assert engine._thread.submit(engine._backend.seq_pos_max, seq).result() == -1


def test_greedy_answers_alone_and_in_a_batch_agree(engine):
    params = GenerationParams(max_tokens=8, temperature=0, seed=0)  # seeded: no prefix reuse, clean prefill
    alone = [engine.generate(_chat(p), params).text for p, _ in PROMPTS]

    async def together():
        return await asyncio.gather(*(engine.agenerate(_chat(p), params) for p, _ in PROMPTS))

    batched = [r.text for r in asyncio.run(together())]
    assert all(word in a and word in b for (_, word), a, b in zip(PROMPTS, alone, batched)), (alone, batched)
    assert sum(a == b for a, b in zip(alone, batched)) >= 3, (alone, batched)


def test_the_next_turn_reuses_the_conversation_prefix(engine):
    params = GenerationParams(max_tokens=12, temperature=0)
    turn = _chat("Name a planet.")
    first = engine.generate(turn, params)
    before = engine.scheduler.reused_tokens
    turn += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Name another one."}]
    engine.generate(turn, params)
    assert engine.scheduler.reused_tokens - before >= first.usage.prompt_tokens


def test_each_request_in_a_batch_keeps_to_its_own_grammar_or_schema(engine):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "sunny": {"type": "boolean"}}, "required": ["city", "sunny"]}
    asks = [
        ("Describe the weather in Paris as JSON.", GenerationParams(max_tokens=40, temperature=0,
                                                                    json_schema=json.dumps(schema))),
        ("Is the sky blue?", GenerationParams(max_tokens=4, temperature=0, grammar='root ::= "yes" | "no"')),
        ("Is the sky blue?", GenerationParams(max_tokens=8, temperature=0.8, seed=3,
                                              grammar='root ::= [0-9] [0-9]? " apples"')),
        ("What is the capital of France? Answer in one word.", GenerationParams(max_tokens=8, temperature=0)),
    ]

    async def together():
        return await asyncio.gather(*(engine.agenerate(_chat(q), p) for q, p in asks))

    answers = [r.text for r in asyncio.run(together())]
    weather = json.loads(answers[0])
    assert set(weather) == {"city", "sunny"} and isinstance(weather["sunny"], bool), answers
    assert answers[1] in ("yes", "no"), answers
    assert answers[2].endswith(" apples") and answers[2][:-7].isdigit(), answers
    assert "Paris" in answers[3], answers  # the unconstrained neighbour is not held to anyone's grammar
    with pytest.raises(UsageError, match="GBNF"):
        engine.generate(_chat("x"), GenerationParams(grammar="root ::= ("))
    assert engine.scheduler.busy == 0


def test_thousand_mixed_requests_with_random_cancellations_leak_no_slot_sampler_or_cell(engine):
    """Issue 13's leak test on the real engine (the fast tier runs it on a fake backend): 1,000
    requests with mixed lengths, sampling, seeds and stop strings, a third of them dropped by the
    client after 0-2 chunks. Afterwards no slot is busy, nothing waits, every sampler chain has
    been freed, and each slot's KV cells are exactly the prompt cache the scheduler believes in."""
    import random

    rng = random.Random(7)
    backend = engine._backend
    opened = freed = 0
    make, free = backend.sampler, backend.free_sampler

    def counting_sampler(params):
        nonlocal opened
        opened += 1
        return make(params)

    def counting_free(sampler):
        nonlocal freed
        freed += 1
        free(sampler)

    backend.sampler, backend.free_sampler = counting_sampler, counting_free
    # short plain-text prompts (no chat template): the test is about bookkeeping, not answers
    questions = [f"Colour {i}:" for i in range(40)]
    outcome = {"finished": 0, "cancelled": 0}

    async def one(i: int) -> None:
        params = GenerationParams(max_tokens=rng.randint(1, 4), temperature=rng.choice([0, 0.8]),
                                  seed=rng.choice([None, i]), stop=rng.choice([(), ("e",)]))
        stream = engine.astream(questions[i % len(questions)], params)
        cut = rng.choice([None, None, 0, 1, 2])
        n = 0
        try:
            async for chunk in stream:
                if chunk.finish_reason:
                    outcome["finished"] += 1
                n += 1
                if cut is not None and n > cut:
                    outcome["cancelled"] += 1
                    break
        finally:
            await stream.aclose()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(1000)))

    try:
        asyncio.run(main())
        for _ in range(2):
            engine._thread.submit(lambda: None).result()  # the steps that saw the last cancels have run
    finally:
        backend.sampler, backend.free_sampler = make, free
    assert outcome["finished"] + outcome["cancelled"] >= 1000 and outcome["cancelled"] > 100, outcome
    sched = engine.scheduler
    assert sched.busy == 0 and sched.waiting == 0
    assert opened == freed and opened > 0
    held = engine._thread.submit(lambda: [backend.seq_pos_max(s.seq) for s in sched._slots]).result()
    assert held == [len(s.cached) - 1 for s in sched._slots]


def test_per_slot_kv_layout_answers_like_the_shared_pool(engine):
    """``kv_per_slot``: each slot its own stream of cells. Greedy answers match the shared pool's,
    a request longer than one slot's cells is refused up front, and a prompt sharing a long
    preamble with another slot's cache is copied across streams (copy, then cut) and answers as
    a fresh prefill does."""
    from lingxi.errors import ContextLengthError

    per_slot = load_engine("smol", Settings(models={"smol": LlamaCppModel(
        engine="llamacpp", parallel=2, n_threads=1, kv_per_slot=True, context_length=512)}))
    try:
        assert per_slot.info.context_length == 512
        assert (per_slot.info.details["kv_layout"], per_slot.info.details["kv_cells"]) == ("per slot", 1024)
        assert engine.info.details["kv_layout"] == "shared"
        params = GenerationParams(max_tokens=8, temperature=0)
        for prompt, word in PROMPTS[:2]:
            assert word in per_slot.generate(_chat(prompt), params).text
        with pytest.raises(ContextLengthError):
            per_slot.generate("word " * 600, params)
        preamble = "You are a terse assistant. " * 12
        first = [{"role": "system", "content": preamble}, *_chat("Name a planet.")]
        second = [{"role": "system", "content": preamble}, *_chat("Name a colour.")]

        # One after the other (started together, the second may be admitted before the first's
        # preamble is cached, and then has nothing to copy): the second goes to the empty slot and
        # copies the preamble from the first's.
        per_slot.generate(first, params)
        before = per_slot.scheduler.reused_tokens
        b = per_slot.generate(second, params)
        assert per_slot.scheduler.reused_tokens - before >= 60
        fresh = per_slot.generate(second, GenerationParams(max_tokens=8, temperature=0, seed=1))  # seeded: no reuse
        assert b.text == fresh.text, (b.text, fresh.text)
        assert per_slot.scheduler.busy == 0
    finally:
        per_slot.close()


def test_a_full_pool_drops_idle_caches_quietly(capfd):
    """Three long prompts in a row through a 256-cell pool: the third finds the pool full of the
    first two's idle caches. The scheduler drops them and decodes again; llama.cpp's error line
    for the failed attempt ("failed to find a memory slot") is routine, so it is not printed."""
    small = load_engine("smol", Settings(models={"smol": LlamaCppModel(
        engine="llamacpp", parallel=2, n_threads=1, context_length=256, kv_per_slot=False)}))
    try:
        params = GenerationParams(max_tokens=4, temperature=0)
        topics = ("rivers", "mountains", "deserts")
        for topic in topics:
            text = f"Here are some notes about {topic}. " + " ".join(f"{topic} fact {i}." for i in range(25))
            assert small.generate(_chat(text + " Summarise."), params).usage.completion_tokens > 0
        assert small.scheduler.evictions >= 1
    finally:
        small.close()
    assert "memory slot" not in capfd.readouterr().err
