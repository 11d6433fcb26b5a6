"""Continuous batching (lingxi.engines.batch) and tenant-fair admission, on a small deterministic
model: its next token is a function of the tokens its KV sequence holds, so any slip in the
scheduler's cache bookkeeping (positions, reused prefixes, copied cells, paused requests) shows
up as a different answer. The real-model checks are in test_batching_real.py."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo
from lingxi.engines.batch import BatchScheduler, FairQueue, astream_request, stream_request, tenant_var
from lingxi.errors import EngineError, RateLimitError
from lingxi.gateway.admission import Admission

EOG = 0


class TinyModel:
    """A :class:`~lingxi.engines.batch.Backend` with a KV pool of ``n_cells`` and exact cell accounting."""

    def __init__(self, n_slots: int = 4, n_batch: int = 64, n_cells: int = 10_000, endless: bool = False):
        self.endless = endless  # never end a sequence by itself
        self.n_slots, self.n_batch, self.n_cells = n_slots, n_batch, n_cells
        self.kv_cells, self.per_slot = n_cells, False  # one pool, as /metrics reports it
        self.cells: dict[int, list[int]] = {s: [] for s in range(n_slots)}
        self.rows: dict[int, list[int]] = {}
        self.samplers_open = 0
        self.copies = 0
        self.batch_sizes: list[int] = []

    def used(self) -> int:
        return sum(len(c) for c in self.cells.values())

    def decode(self, tokens, pos, seqs, logits):
        if self.used() + len(tokens) > self.n_cells:
            return False
        self.rows = {}
        for i, (t, p, s, want) in enumerate(zip(tokens, pos, seqs, logits)):
            assert p == len(self.cells[s]), f"seq {s}: position {p} after {len(self.cells[s])} cells"
            self.cells[s].append(t)
            if want:
                self.rows[i] = list(self.cells[s])
        self.batch_sizes.append(len(tokens))
        return True

    @staticmethod
    def next_token(context: list[int]) -> int:
        h = sum((i + 1) * t for i, t in enumerate(context[-8:])) + len(context)
        return EOG if h % 41 == 0 else 1 + h % 26

    def sampler(self, params):
        self.samplers_open += 1
        return None if params.temperature == 0 else random.Random(params.seed)

    def sample(self, sampler, row):
        token = self.next_token(self.rows[row]) or (1 if self.endless else EOG)
        return token if sampler is None or token == EOG else 1 + (token + sampler.randrange(3)) % 26

    def free_sampler(self, sampler):
        self.samplers_open -= 1

    def seq_rm(self, seq, p0):
        del self.cells[seq][p0:]
        return True

    def seq_cp(self, src, dst, n):
        assert not self.cells[dst]
        self.cells[dst] = list(self.cells[src][:n])
        self.copies += 1

    def is_eog(self, token):
        return token == EOG

    def piece(self, token):
        return bytes([96 + token])  # 1 -> "a"


def reference(prompt: list[int], max_tokens: int) -> str:
    """What TinyModel answers greedily to ``prompt`` alone."""
    ctx, out = list(prompt), ""
    for _ in range(max_tokens):
        t = TinyModel.next_token(ctx)
        if t == EOG:
            break
        ctx.append(t)
        out += chr(96 + t)
    return out


@pytest.fixture
def thread():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def make(thread, **kw) -> tuple[BatchScheduler, TinyModel]:
    model = TinyModel(**kw)
    return BatchScheduler(model, thread, "tiny", n_ctx=4096, prefill_chunk=16), model


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def prompt_of(i: int, system: int = 20) -> list[int]:
    return [3, 1, 4, 1, 5][: 5] * (system // 5) + [1 + (i * 7 + k) % 26 for k in range(5 + i % 7)]


async def run_all(sched, prompts, max_tokens=12, params=None):
    async def one(p):
        gp = params or GenerationParams(max_tokens=max_tokens, temperature=0)
        return [c async for c in astream_request(sched, p, gp, (), gp.max_tokens)]
    return await asyncio.gather(*(one(p) for p in prompts))


def settle(thread):
    thread.submit(lambda: None).result()  # every step queued before this one has run


def test_fair_queue_serves_tenants_in_turn():
    q: FairQueue[str] = FairQueue()
    for i in range(4):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    q.push("c", "c0")
    q.push("b", "b1")
    assert [q.pop() for _ in range(len(q))] == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]
    q.push("a", "x")
    q.push("b", "y", front=True)
    assert q.pop() == "y" and q.remove_if(lambda s: s == "x") == ["x"] and len(q) == 0


def test_batched_answers_equal_answers_alone(thread):
    sched, model = make(thread, n_slots=4, n_batch=24)
    prompts = [prompt_of(i) for i in range(10)]
    results = asyncio.run(run_all(sched, prompts, max_tokens=12))
    assert [text(r) for r in results] == [reference(p, 12) for p in prompts]
    assert max(model.batch_sizes) <= 24 and any(b > 4 for b in model.batch_sizes)  # prefill shared the steps
    last = results[0][-1]
    assert last.finish_reason in ("stop", "length") and last.usage.prompt_tokens == len(prompts[0])
    settle(thread)
    assert sched.busy == 0 and model.samplers_open == 0


def test_next_turn_and_shared_system_prompt_reuse_the_cache(thread):
    sched, model = make(thread, n_slots=2)
    first = prompt_of(1, system=40)
    answer = text(list(stream_request(sched, first, GenerationParams(max_tokens=6, temperature=0), (), 6)))
    assert sched.reused_tokens == 0
    # the next turn: the whole first turn (prompt and answer) is a prefix of the new prompt
    second = first + [ord(ch) - 96 for ch in answer] + [9, 9, 9]
    out = text(list(stream_request(sched, second, GenerationParams(max_tokens=6, temperature=0), (), 6)))
    assert out == reference(second, 6)
    assert sched.reused_tokens >= len(first) + len(answer) - 1
    # two requests at once that share a 40-token system prompt: the second copies its cells
    before = sched.reused_tokens
    results = asyncio.run(run_all(sched, [prompt_of(5, system=40), prompt_of(6, system=40)], max_tokens=4))
    assert [text(r) for r in results] == [reference(prompt_of(i, 40), 4) for i in (5, 6)]
    assert model.copies >= 1 and sched.reused_tokens - before >= 2 * 40


def test_a_new_prompt_keeps_other_prompts_cached_while_a_slot_is_empty(thread):
    """Prompts sharing only a preamble go to empty slots (copying the preamble) instead of
    overwriting each other's caches, so each one asked again is a whole-prompt hit."""
    sched, model = make(thread, n_slots=4)
    prompts = [prompt_of(i, system=40) for i in range(4)]
    gp = GenerationParams(max_tokens=4, temperature=0)
    for p in prompts:  # one after another: each later one shares the 40-token preamble only
        assert text(list(stream_request(sched, p, gp, (), 4))) == reference(p, 4)
    settle(thread)
    assert [busy for busy, _ in sched.slot_states()] == [False] * 4
    assert all(n >= 40 for _, n in sched.slot_states())  # four distinct caches, none overwritten
    before = sched.reused_tokens
    for p in prompts:
        assert text(list(stream_request(sched, p, gp, (), 4))) == reference(p, 4)
    assert sched.reused_tokens - before == sum(len(p) - 1 for p in prompts)  # all but the last token


