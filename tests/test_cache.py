"""The gateway's semantic cache: exact and semantic hits, strict scoping, the meaning guard, backends."""

from __future__ import annotations

import asyncio
import time

import pytest

from lingxi.config import parse_config
from lingxi.errors import ConfigError
from lingxi.gateway import cache as cache_module
from lingxi.gateway.cache import CacheScope, create_cache, normalize_text

SCOPE = CacheScope(tenant="acme", model="smollm2", system_prompt="You are helpful.", kb_version=None)
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "model": "smollm2",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Use the 'forgot password' link."},
                       "finish_reason": "stop"}]}


def user(text: str, *earlier: dict) -> list[dict]:
    return [*earlier, {"role": "user", "content": text}]


def make(tmp_path, backend: str = "memory", **cache: object):
    settings = parse_config({
        "home": str(tmp_path),
        "embedders": {"hash": {"engine": "hash"}},
        "gateway": {"cache": {"backend": backend, "embedder": "hash", "similarity": 0.8, **cache}},
    })
    return create_cache(settings)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_exact_hit_after_normalising_case_width_space_and_punctuation(tmp_path, backend):
    async def go():
        c = make(tmp_path, backend)
        assert await c.get(SCOPE, user("How do I reset my password?")) is None
        await c.put(SCOPE, user("How do I reset my password?"), ANSWER)
        hit = await c.get(SCOPE, user("  how do I   RESET my password？？ "))
        await c.close()
        return hit

    hit = run(go())
    assert hit.kind == "exact" and hit.similarity == 1.0 and hit.response == ANSWER


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_semantic_hit_for_a_paraphrase_reports_its_similarity(tmp_path, backend):
    async def go():
        c = make(tmp_path, backend)
        await c.put(SCOPE, user("How do I reset my password on the website?"), ANSWER)
        hit = await c.get(SCOPE, user("On the website, how can I reset my password?"))
        await c.close()
        return hit

    hit = run(go())
    assert hit.kind == "semantic" and 0.8 <= hit.similarity < 1.0
    assert hit.response == ANSWER and hit.question == "How do I reset my password on the website?"


@pytest.mark.parametrize("other", [
    CacheScope("other-tenant", "smollm2", "You are helpful.", None),
    CacheScope("acme", "qwen", "You are helpful.", None),
    CacheScope("acme", "smollm2", "You are a pirate.", None),
    CacheScope("acme", "smollm2", "You are helpful.", "kb-v2"),
])
def test_answers_never_cross_tenant_model_system_prompt_or_kb_version(tmp_path, other):
    async def go():
        c = make(tmp_path)
        await c.put(SCOPE, user("How do I reset my password?"), ANSWER)
        return await c.get(other, user("How do I reset my password?")), await c.get(SCOPE, user("How do I reset my password?"))

    crossed, same = run(go())
    assert crossed is None and same is not None


def test_a_kb_update_retires_the_answers_grounded_in_the_old_version(tmp_path):
    async def go():
        c = make(tmp_path)
        v1 = CacheScope("acme", "kb:docs", "", "v1")
        await c.put(v1, user("What is the refund window?"), ANSWER)
        return await c.get(CacheScope("acme", "kb:docs", "", "v2"), user("What is the refund window?"))

    assert run(go()) is None


def test_the_same_question_after_different_earlier_turns_is_a_miss(tmp_path):
    async def go():
        c = make(tmp_path)
        first = [{"role": "user", "content": "Tell me about Python."}, {"role": "assistant", "content": "A language."}]
        other = [{"role": "user", "content": "Tell me about snakes."}, {"role": "assistant", "content": "Reptiles."}]
        await c.put(SCOPE, user("How long does it live?", *first), ANSWER)
        return (await c.get(SCOPE, user("How long does it live?", *other)),
                await c.get(SCOPE, user("How long does it live?", *first)))

    miss, hit = run(go())
    assert miss is None and hit.kind == "exact"


@pytest.mark.parametrize("stored, asked", [
    ("How do I enable two-factor login on my account?", "How do I disable two-factor login on my account?"),
    ("Is it safe to restart the database server now?", "Is it not safe to restart the database server now?"),
    ("How many vacation days do I get after 3 years?", "How many vacation days do I get after 5 years?"),
    ("What is the weather in Paris tomorrow morning?", "What is the weather in London tomorrow morning?"),
    ("明天北京会下雨吗", "明天上海会下雨吗"),
    ("我可以在周末加班吗", "我不可以在周末加班吗"),
    ("三天内可以退货吗", "七天内可以退货吗"),
])
def test_the_guard_refuses_look_alikes_that_the_embedding_would_serve(tmp_path, stored, asked):
    async def go(guard):
        c = make(tmp_path / str(guard), similarity=0.3, guard=guard)
        await c.put(SCOPE, user(stored), ANSWER)
        return await c.get(SCOPE, user(asked))

    assert run(go(False)) is not None, "the pair must be close enough to be served without the guard"
    assert run(go(True)) is None


