"""``lingxi eval perf``: the same load test against an engine in-process and an OpenAI-compatible
endpoint (Lingxi's gateway on loopback, with the fake engine: no timing claims here)."""

from __future__ import annotations

import pytest

from lingxi.engines.fake import FakeEngine
from lingxi.errors import EngineError, UpstreamError, UsageError
from lingxi.evaluate.perf import evaluate_perf, format_perf, percentile, read_prompts

from gateway_helpers import gateway_settings, running

REPLY = "one two three four five six seven eight"


def test_engine_in_process_counts_tokens_and_errors():
    engine = FakeEngine(replies=[REPLY, EngineError("boom"), *[REPLY] * 500])
    run = evaluate_perf(engine=engine, concurrency=[1, 2], duration=0.15, max_tokens=16, warmup=False)
    one, two = run.summary["levels"]["1"], run.summary["levels"]["2"]
    assert one["errors"] == 1 and one["requests"] > 2 and 0 < one["error_rate"] < 1
    assert two["requests"] > 0 and two["errors"] == 0
    ok = [i for i in run.items if "error" not in i]
    assert ok[0]["scores"]["tokens"] == 8 and all(i["scores"]["tokens"] > 0 for i in ok)  # the engine's count
    assert all(i["scores"]["ttft_s"] >= 0 for i in ok)
    assert [i for i in run.items if "error" in i][0]["error"] == "boom"
    assert run.summary["ttft_p50_s"] == one["ttft_p50_s"] and run.summary["concurrency"] == 1
    assert "engine:fake" in format_perf(run)


class TwoTokensPerPiece(FakeEngine):
    """Sends one text piece per two tokens, 20 ms apart: what llama.cpp does for characters whose
    UTF-8 bytes span two tokens (the first token of each sends no text)."""

    def stream(self, prompt, params=None):
        import time

        from lingxi.engines.base import Chunk, Usage

        for piece in "北京是首都":
            time.sleep(0.02)
            yield Chunk(text=piece)
        yield Chunk(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=10))


def test_decode_rate_counts_tokens_not_pieces():
    run = evaluate_perf(engine=TwoTokensPerPiece(), concurrency=[1], duration=0.3, max_tokens=16, warmup=False)
    level = run.summary["levels"]["1"]
    # 9 tokens after the first over 4 piece gaps: the rate is 2.25 tokens per piece gap; counting
    # pieces (the old way) gave one per gap, half the engine's real speed
    assert level["decode_tokens_per_s_p50"] * level["itl_p50_s"] > 1.8
    assert all(i["scores"]["decode_tokens_per_s"] > 0 for i in run.items)


class RecordsSeeds(FakeEngine):
    def stream(self, prompt, params=None):
        self.seeds.append(params.seed)
        yield from super().stream(prompt, params)


def test_seed_is_sent_with_every_request(tmp_path):
    """A seeded request bypasses Lingxi's llama.cpp prefix cache: the seed must reach the engine,
    in process and through an endpoint."""
    engine = RecordsSeeds(replies=[REPLY] * 500)
    engine.seeds = []
    run = evaluate_perf(engine=engine, concurrency=[1], duration=0.1, max_tokens=16, seed=7)
    assert engine.seeds and set(engine.seeds) == {7} and run.config["seed"] == 7
    engine.seeds = []
    evaluate_perf(engine=engine, concurrency=[1], duration=0.1, max_tokens=16)
    assert set(engine.seeds) == {None}

    served = RecordsSeeds(replies=[REPLY] * 500)
    served.seeds = []
    with running(gateway_settings(tmp_path), engines={"fake": served}) as server:
        evaluate_perf(url=server.url, model="fake", concurrency=[1], duration=0.1, max_tokens=16, seed=3)
    assert served.seeds and set(served.seeds) == {3}


def test_gateway_endpoint_streams_usage_and_reports_unknown_model(tmp_path):
    with running(gateway_settings(tmp_path)) as server:
        run = evaluate_perf(url=server.url, model="fake", concurrency=[2], duration=0.3, max_tokens=16)
        with pytest.raises(UpstreamError, match="404.*unknown model 'nosuch'"):
            evaluate_perf(url=server.url, model="nosuch", concurrency=[1], duration=0.1)
    level = run.summary["levels"]["2"]
    assert level["requests"] >= 2 and level["errors"] == 0 and level["tokens_per_s"] > 0
    assert run.config["model"] == "fake" and run.summary["target"].endswith("/v1")


def test_bad_arguments_and_prompt_files(tmp_path):
    with pytest.raises(UsageError, match="--model"):
        evaluate_perf(concurrency=[1])
    with pytest.raises(UsageError, match="concurrency"):
        evaluate_perf(engine=FakeEngine(), concurrency=[0])
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"text": "no"}\n')
    with pytest.raises(UsageError, match="line 2"):
        read_prompts(bad)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([], 95) is None
