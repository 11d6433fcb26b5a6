"""The cascade with the real bundled SmolLM2 as the local model and a queued fake as the strong one."""

from __future__ import annotations

import asyncio

import pytest

from lingxi.config import parse_config
from lingxi.engines import load_engine
from lingxi.engines.base import GenerationParams
from lingxi.engines.fake import FakeEngine
from lingxi.routing import create_router

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path_factory):
    settings = parse_config({
        "home": str(tmp_path_factory.mktemp("home")),
        "models": {"strong": {"engine": "fake", "cost_per_mtok_in": 2.5, "cost_per_mtok_out": 10.0}},
        "gateway": {"router": {"policy": "cascade", "local_model": "smollm2", "strong_model": "strong"}},
    })
    local = load_engine("smollm2", settings)  # cached per process: loading is paid once
    strong = FakeEngine("strong")  # a fresh reply queue per test: a reply one test left unused is not the next one's
    return create_router(settings), local, strong, {"smollm2": local, "strong": strong}.__getitem__


def test_cascade_runs_the_real_local_model_and_scores_its_answer(setup):
    router, local, strong, get = setup
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    strong.enqueue("Paris.")
    params = GenerationParams(max_tokens=48, temperature=0.0, seed=0)
    completion, decision = asyncio.run(router.complete(messages, params, "acme", get))
    assert decision.cascade and decision.confidence is not None
    again = local.generate(messages, params)  # greedy: the same answer the cascade saw
    expected, _ = router.confidence(messages, again.text, again.finish_reason)
    assert decision.confidence == pytest.approx(expected)
    assert (decision.model == "smollm2") == (expected >= router.cfg.escalate_below)
    if decision.model == "smollm2":
        assert completion.text == again.text and completion.usage.completion_tokens > 0
    else:
        assert completion.text == "Paris." and len(strong.prompts) == 1


def test_cascade_escalates_when_the_real_local_answer_is_cut_off(setup):
    router, _, strong, get = setup
    strong.enqueue("A complete essay.")
    messages = [{"role": "user", "content": "Write a long essay about the history of the Roman Empire."}]
    completion, decision = asyncio.run(router.complete(messages, GenerationParams(max_tokens=4, temperature=0.0),
                                                       "acme", get))
    assert decision.model == "strong" and "truncated" in decision.reason
    assert completion.text == "A complete essay."
