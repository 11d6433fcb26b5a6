"""Cheap checks before expensive work, and no work for nobody (issue 11, point 6), plus the
typed knowledge-base path: kb: answers are greedy unless asked, and fail over like any model."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from gateway_helpers import gateway_settings, running

from lingxi.engines.base import GenerationParams
from lingxi.engines.embedders import HashEmbedder
from lingxi.engines.fake import FakeEngine
from lingxi.errors import UpstreamError

MSG = [{"role": "user", "content": "What is the capital of France?"}]


class CountingEmbedder(HashEmbedder):
    """A hash embedder that counts the texts it embedded (and may take its time per text)."""

    def __init__(self, delay_s: float = 0.0):
        from lingxi.config import HashEmbedder as HashConfig

        super().__init__("spy", HashConfig(engine="hash", dim=32))
        self.texts, self.delay_s = 0, delay_s
        self._lock = threading.Lock()

    def embed(self, texts, *, kind="passage"):
        for _ in texts:
            time.sleep(self.delay_s)
            with self._lock:
                self.texts += 1
        return super().embed(texts, kind=kind)


@pytest.fixture
def spied_cache():
    from lingxi.gateway.cache import SemanticCache
    from lingxi.stores.cache import MemoryCacheStore

    spy = CountingEmbedder()
    return spy, SemanticCache(MemoryCacheStore(1000, 3600), embedder=spy, embedder_name="spy", guard=False)


def test_the_length_check_runs_before_the_cache_embeds_anything(tmp_path, spied_cache):
    # A 200k-character prompt hung for 300 s: the cache embedded it before the context check.
    spy, cache = spied_cache
    fake = FakeEngine("fake", context_length=2048)
    with running(gateway_settings(tmp_path), engines={"fake": fake}, cache=cache) as srv:
        url = srv.url + "/v1/chat/completions"
        assert httpx.post(url, json={"model": "fake", "messages": MSG}).status_code == 200
        assert spy.texts == 1 and len(fake.prompts) == 1  # the cache now has an entry to compare with
        huge = [{"role": "user", "content": "word " * 20_000}]
        start = time.perf_counter()
        r = httpx.post(url, json={"model": "fake", "messages": huge})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert time.perf_counter() - start < 1
        assert spy.texts == 1 and len(fake.prompts) == 1  # neither embedded nor sent to the model
        assert "x-lingxi-cache" not in r.headers


def test_long_questions_are_cached_by_exact_text_only(tmp_path, spied_cache):
    spy, cache = spied_cache
    fake = FakeEngine("fake", replies=["long answer", "short answer"])
    with running(gateway_settings(tmp_path), engines={"fake": fake}, cache=cache) as srv:
        url = srv.url + "/v1/chat/completions"
        long_question = [{"role": "user", "content": "Summarise this: " + "lorem ipsum " * 250}]  # 3k chars
        assert httpx.post(url, json={"model": "fake", "messages": long_question}).headers["x-lingxi-cache"] == "miss"
        again = httpx.post(url, json={"model": "fake", "messages": long_question})
        assert again.headers["x-lingxi-cache"] == "exact" and again.json()["choices"][0]["message"]["content"] == \
            "long answer"
        assert spy.texts == 0  # never embedded, for the lookup or the store
        httpx.post(url, json={"model": "fake", "messages": MSG})
        assert spy.texts == 1  # a short question still gets a semantic lookup (embedded once)


def test_a_client_that_hangs_up_stops_its_embeddings(tmp_path, monkeypatch):
    # A 100k-character /v1/embeddings request kept both cores busy ~45 s after the client left.
    embedded = []
    original = HashEmbedder.embed

    def slow_embed(self, texts, *, kind="passage"):  # the configured hash embedder, slowed down and counted
        for text in texts:
            time.sleep(0.005)
            embedded.append(text)
        return original(self, texts, kind=kind)

    monkeypatch.setattr(HashEmbedder, "embed", slow_embed)
    settings = gateway_settings(tmp_path)
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        texts = [f"text number {i}" for i in range(320)]  # 1.6 s of work in all
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/v1/embeddings", json={"model": "hash", "input": texts}, timeout=0.2)
        time.sleep(0.4)
        stopped_at = len(embedded)
        time.sleep(0.3)
        assert len(embedded) == stopped_at < 320
        assert srv.gateway.admission.active == 0
        done = httpx.post(srv.url + "/v1/embeddings", json={"model": "hash", "input": texts[:3]})
        assert done.status_code == 200 and len(done.json()["data"]) == 3


def test_a_user_message_with_null_content_is_a_400(tmp_path):
    fake = FakeEngine("fake")
    with running(gateway_settings(tmp_path), engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        r = httpx.post(url, json={"model": "fake", "messages": [{"role": "user", "content": None}]})
        assert r.status_code == 400 and "messages.0" in r.json()["error"]["message"]
        assert "null" in r.json()["error"]["message"]
        # an assistant turn may go without content, as OpenAI allows
        ok = httpx.post(url, json={"model": "fake", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
            {"role": "user", "content": "again"}]})
        assert ok.status_code == 200
    assert len(fake.prompts) == 1


class ToyTokenizerEmbedder(HashEmbedder):
    """A hash embedder with a five-word tokenizer, to read token ids."""

    VOCAB = ["hello", "world", "lingxi", "answers", "questions"]
    decodes_tokens = True

    def __init__(self):
        from lingxi.config import HashEmbedder as HashConfig

        super().__init__("toy", HashConfig(engine="hash", dim=32))

    def decode(self, ids):
        return " ".join(self.VOCAB[i] for i in ids)


def test_embeddings_take_token_id_arrays_when_the_embedder_can_read_them(tmp_path):
    # LangChain's OpenAIEmbeddings sends token ids by default; they were rejected.
    settings = gateway_settings(tmp_path, replicas={})
    with running(settings, engines={"fake": FakeEngine("fake")}, embedders={"hash": ToyTokenizerEmbedder()}) as srv:
        url = srv.url + "/v1/embeddings"

        def vectors(payload):
            r = httpx.post(url, json={"model": "hash", "input": payload})
            assert r.status_code == 200, r.text
            return np.array([d["embedding"] for d in r.json()["data"]])

        as_text = vectors(["hello world", "lingxi answers questions"])
        assert np.allclose(vectors([[0, 1], [2, 3, 4]]), as_text)
        assert np.allclose(vectors([0, 1]), as_text[:1])


def test_token_ids_for_an_embedder_without_a_tokenizer_say_which_ones_take_them(tmp_path):
    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake")}) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "hash", "input": [[101, 2023], [7]]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "token-id arrays" in message and "minilm" in message and "'hash' takes text only" in message


class RecordingEngine(FakeEngine):
    def __init__(self, name="fake", **kw):
        super().__init__(name, **kw)
        self.params: list[GenerationParams] = []

    def stream(self, prompt, params=None):
        self.params.append(params)
        return super().stream(prompt, params)


@pytest.fixture
def kb_settings(tmp_path):
    """Settings (extra keys go to [gateway]) with a knowledge base 'docs' about annual leave."""
    import lingxi.knowledge as knowledge

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 25 days of paid annual leave per year.\n",
                                   encoding="utf-8")

    def make(**gateway):
        settings = gateway_settings(tmp_path / "home", **gateway)
        knowledge.create_kb("docs", settings, embedder="hash").ingest([str(docs)], progress=False)
        return settings
    return make


QUESTION = [{"role": "user", "content": "How many days of paid annual leave do employees get?"}]


def test_kb_answers_are_greedy_and_as_long_as_configured_unless_the_request_says(kb_settings):
    settings = kb_settings(kb_model="fake")
    engine = RecordingEngine("fake")
    with running(settings, engines={"fake": engine}) as srv:
        url = srv.url + "/v1/chat/completions"
        assert httpx.post(url, json={"model": "kb:docs", "messages": QUESTION}).status_code == 200
        assert httpx.post(url, json={"model": "kb:docs", "messages": QUESTION, "temperature": 0.9,
                                     "max_tokens": 40}).status_code == 200
    default, asked = engine.params
    assert default.temperature == 0.0 and default.max_tokens == settings.knowledge.answer_max_tokens
    assert asked.temperature == 0.9 and asked.max_tokens == 40


def test_a_kb_answer_fails_over_to_another_replica_of_its_model(kb_settings):
    settings = kb_settings(kb_model="pair", replicas={"pair": ["fake", "fake2"]})
    answer = "Employees get 25 days of paid annual leave per year."
    down = UpstreamError("http://replica/v1", "down", status=503, retryable=True)
    a, b = FakeEngine("fake", replies=[down, down]), FakeEngine("fake2", replies=[answer, answer])
    with running(settings, engines={"fake": a, "fake2": b}) as srv:
        srv.gateway.pools["pair"].replicas[1].healthy = False  # so the failing replica is always picked first
        for stream in (False, True):
            r = httpx.post(srv.url + "/v1/chat/completions",
                           json={"model": "kb:docs", "messages": QUESTION, "stream": stream})
            assert r.status_code == 200 and "25 days" in r.text and '"citations"' in r.text
    assert len(a.prompts) == len(b.prompts) == 2  # each time the down replica failed, the other answered


def test_kb_answer_mode_is_passed_to_the_knowledge_base_and_reported(kb_settings):
    settings = kb_settings(kb_model="fake")
    fake = FakeEngine("fake")
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        quoted = httpx.post(url, json={"model": "kb:docs", "messages": QUESTION, "answer_mode": "extract"}).json()
        assert quoted["answer_mode"] == "extracted" and "25 days" in quoted["choices"][0]["message"]["content"]
        assert quoted["usage"]["completion_tokens"] == 0 and fake.prompts == []  # quoted, not generated
        fake.enqueue("Employees get 25 days of paid annual leave per year.")
        with httpx.stream("POST", url, json={"model": "kb:docs", "messages": QUESTION, "stream": True,
                                             "answer_mode": "generate"}) as r:
            last = [line for line in r.iter_lines() if line.startswith("data: {")][-1]
        assert '"answer_mode":"generated"' in last and len(fake.prompts) == 1
        r = httpx.post(url, json={"model": "fake", "messages": QUESTION, "answer_mode": "extract"})
        assert r.status_code == 400 and "only kb: models" in r.json()["error"]["message"]


def test_a_cached_quote_is_not_served_for_a_generated_answer(kb_settings):
    settings = kb_settings(kb_model="fake", cache={"enabled": True})
    fake = FakeEngine("fake")
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        quoted = httpx.post(url, json={"model": "kb:docs", "messages": QUESTION, "answer_mode": "extract"})
        assert quoted.json()["answer_mode"] == "extracted"
        again = httpx.post(url, json={"model": "kb:docs", "messages": QUESTION, "answer_mode": "extract"})
        assert again.headers["x-lingxi-cache"] == "exact"  # the same request is a hit
        fake.enqueue("Employees get 25 days of paid annual leave per year.")
        made = httpx.post(url, json={"model": "kb:docs", "messages": QUESTION, "answer_mode": "generate"})
        assert made.headers["x-lingxi-cache"] == "miss" and made.json()["answer_mode"] == "generated"
        assert len(fake.prompts) == 1


def test_a_stream_closed_before_it_was_read_stops_its_generation(tmp_path):
    # The HTTP layer always closes a Stream; if the client left before the response started,
    # nothing iterated it, and the generation fetched for its first chunk used to run on.
    import asyncio

    from gateway_helpers import SlowEngine

    from lingxi.gateway import protocol as wire
    from lingxi.gateway.pipeline import Outcome
    from lingxi.gateway.service import Gateway
    from lingxi.identity import Caller

    slow = SlowEngine("fake", tokens=100, delay_s=0.01)

    async def run() -> int:
        gw = Gateway(gateway_settings(tmp_path), engines={"fake": slow}, router=False)
        await gw.start()
        req = wire.ChatCompletionRequest.model_validate({"model": "fake", "messages": MSG, "stream": True})
        stream = await gw.chat(req, Caller(key=None, tenant="local"), Outcome())
        await stream.close()
        await asyncio.sleep(0.3)
        await gw.close()
        return slow.produced

    assert asyncio.run(run()) < 20 and slow.finished.is_set()