def test_cancelled_request_frees_its_slot_and_cells_at_once(thread):
    # A context and a token budget no delay of this thread can let the request fill: with make()'s
    # 4,096 positions, and later with 10,000 tokens, the scheduler's thread generated to the limit
    # before "busy" was read (CI, under load).
    model = TinyModel(n_slots=2, endless=True, n_cells=10_000_000)
    sched = BatchScheduler(model, thread, "tiny", n_ctx=10_000_000, prefill_chunk=16)

    async def main():
        stream = astream_request(sched, prompt_of(2), GenerationParams(max_tokens=1_000_000, temperature=0), (),
                                 1_000_000)
        await stream.__anext__()
        assert sched.busy == 1
        await stream.aclose()  # what a client disconnect does

    asyncio.run(main())
    settle(thread)
    settle(thread)
    assert sched.busy == 0 and sched.waiting == 0 and model.used() == 0 and model.samplers_open == 0


def test_thousand_mixed_requests_with_random_cancellations_leak_nothing(thread):
    rng = random.Random(13)
    sched, model = make(thread, n_slots=8, n_batch=48, n_cells=600)
    finished = cancelled = 0

    async def one(i):
        nonlocal finished, cancelled
        params = GenerationParams(max_tokens=rng.randint(1, 8), temperature=rng.choice([0, 0.8]),
                                  seed=rng.choice([None, i]), stop=rng.choice([(), ("k",)]))
        stream = astream_request(sched, prompt_of(i % 50, system=rng.choice([5, 20, 40])), params, params.stop,
                                 params.max_tokens)
        cut = rng.choice([None, None, 0, 1, 3])
        n = 0
        try:
            async for chunk in stream:
                if chunk.finish_reason:
                    finished += 1
                n += 1
                if cut is not None and n > cut:
                    cancelled += 1
                    break
                if rng.random() < 0.1:
                    await asyncio.sleep(0)
        finally:
            await stream.aclose()

    async def main():
        await asyncio.gather(*(one(i) for i in range(1000)))

    asyncio.run(main())
    settle(thread)
    settle(thread)
    assert finished + cancelled >= 1000 and cancelled > 100
    assert sched.busy == 0 and sched.waiting == 0 and model.samplers_open == 0
    # what cells remain belong to idle slots' prompt caches, exactly as the scheduler believes
    assert all(model.cells[s] == slot_cells for s, slot_cells in enumerate(s.cached for s in sched._slots))


