"""The gateway's request pipeline: stages from config see every request kind exactly once, can
refuse a request with an OpenAI-shaped error, and wrap the answer's text, streamed or not."""

from __future__ import annotations

import json
import re
import textwrap

import httpx
import pytest
from gateway_helpers import running

from lingxi.config import parse_config
from lingxi.engines.fake import FakeEngine
from lingxi.errors import ConfigError, UpstreamError
from lingxi.gateway.pipeline import Stage, build_stages, register_stage, unregister_stage

MSG = [{"role": "user", "content": "What is the capital of France?"}]

# A third-party package's stage, installed the way pip would: a module plus a .dist-info folder
# whose entry_points.txt registers it in the 'lingxi.stages' group.
THIRD_PARTY = textwrap.dedent('''
    from lingxi.errors import ConfigError, UsageError
    from lingxi.gateway.pipeline import Stage


    class Refused(UsageError):
        code = "content_filter"


    class CountingStage(Stage):
        name = "counting"

        def __init__(self, settings, options):
            super().__init__(settings, options)
            unknown = sorted(set(options) - {"block"})
            if unknown:
                raise ConfigError([f"gateway.stage_options.counting.{k}: unknown key" for k in unknown])
            self.block = options.get("block")
            self.before_ids, self.after_ids, self.wrapped = [], [], {}
            self.requests, self.outcomes = {}, {}

        async def before(self, req):
            self.before_ids.append(req.id)
            self.requests[req.id] = req
            text = " ".join(m["content"] for m in req.messages or []) + (req.prompt or "")
            if self.block and self.block in text:
                raise Refused(f"blocked by policy: '{self.block}'")

        async def wrap(self, req, text):
            pieces = self.wrapped.setdefault(req.id, [])
            async for piece in text:
                pieces.append(piece)
                yield piece

        async def after(self, req, outcome):
            self.after_ids.append(req.id)
            self.outcomes[req.id] = outcome
''')


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "thirdparty_stage-0.1.dist-info").mkdir(parents=True)
    (site / "thirdparty_stage.py").write_text(THIRD_PARTY, encoding="utf-8")
    (site / "thirdparty_stage-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-stage\nVersion: 0.1\n", encoding="utf-8")
    (site / "thirdparty_stage-0.1.dist-info" / "entry_points.txt").write_text(
        "[lingxi.stages]\ncounting = thirdparty_stage:CountingStage\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    return site


def settings_for(home, **gateway):
    return parse_config({
        "home": str(home), "default_model": "fake", "default_embedder": "hash",
        "models": {"fake": {"engine": "fake"}, "fake2": {"engine": "fake"}},
        "embedders": {"hash": {"engine": "hash", "dim": 32}},
        "gateway": {"access_log": False, "health_interval_s": 0, "cache": {"enabled": False}, **gateway},
    })


def sse_text(resp: httpx.Response) -> tuple[str, list[dict]]:
    events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0].get("delta", {}).get("content") or e["choices"][0].get("text") or ""
                   for e in events if e.get("choices"))
    return text, events


