"""``lingxi models bench``: measured numbers next to the estimate.

The fast tests use the fake engine (no timing claims); the slow one runs the bundled SmolLM2
through llama.cpp on this CPU.
"""

from __future__ import annotations

import json

import pytest

from lingxi.catalog import load_catalog
from lingxi.evaluate.bench import _precision_of, bench, measure_host
from lingxi.cli import main
from lingxi.config import load_config, parse_config
from lingxi.errors import EngineError, ModelNotFoundError

REPLY = "The sky looks blue because air molecules scatter short blue wavelengths of sunlight far more than red."


def fake_settings():
    return parse_config({"models": {"echo": {"engine": "fake", "replies": [REPLY] * 10}}})


def test_measure_host_reports_positive_bandwidth_and_compute():
    host = measure_host(copy_mib=16, matmul_n=256, repeats=2)
    assert host.bandwidth_gbs > 0 and host.fp16_tflops > 0 and host.memory_gib > 0
    assert "measured" in host.notes


def test_bench_puts_measurement_next_to_estimate_with_fake_engine():
    settings = fake_settings()
    cat = load_catalog(settings)
    result = bench("echo", settings, cat, catalog_id="qwen2.5-0.5b-instruct", gpu=cat.gpu("t4"),
                   max_tokens=32, runs=2)
    m = result["measured"]
    assert m["runs"] == 2 and m["prompt_tokens"] > 0 and all(n > 1 for n in m["completion_tokens"])
    assert m["decode_tokens_per_s"] > 0 and m["ttft_s"] >= 0
    est = result["estimate"]
    assert est["gpu"] == "t4" and est["precision"] == "bf16" and est["decode_tokens_per_s"] > 0
    assert est["context"] == m["prompt_tokens"] + max(m["completion_tokens"])
    assert result["measured_vs_estimate"]["decode"] > 0


def test_bench_without_catalog_entry_still_measures():
    settings = fake_settings()
    result = bench("echo", settings, load_catalog(settings), gpu=load_catalog().gpu("t4"), max_tokens=8, runs=1)
    assert result["estimate"] is None and "--catalog-id" in result["note"]
    assert result["measured"]["decode_tokens_per_s"] > 0


def test_bench_errors():
    settings = fake_settings()
    cat = load_catalog(settings)
    with pytest.raises(ModelNotFoundError):
        bench("nope", settings, cat, runs=1)
    silent = parse_config({"models": {"mute": {"engine": "fake", "replies": [""] * 5}}})
    with pytest.raises(EngineError, match="no tokens"):
        bench("mute", silent, load_catalog(silent), gpu=cat.gpu("t4"), runs=1)


def test_precision_is_read_from_the_model_config():
    s = load_config()
    assert _precision_of(s.model("smollm2")) == "int4"  # the bundled GGUF is Q4_1
    t = parse_config({"models": {"hf": {"engine": "transformers", "path": "x", "dtype": "bfloat16"}}})
    assert _precision_of(t.model("hf")) == "bf16"


@pytest.mark.slow
def test_bench_bundled_smollm2_on_cpu(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("LINGXI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["models", "bench", "smollm2", "--max-tokens", "24", "--runs", "2", "--json"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    result = json.loads(out)
    assert result["catalog_id"] == "smollm2-135m-instruct" and result["engine"] == "llamacpp"
    m, est = result["measured"], result["estimate"]
    assert m["decode_tokens_per_s"] > 0 and m["ttft_s"] > 0 and m["prompt_tokens"] > 0
    assert est["precision"] == "int4" and est["gpu"] == "this-host"
    assert est["decode_tokens_per_s"] > 0 and est["ttft_s"] > 0
    assert result["hardware"]["bandwidth_gbs"] > 0