def test_a_full_kv_pool_pauses_the_newest_request_and_resumes_it(thread):
    sched, model = make(thread, n_slots=4, n_batch=32, n_cells=90)
    prompts = [prompt_of(i, system=10) for i in range(4)]
    gate = threading.Event()
    thread.submit(gate.wait)  # the scheduler starts once all four wait, so they share the pool

    async def main():
        task = asyncio.ensure_future(run_all(sched, prompts, max_tokens=14))
        while sched.waiting < len(prompts):
            await asyncio.sleep(0.001)
        gate.set()
        return await task

    results = asyncio.run(main())
    assert [text(r) for r in results] == [reference(p, 14) for p in prompts]
    assert sched.preemptions > 0 and sched.busy == 0


def test_a_request_larger_than_the_pool_fails_alone(thread):
    sched, _ = make(thread, n_slots=2, n_cells=30)
    with pytest.raises(EngineError, match="KV cache"):
        list(stream_request(sched, prompt_of(3, system=40), GenerationParams(max_tokens=4, temperature=0), (), 4))
    assert text(list(stream_request(sched, [5, 6, 7], GenerationParams(max_tokens=3, temperature=0), (), 3))) \
        == reference([5, 6, 7], 3)


def test_seeded_sampling_repeats_and_stop_strings_cut(thread):
    sched, _ = make(thread)
    params = GenerationParams(max_tokens=10, temperature=0.9, seed=5)
    a = text(list(stream_request(sched, prompt_of(4), params, (), 10)))
    b = text(list(stream_request(sched, prompt_of(4), params, (), 10)))
    assert a == b
    full = reference(prompt_of(4), 10)
    stop = full[3:5]
    cut = list(stream_request(sched, prompt_of(4), GenerationParams(max_tokens=10, temperature=0), (stop,), 10))
    assert text(cut) == full[: full.index(stop)] and cut[-1].finish_reason == "stop"


def test_engine_queue_serves_tenants_round_robin(thread):
    sched, _ = make(thread, n_slots=1)
    order: list[str] = []

    async def one(tenant, i):
        tenant_var.set(tenant)
        async for chunk in astream_request(sched, prompt_of(i), GenerationParams(max_tokens=2, temperature=0), (), 2):
            if chunk.text and (tenant, i) not in order:
                order.append((tenant, i))

    import threading

    gate = threading.Event()
    thread.submit(gate.wait)  # hold the engine's thread until everyone has queued: no timing race

    async def main():
        burst = [asyncio.create_task(one("a", i)) for i in range(5)]
        await asyncio.sleep(0)
        late = asyncio.create_task(one("b", 9))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*burst, late)

    asyncio.run(main())
    assert order.index(("b", 9)) <= 1  # served right after the first of tenant a's burst


def test_admission_round_robin_across_tenants():
    async def main():
        adm = Admission(max_concurrency=1, max_queue=10, timeout_s=5)
        await adm.acquire("a")
        got: list[str] = []

        async def wait(tenant, tag):
            await adm.acquire(tenant)
            got.append(tag)
            assert tenant_var.get() == tenant
            adm.release(0.01)

        tasks = [asyncio.create_task(wait("a", f"a{i}")) for i in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(wait("b", "b0")))
        await asyncio.sleep(0)
        assert adm.waiting_by_tenant() == {"a": 4, "b": 1}
        adm.release(0.01)
        await asyncio.gather(*tasks)
        assert got == ["a0", "b0", "a1", "a2", "a3"] and adm.active == 0

    asyncio.run(main())