def test_semantic_off_serves_exact_hits_only(tmp_path):
    async def go():
        c = make(tmp_path, semantic=False)
        await c.put(SCOPE, user("How do I reset my password on the website?"), ANSWER)
        return (await c.get(SCOPE, user("how do i reset my password on the website")),
                await c.get(SCOPE, user("On the website, how can I reset my password?")))

    exact, paraphrase = run(go())
    assert exact.kind == "exact" and paraphrase is None


def test_answers_expire_after_ttl(tmp_path, monkeypatch):
    async def go():
        c = make(tmp_path, "sqlite", ttl_s=60)
        await c.put(SCOPE, user("How do I reset my password on the website?"), ANSWER)
        later = time.time() + 61
        monkeypatch.setattr(cache_module.time, "time", lambda: later)
        return (await c.get(SCOPE, user("How do I reset my password on the website?")),
                await c.get(SCOPE, user("On the website, how can I reset my password?")))

    assert run(go()) == (None, None)


def test_memory_backend_evicts_the_oldest_past_max_entries(tmp_path):
    async def go():
        c = make(tmp_path, max_entries=2)
        for q in ("first question about apples", "second question about pears", "third question about plums"):
            await c.put(SCOPE, user(q), ANSWER)
        return [await c.get(SCOPE, user(q)) is not None for q in
                ("first question about apples", "second question about pears", "third question about plums")]

    assert run(go()) == [False, True, True]


def test_sqlite_cache_survives_a_restart_and_is_shared_by_two_processes_worth_of_caches(tmp_path):
    async def go():
        a = make(tmp_path, "sqlite")
        b = make(tmp_path, "sqlite")
        assert await b.get(SCOPE, user("On the website, how can I reset my password?")) is None
        await a.put(SCOPE, user("How do I reset my password on the website?"), ANSWER)
        seen_by_b = await b.get(SCOPE, user("On the website, how can I reset my password?"))
        await a.close()
        await b.close()
        reopened = make(tmp_path, "sqlite")
        after_restart = await reopened.get(SCOPE, user("On the website, how can I reset my password?"))
        await reopened.close()
        return seen_by_b, after_restart

    seen_by_b, after_restart = run(go())
    assert seen_by_b.kind == "semantic" and after_restart.response == ANSWER


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
    [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None,
                                              "tool_calls": [{"id": "1", "type": "function"}]}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    [{"role": "user", "content": "   "}],
    [],
])
def test_conversations_a_text_cache_cannot_compare_are_never_stored_or_served(tmp_path, messages):
    async def go():
        c = make(tmp_path)
        await c.put(SCOPE, messages, ANSWER)
        return await c.get(SCOPE, messages), c.store._entries

    hit, stored = run(go())
    assert hit is None and not stored


def test_text_parts_content_is_cached_like_a_string(tmp_path):
    async def go():
        c = make(tmp_path)
        await c.put(SCOPE, [{"role": "user", "content": [{"type": "text", "text": "What is RAG?"}]}], ANSWER)
        return await c.get(SCOPE, user("what is rag"))

    assert run(go()).kind == "exact"


def test_normalize_text():
    assert normalize_text("  ＨＥＬＬＯ，  World!! ") == "hello, world"
    assert normalize_text("你好吗？") == "你好吗"
    assert normalize_text("Is 3.5 > 3?") == "is 3.5 > 3"
    assert normalize_text("What is 5!") == "what is 5!" != normalize_text("what is 5?")  # a factorial


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="gateway.cache.redis_url"):
        create_cache(parse_config({"gateway": {"cache": {"backend": "redis"}}}))
    with pytest.raises(ConfigError, match="gateway.cache.embedder: unknown embedder 'nope'"):
        create_cache(parse_config({"home": str(tmp_path), "gateway": {"cache": {"embedder": "nope"}}}))


@pytest.mark.slow
def test_real_embedder_serves_a_paraphrase_and_the_guard_refuses_a_negation(tmp_path):
    settings = parse_config({"home": str(tmp_path), "gateway": {"cache": {"backend": "sqlite", "embedder": "minilm",
                                                                          "similarity": 0.8}}})

    async def go():
        c = create_cache(settings)
        await c.put(SCOPE, user("How can I reset my account password?"), ANSWER)
        paraphrase = await c.get(SCOPE, user("How do I reset the password for my account?"))
        negated = await c.get(SCOPE, user("Why can I not reset my account password?"))
        unrelated = await c.get(SCOPE, user("What is the capital of France?"))
        await c.close()
        return paraphrase, negated, unrelated

    paraphrase, negated, unrelated = run(go())
    assert paraphrase is not None and paraphrase.kind == "semantic"
    assert negated is None and unrelated is None


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_concurrent_requests_get_their_own_answers(tmp_path, backend):
    topics = ["printer", "router", "laptop", "monitor", "keyboard", "scanner", "projector", "webcam"]

    async def go():
        c = make(tmp_path, backend)
        await asyncio.gather(*(c.put(SCOPE, user(f"How do I reset the {t} in the office?"), {"id": t}) for t in topics))
        hits = await asyncio.gather(*(c.get(SCOPE, user(f"In the office, how can I reset the {t}?")) for t in topics * 3))
        await c.close()
        return hits

    hits = run(go())
    assert [h.response["id"] if h else None for h in hits] == topics * 3