def test_a_stage_from_config_sees_every_request_kind_once_in_and_once_out(tmp_path, third_party):
    import lingxi.knowledge as knowledge

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 25 days of paid annual leave per year.\n",
                                   encoding="utf-8")
    settings = settings_for(tmp_path / "home", stages=["counting"],
                            cache={"enabled": True, "backend": "memory", "semantic": False},
                            router={"policy": "cascade", "local_model": "fake", "strong_model": "fake2"})
    knowledge.create_kb("docs", settings, embedder="hash").ingest([str(docs)], progress=False)
    fake, strong = FakeEngine("fake"), FakeEngine("fake2")
    leave = [{"role": "user", "content": "How many days of paid annual leave do employees get?"}]
    got: dict[str, str] = {}
    with running(settings, engines={"fake": fake, "fake2": strong}) as srv:
        stage = srv.gateway.pipeline.stages[0]
        chat = srv.url + "/v1/chat/completions"

        def body(r: httpx.Response) -> dict:
            assert r.status_code == 200, r.text
            return r.json()

        fake.enqueue("Paris.")
        got["chat"] = body(httpx.post(chat, json={"model": "fake", "messages": MSG}))["choices"][0]["message"]["content"]
        hit = httpx.post(chat, json={"model": "fake", "messages": MSG})
        assert hit.headers["x-lingxi-cache"] == "exact"
        got["cache hit"] = body(hit)["choices"][0]["message"]["content"]
        fake.enqueue("one two three")
        with httpx.stream("POST", chat, json={"model": "fake", "stream": True,
                                              "messages": [{"role": "user", "content": "count"}]}) as r:
            got["stream"] = sse_text(r)[0]
        fake.enqueue("a completion")
        got["completion"] = body(httpx.post(srv.url + "/v1/completions",
                                            json={"model": "fake", "prompt": "Say something"}))["choices"][0]["text"]
        fake.enqueue("Employees get 25 days of paid annual leave per year.")
        got["kb"] = body(httpx.post(chat, json={"model": "kb:docs", "messages": leave}))["choices"][0]["message"]["content"]
        fake.enqueue("Employees get 25 days of paid annual leave per year.")
        with httpx.stream("POST", chat, json={"model": "kb:docs", "stream": True, "messages": leave}) as r:
            got["kb stream"] = sse_text(r)[0]
        fake.enqueue("I am not sure.")
        strong.enqueue("Paris.")
        cascade = httpx.post(chat, json={"model": "router", "messages": [{"role": "user", "content": "capital?"}]})
        got["cascade"] = body(cascade)["choices"][0]["message"]["content"]
        body(httpx.post(srv.url + "/v1/embeddings", json={"model": "hash", "input": ["a", "b"]}))
    # the server has shut down: every after() has run
    assert len(stage.before_ids) == len(set(stage.before_ids)) == 8
    assert sorted(stage.after_ids) == sorted(stage.before_ids)
    kinds = [stage.requests[i].kind for i in stage.before_ids]
    assert kinds == ["chat", "chat", "chat", "completion", "kb", "kb", "chat", "embedding"]
    outcomes = [stage.outcomes[i] for i in stage.before_ids]
    assert [o.cache for o in outcomes[:2]] == ["miss", "exact"]
    assert outcomes[6].route and outcomes[6].route.startswith(("fake", "fake2"))
    assert all(o.error is None and o.status == 200 for o in outcomes)
    # every text answer went through wrap(), and the client got what the stage passed on
    texts = [t for t in got.values()]
    for rid, text, outcome in zip(stage.before_ids, texts, outcomes):
        assert "".join(stage.wrapped[rid]) == text == outcome.text
    assert got["cache hit"] == "Paris." and got["stream"] == "one two three"
    assert outcomes[4].citations and outcomes[4].citations[0].source.endswith("leave.md")
    assert stage.requests[stage.before_ids[4]].sources  # what the kb answer could cite
    assert stage.before_ids[-1] not in stage.wrapped  # embeddings have no text to wrap


def test_a_stage_can_refuse_any_request_with_an_openai_shaped_error(tmp_path, third_party):
    settings = settings_for(tmp_path, stages=["counting"], stage_options={"counting": {"block": "forbidden"}})
    fake = FakeEngine("fake")
    with running(settings, engines={"fake": fake}) as srv:
        stage = srv.gateway.pipeline.stages[0]
        for path, payload in (
            ("/v1/chat/completions", {"model": "fake", "messages": [{"role": "user", "content": "a forbidden word"}]}),
            ("/v1/chat/completions", {"model": "fake", "stream": True,
                                      "messages": [{"role": "user", "content": "forbidden, streamed"}]}),
            ("/v1/completions", {"model": "fake", "prompt": "forbidden prompt"}),
        ):
            r = httpx.post(srv.url + path, json=payload)
            assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
            error = r.json()["error"]
            assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
            assert "blocked by policy" in error["message"]
        ok = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fake", "messages": MSG})
        assert ok.status_code == 200
    assert len(fake.prompts) == 1  # nothing refused reached the model
    refused = [stage.outcomes[i] for i in stage.before_ids[:3]]
    assert all(o.status == 400 and o.error.code == "content_filter" for o in refused)
    assert sorted(stage.after_ids) == sorted(stage.before_ids)


class MaskNumbers(Stage):
    """Masks phone-like digit runs, holding back a piece's trailing digits until it is known
    whether the number continues in the next piece."""

    name = "mask-numbers"
    NUMBER = re.compile(r"\d[\d ]{5,}\d")

    async def wrap(self, req, text):
        held = ""
        async for piece in text:
            held += piece
            tail = re.search(r"[\d ]*$", held).start()
            ready, held = held[:tail], held[tail:]
            if ready:
                yield self.NUMBER.sub("[number]", ready)
        if held:
            yield self.NUMBER.sub("[number]", held)


@pytest.fixture
def masking():
    register_stage(MaskNumbers)
    yield
    unregister_stage(MaskNumbers.name)