def test_admission_full_queue_and_timeout_refuse_with_429():
    async def main():
        adm = Admission(max_concurrency=1, max_queue=1, timeout_s=0.05)
        await adm.acquire("a")
        waiter = asyncio.create_task(adm.acquire("b"))
        await asyncio.sleep(0)
        with pytest.raises(RateLimitError):
            await adm.acquire("c")  # the queue holds one
        with pytest.raises(RateLimitError):
            await waiter  # timed out
        assert adm.waiting == 0
        adm.release(0.0)
        assert adm.active == 0

    asyncio.run(main())


def test_metrics_show_batch_occupancy_and_queue_wait(thread):
    pytest.importorskip("prometheus_client")
    from lingxi.gateway.metrics import GatewayMetrics

    sched, _ = make(thread, n_slots=3)
    asyncio.run(run_all(sched, [prompt_of(i) for i in range(5)], max_tokens=3))
    body = GatewayMetrics().render()[0].decode()
    assert 'lingxi_batch_slots{model="tiny"} 3.0' in body
    assert 'lingxi_batch_slots_busy{model="tiny"} 0.0' in body
    assert 'lingxi_batch_kv_cells{layout="shared",model="tiny"} 10000.0' in body
    assert 'lingxi_batch_queue_seconds_count{model="tiny"} 5.0' in body
    assert 'lingxi_batch_prompt_tokens_total{model="tiny"}' in body
    assert 'lingxi_batch_cache_evictions_total{model="tiny"} 0.0' in body


def test_a_request_whose_start_fails_gets_the_error_instead_of_waiting_forever(thread):
    """A sampler llama.cpp refuses (found with a wrong penalties call) used to leave the request
    popped from the queue but in no slot: its caller waited forever."""
    sched, model = make(thread, n_slots=2)
    original, calls = model.sampler, []

    def refusing(params):
        calls.append(params)
        if len(calls) == 1:
            raise TypeError("this function takes 5 arguments (4 given)")
        return original(params)

    model.sampler = refusing
    greedy = GenerationParams(max_tokens=4, temperature=0)
    with pytest.raises(EngineError, match="could not start"):
        text(list(stream_request(sched, prompt_of(1), greedy, (), 4)))
    assert text(list(stream_request(sched, prompt_of(1), greedy, (), 4))) == reference(prompt_of(1), 4)
    settle(thread)
    assert sched.busy == 0 and model.samplers_open == 0


# ------------------------------------------------------------ through the gateway


class BatchedTinyEngine(ChatEngine):
    """TinyModel behind a BatchScheduler as a gateway model, streamed the way the llama.cpp engine
    streams (``astream`` submits from the request's own task). Records the tenant of each request
    in the order the batch gives them a slot."""

    engine_name = "tinybatch"

    def __init__(self, thread, n_slots: int = 1):
        super().__init__("tiny")
        self.model = TinyModel(n_slots=n_slots)
        self.scheduler = BatchScheduler(self.model, thread, "tiny", n_ctx=4096, prefill_chunk=16)
        self.started: list[str] = []
        start = self.scheduler._start

        def recording(slot, req):
            self.started.append(req.tenant)
            start(slot, req)

        self.scheduler._start = recording

    @property
    def info(self):
        return ModelInfo(name="tiny", engine=self.engine_name, context_length=4096)

    def _tokens(self, prompt):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return [1 + ord(ch) % 26 for ch in text]

    def stream(self, prompt, params=None):
        params = params or GenerationParams()
        return stream_request(self.scheduler, self._tokens(prompt), params, params.stop, params.max_tokens)

    async def astream(self, prompt, params=None):
        params = params or GenerationParams()
        async for chunk in astream_request(self.scheduler, self._tokens(prompt), params, params.stop,
                                           params.max_tokens):
            yield chunk


