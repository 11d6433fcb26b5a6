"""The gateway with its neighbours: the semantic cache, the router, and knowledge bases (``kb:``)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from gateway_helpers import running

from lingxi.config import parse_config
from lingxi.engines.fake import FakeEngine

MSG = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


def settings_with(tmp_path, **gateway):
    data = {
        "home": str(tmp_path), "default_model": "fake", "default_embedder": "hash",
        "models": {"fake": {"engine": "fake"}, "fake2": {"engine": "fake"}},
        "embedders": {"hash": {"engine": "hash", "dim": 64}},
        "gateway": {"access_log": False, "cache": {"enabled": False}, **gateway},
    }
    return parse_config(data)


def test_cache_answers_repeats_without_the_model(tmp_path):
    fake = FakeEngine("fake", replies=["Paris.", "Lyon?"])
    settings = settings_with(tmp_path, cache={"enabled": True, "backend": "memory", "embedder": "hash"})
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        first = httpx.post(url, json={"model": "fake", "messages": MSG})
        assert first.headers["x-lingxi-cache"] == "miss"
        again = httpx.post(url, json={"model": "fake", "messages": MSG})
        assert again.headers["x-lingxi-cache"] == "exact"
        assert again.json()["choices"][0]["message"]["content"] == "Paris."
        assert again.json()["id"] != first.json()["id"]
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="fake", messages=MSG, stream=True) if ch.choices)
        assert streamed == "Paris."
        assert len(fake.prompts) == 1
        # another system prompt is another scope; no-cache skips the lookup
        other = [{"role": "system", "content": "Answer at length."}, MSG[1]]
        assert httpx.post(url, json={"model": "fake", "messages": other}).headers["x-lingxi-cache"] == "miss"
        bypass = httpx.post(url, json={"model": "fake", "messages": MSG}, headers={"cache-control": "no-cache"})
        assert "x-lingxi-cache" not in bypass.headers and len(fake.prompts) == 3
        metrics = httpx.get(srv.url + "/metrics").text
    assert 'lingxi_cache_lookups_total{model="fake",result="exact"} 2.0' in metrics


def test_cache_is_scoped_by_tenant(tmp_path):
    from lingxi.stores.keys import SQLiteKeyStore

    fake = FakeEngine("fake")
    settings = settings_with(tmp_path, cache={"enabled": True, "backend": "memory", "semantic": False})
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    a, _ = store.create("acme")
    b, _ = store.create("globex")
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        for key, expected in ((a, "miss"), (a, "exact"), (b, "miss")):
            r = httpx.post(url, json={"model": "fake", "messages": MSG}, headers={"authorization": f"Bearer {key}"})
            assert r.headers["x-lingxi-cache"] == expected


def test_router_rules_pick_the_model(tmp_path):
    local, strong = FakeEngine("fake", replies=["local answer"]), FakeEngine("fake2", replies=["strong answer"])
    settings = settings_with(tmp_path, router={"policy": "rules", "local_model": "fake", "strong_model": "fake2",
                                               "rules": [{"model": "fake2", "keywords": ["contract", "合同"]}]})
    with running(settings, engines={"fake": local, "fake2": strong}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        ids = [m.id for m in c.models.list()]
        assert "router" in ids
        r = c.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "Review this 合同 clause"}])
        body = r.parse()
        assert body.model == "fake2" and body.choices[0].message.content == "strong answer"
        assert r.headers["x-lingxi-route"] == "fake2"
        r = c.chat.completions.create(model="router", messages=[{"role": "user", "content": "hello"}])
        assert r.model == "fake" and r.choices[0].message.content == "local answer"
        streamed = list(c.chat.completions.create(model="router", stream=True,
                                                  messages=[{"role": "user", "content": "a contract"}]))
        assert {ch.model for ch in streamed} == {"fake2"}


def test_router_cascade_answers_through_the_gateway(tmp_path):
    local, strong = FakeEngine("fake", replies=["I am not sure."]), FakeEngine("fake2", replies=["Paris."])
    settings = settings_with(tmp_path, router={"policy": "cascade", "local_model": "fake", "strong_model": "fake2"})
    with running(settings, engines={"fake": local, "fake2": strong}) as srv:
        for stream in (False, True):
            r = httpx.post(srv.url + "/v1/chat/completions",
                           json={"model": "router", "messages": MSG, "stream": stream})
            assert r.status_code == 200
            assert r.headers["x-lingxi-route"] in ("fake", "fake2")
            if stream:
                assert r.text.rstrip().endswith("data: [DONE]")
            else:
                assert r.json()["model"] == r.headers["x-lingxi-route"]
            local.enqueue("I am not sure.")
            strong.enqueue("Paris.")


def test_a_failed_cascade_frees_its_queue_slot_once(tmp_path):
    from lingxi.errors import UpstreamError

    local, strong = FakeEngine("fake"), FakeEngine("fake2")
    settings = settings_with(tmp_path, max_concurrency=1,
                             router={"policy": "cascade", "local_model": "fake", "strong_model": "fake2"})
    with running(settings, engines={"fake": local, "fake2": strong}) as srv:
        for _ in range(2):
            local.enqueue(UpstreamError("http://local/v1", "down", status=500))
            strong.enqueue(UpstreamError("http://strong/v1", "down", status=500))
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "router", "messages": MSG})
            assert r.status_code == 502
        assert srv.gateway.admission.active == 0  # was -2: each failure freed the slot twice


def test_a_client_that_hangs_up_on_done_still_gets_its_answer_cached(tmp_path):
    fake = FakeEngine("fake", replies=["Paris."])
    settings = settings_with(tmp_path, cache={"enabled": True, "backend": "memory", "semantic": False})
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        with httpx.stream("POST", url, json={"model": "fake", "messages": MSG, "stream": True}) as resp:
            for line in resp.iter_lines():
                if line == "data: [DONE]":
                    break  # and close the connection at once, as some clients do
        again = httpx.post(url, json={"model": "fake", "messages": MSG})
        assert again.headers["x-lingxi-cache"] == "exact" and len(fake.prompts) == 1


@pytest.fixture
def kb_settings(tmp_path):
    import lingxi.knowledge as knowledge
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.md").write_text(
        "# Leave policy\n\nEmployees get 25 days of paid annual leave per year.\n\n"
        "# 报销\n\n差旅费用须在出差结束后三十天内提交报销申请。\n", encoding="utf-8")
    settings = settings_with(tmp_path / "home", cache={"enabled": True, "backend": "memory", "semantic": False})
    kb = knowledge.create_kb("docs", settings, embedder="hash")
    kb.ingest([str(docs)], progress=False)
    return settings, docs


def test_kb_model_answers_with_citations(kb_settings):
    settings, _ = kb_settings
    fake = FakeEngine("fake")
    with running(settings, engines={"fake": fake}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        assert "kb:docs" in [m.id for m in c.models.list()]
        fake.enqueue("Employees get 25 days of paid annual leave per year.")
        q = [{"role": "user", "content": "How many days of paid annual leave do employees get?"}]
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "kb:docs", "messages": q}).json()
        message = r["choices"][0]["message"]
        assert "25 days" in message["content"]
        assert message["citations"] and {"id", "source", "text", "score"} <= set(message["citations"][0])
        assert "policy.md" in message["citations"][0]["source"]

        fake.enqueue("差旅费用须在出差结束后三十天内提交报销申请。")
        with httpx.stream("POST", srv.url + "/v1/chat/completions",
                          json={"model": "kb:docs", "stream": True,
                                "messages": [{"role": "user", "content": "差旅费用多久内提交报销？"}]}) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
        last = events[-1]["choices"][0]
        assert last["finish_reason"] == "stop" and last["delta"]["citations"]
        assert "三十天" in last["delta"]["citations"][0]["text"]

        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="kb:nope", messages=q)


def test_a_quoted_kb_answer_takes_a_question_longer_than_the_models_window(kb_settings):
    # no model reads the question when the answer is quoted: its length is the retrievers' business
    settings, _ = kb_settings
    fake = FakeEngine("fake", context_length=64)
    question = "How many days of paid annual leave do employees get? " + "Please answer precisely. " * 40
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        body = {"model": "kb:docs", "messages": [{"role": "user", "content": question}]}
        quoted = httpx.post(url, json=body | {"answer_mode": "extract"})
        assert quoted.status_code == 200 and "25 days" in quoted.json()["choices"][0]["message"]["content"]
        written = httpx.post(url, json=body | {"answer_mode": "generate"})
        assert written.status_code == 400 and written.json()["error"]["code"] == "context_length_exceeded"


def test_kb_update_invalidates_cached_answers(kb_settings):
    settings, docs = kb_settings
    fake = FakeEngine("fake")
    q = [{"role": "user", "content": "How many days of paid annual leave do employees get?"}]
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        assert httpx.post(url, json={"model": "kb:docs", "messages": q}).headers["x-lingxi-cache"] == "miss"
        assert httpx.post(url, json={"model": "kb:docs", "messages": q}).headers["x-lingxi-cache"] == "exact"
        (docs / "policy.md").write_text("# Leave policy\n\nEmployees get 30 days of paid annual leave per year.\n",
                                        encoding="utf-8")
        import lingxi.knowledge as knowledge

        knowledge.open_kb("docs", settings).ingest([str(docs)], progress=False)
        assert httpx.post(url, json={"model": "kb:docs", "messages": q}).headers["x-lingxi-cache"] == "miss"


@pytest.mark.parametrize("cache", [False, True])
def test_kb_answers_only_from_documents_the_key_may_read(tmp_path, cache):
    import lingxi.knowledge as knowledge
    from lingxi.stores.keys import SQLiteKeyStore

    docs = tmp_path / "legal"
    docs.mkdir()
    (docs / "merger.md").write_text("# Merger\n\nThe merger with Globex closes on 30 June.\n", encoding="utf-8")
    settings = settings_with(tmp_path / "home", cache={"enabled": cache, "backend": "memory", "semantic": False})
    knowledge.create_kb("secret", settings, embedder="hash").ingest([str(docs)], groups=["legal"], progress=False)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    lawyer, _ = store.create("acme", groups=["legal"])
    clerk, _ = store.create("acme", groups=["hr"])
    nobody, _ = store.create("acme")  # a key made without groups reads public documents only
    operator, _ = store.create("ops", groups=["*"])
    q = [{"role": "user", "content": "When does the merger with Globex close?"}]
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        def ask(key):
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "kb:secret", "messages": q},
                           headers={"authorization": f"Bearer {key}"})
            return r.json()["choices"][0]["message"]
        # the lawyer asks first: with the cache on, their answer must not reach the others
        allowed, denied, ungrouped, everything = ask(lawyer), ask(clerk), ask(nobody), ask(operator)
    assert allowed["citations"] and "30 June" in allowed["citations"][0]["text"]
    for answer in (denied, ungrouped):
        assert answer["citations"] == [] and "30 June" not in answer["content"]
    assert everything["citations"] and "30 June" in everything["citations"][0]["text"]


def test_cached_answers_are_kept_apart_by_generation_parameters(tmp_path):
    fake = FakeEngine("fake", replies=["one two", "one two three four five"])
    settings = settings_with(tmp_path, cache={"enabled": True, "backend": "memory", "semantic": False})
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        short = httpx.post(url, json={"model": "fake", "messages": MSG, "max_tokens": 2})
        full = httpx.post(url, json={"model": "fake", "messages": MSG, "max_tokens": 500})
        again = httpx.post(url, json={"model": "fake", "messages": MSG, "max_tokens": 2})
    assert short.headers["x-lingxi-cache"] == "miss" and full.headers["x-lingxi-cache"] == "miss"
    assert full.json()["choices"][0]["message"]["content"] == "one two three four five"
    assert again.headers["x-lingxi-cache"] == "exact"