def test_a_streaming_stage_that_holds_characters_back_has_everything_flushed(tmp_path, masking):
    settings = settings_for(tmp_path, stages=["mask-numbers"])
    reply = "Call 138 0013 8000 today or 42 later 7"
    fake = FakeEngine("fake", replies=[reply, reply, reply])
    with running(settings, engines={"fake": fake}) as srv:
        url = srv.url + "/v1/chat/completions"
        whole = httpx.post(url, json={"model": "fake", "messages": MSG}).json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", url, json={"model": "fake", "messages": MSG, "stream": True}) as r:
            streamed, events = sse_text(r)
        completion = httpx.post(srv.url + "/v1/completions", json={"model": "fake", "prompt": "x", "max_tokens": 50})
    expected = "Call [number] today or 42 later 7"
    assert whole == streamed == completion.json()["choices"][0]["text"] == expected
    deltas = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    assert "[number] " not in deltas[:2] and events[-1]["choices"][0]["finish_reason"] == "stop"


def test_stages_run_in_config_order_in_and_reverse_order_out(tmp_path):
    log: list[str] = []

    def make(tag: str) -> type[Stage]:
        class Tagging(Stage):
            name = f"tag-{tag}"

            async def before(self, req):
                log.append(f"before {tag}")
                req.messages[-1]["content"] += f" [{tag}]"  # what the model sees

            async def wrap(self, req, text):
                async for piece in text:
                    yield f"{tag}({piece})"

            async def after(self, req, outcome):
                log.append(f"after {tag}")
        return Tagging

    first, second = make("a"), make("b")
    register_stage(first)
    register_stage(second)
    try:
        fake = FakeEngine("fake", replies=["x"])
        with running(settings_for(tmp_path, stages=["tag-a", "tag-b"]), engines={"fake": fake}) as srv:
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fake", "messages": MSG})
    finally:
        unregister_stage("tag-a")
        unregister_stage("tag-b")
    assert fake.prompts[0][-1]["content"].endswith("? [a] [b]")
    assert r.json()["choices"][0]["message"]["content"] == "a(b(x))"  # the model's text reaches b first
    assert log == ["before a", "before b", "after a", "after b"]


def test_after_runs_once_when_generation_fails_before_or_during_the_answer(tmp_path, third_party):
    settings = settings_for(tmp_path, stages=["counting"])
    fake = FakeEngine("fake")
    with running(settings, engines={"fake": fake}) as srv:
        stage = srv.gateway.pipeline.stages[0]
        fake.enqueue(UpstreamError("http://up/v1", "down", status=500))
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fake", "messages": MSG})
        assert r.status_code == 502
        too_long = [{"role": "user", "content": "word " * 5000}]
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "fake", "messages": too_long})
        assert r.json()["error"]["code"] == "context_length_exceeded"
    outcomes = [stage.outcomes[i] for i in stage.after_ids]
    assert len(stage.after_ids) == 2 == len(set(stage.after_ids))
    assert outcomes[0].status == 502 and outcomes[0].error is not None
    # the length check refused the second before the stages ran: after() still reports it
    assert outcomes[1].status == 400 and outcomes[1].error.code == "context_length_exceeded"
    assert len(stage.before_ids) == 1


def test_stage_config_errors_are_all_reported_at_once(tmp_path, third_party):
    settings = settings_for(tmp_path, stages=["counting", "nope", "counting"],
                            stage_options={"counting": {"colour": "red"}, "ghost": {"x": 1}})
    with pytest.raises(ConfigError) as err:
        build_stages(settings)
    problems = "\n".join(err.value.problems)
    assert "gateway.stages.1: unknown stage 'nope'; known: " in problems and "counting" in problems
    assert "gateway.stages.2: stage 'counting' is listed twice" in problems
    assert "gateway.stage_options.ghost: stage 'ghost' is not in gateway.stages" in problems
    assert "gateway.stage_options.counting.colour: unknown key" in problems
    with pytest.raises(ConfigError, match="unknown stage"):
        from lingxi.gateway.service import Gateway

        Gateway(settings_for(tmp_path, stages=["nope"]))
    assert isinstance(build_stages(settings_for(tmp_path, stages=["counting"]))[0], Stage)


def test_after_sees_a_stream_that_failed_midway_as_sent_with_200_and_its_error(tmp_path, third_party):
    from lingxi.engines.base import Chunk

    class Breaks(FakeEngine):
        def stream(self, prompt, params=None):
            yield Chunk(text="Par")
            raise UpstreamError("http://up/v1", "connection reset", status=502)

    settings = settings_for(tmp_path, stages=["counting"])
    with running(settings, engines={"fake": Breaks("fake")}) as srv:
        stage = srv.gateway.pipeline.stages[0]
        with httpx.stream("POST", srv.url + "/v1/chat/completions",
                          json={"model": "fake", "messages": MSG, "stream": True}) as r:
            text, events = sse_text(r)
        assert r.status_code == 200 and text == "Par" and "connection reset" in events[-1]["error"]["message"]
    (outcome,) = stage.outcomes.values()
    assert outcome.status == 200 and "connection reset" in outcome.error.message and outcome.text == "Par"