def test_one_tenants_streamed_burst_cannot_starve_anothers_stream(tmp_path, thread):
    """The tenant a key belongs to reaches the batch's own queue for streamed requests: with one
    slot held back, tenant b's stream, sent after tenant a's burst of four, gets the slot second."""
    import threading

    import httpx
    from gateway_helpers import gateway_settings, running

    from lingxi.stores.keys import SQLiteKeyStore

    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    secret_a, _ = store.create("a")
    secret_b, _ = store.create("b")
    engine = BatchedTinyEngine(thread, n_slots=1)
    gate = threading.Event()
    thread.submit(gate.wait)  # the batch takes nobody until everyone has queued
    texts: dict[str, str] = {}

    def call(secret, tag):
        body = {"model": "tiny", "stream": True, "temperature": 0, "max_tokens": 3,
                "messages": [{"role": "user", "content": f"hello {tag}"}]}
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": f"Bearer {secret}"}) as resp:
            texts[tag] = resp.read().decode()

    with running(settings, engines={"tiny": engine}) as srv:
        calls = [threading.Thread(target=call, args=(secret_a, f"a{i}")) for i in range(4)]
        for t in calls:
            t.start()
        while engine.scheduler.waiting < 4:
            gate.wait(0.005)
        late = threading.Thread(target=call, args=(secret_b, "b"))
        late.start()
        while engine.scheduler.waiting < 5:
            gate.wait(0.005)
        gate.set()
        for t in [*calls, late]:
            t.join(30)
    assert engine.started == ["a", "b", "a", "a", "a"]
    assert all("[DONE]" in t for t in texts.values()) and len(texts) == 5


def test_a_worker_thread_stream_keeps_the_requests_tenant():
    """kb: answers run the model from a worker thread (iterate_in_thread): the tenant goes along."""
    from lingxi.engines.base import iterate_in_thread

    async def main():
        tenant_var.set("acme")
        return [t async for t in iterate_in_thread(lambda: iter([tenant_var.get()]))]

    assert asyncio.run(main()) == ["acme"]


def test_response_format_becomes_a_schema_and_an_engine_without_grammars_refuses_it(tmp_path):
    import json

    import httpx
    from gateway_helpers import gateway_settings, running

    from lingxi.engines.fake import FakeEngine
    from lingxi.errors import UsageError
    from lingxi.gateway.protocol import ChatCompletionRequest

    msgs = [{"role": "user", "content": "x"}]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    p = ChatCompletionRequest(model="m", messages=msgs, max_completion_tokens=7, response_format={
        "type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}).params()
    assert json.loads(p.json_schema) == schema and p.max_tokens == 7 and p.grammar is None
    assert json.loads(ChatCompletionRequest(model="m", messages=msgs, response_format={"type": "json_object"})
                      .params().json_schema) == {"type": "object"}
    assert ChatCompletionRequest(model="m", messages=msgs, response_format={"type": "text"}).params().json_schema is None
    assert ChatCompletionRequest(model="m", messages=msgs, grammar='root ::= "yes"').params().grammar == 'root ::= "yes"'
    with pytest.raises(UsageError, match="not both"):
        GenerationParams(grammar='root ::= "a"', json_schema="{}")
    with pytest.raises(UsageError, match="JSON object"):
        GenerationParams(json_schema="[1]")

    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake")}) as srv:
        url = srv.url + "/v1/chat/completions"
        for stream in (False, True):
            r = httpx.post(url, json={"model": "fake", "messages": msgs, "stream": stream,
                                      "response_format": {"type": "json_object"}})
            assert r.status_code == 400 and "JSON schema" in r.json()["error"]["message"], r.text
        r = httpx.post(url, json={"model": "fake", "messages": msgs, "response_format": {"type": "json_schema"}})
        assert r.status_code == 400 and "json_schema.schema" in r.json()["error"]["message"]
        assert httpx.post(url, json={"model": "fake", "messages": msgs,
                                     "response_format": {"type": "text"}}).status_code == 200


def test_kv_layout_left_unset_takes_a_stream_per_slot_only_where_memory_allows():
    from lingxi.engines.llamacpp import choose_per_slot, memory_bytes

    gib = 2**30
    assert choose_per_slot(None, 720 * 2**20, 24 * gib)  # bundled SmolLM2 at 8 × 4,096 cells
    assert not choose_per_slot(None, 4 * gib, 16 * gib)  # Llama-3-8B at 8 × 4,096 cells on 16 GiB
    assert choose_per_slot(True, 4 * gib, 16 * gib) and not choose_per_slot(False, 1, 16 * gib)
    assert memory_bytes() >= 2**28
