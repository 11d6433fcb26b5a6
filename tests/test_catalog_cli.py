"""``lingxi models …`` catalog commands: JSON shapes, text output, one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest

from lingxi.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch, tmp_path):
    monkeypatch.delenv("LINGXI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_select_zh_local_24_json_lists_only_fitting_models(capsys):
    code, out, _ = run(capsys, "models", "select", "--lang", "zh", "--deploy", "local", "--max-gpu-mem", "24", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"candidates", "rejected"}
    assert data["candidates"]
    for c in data["candidates"]:
        assert set(c) >= {"model", "score", "reasons", "estimate"}
        assert c["reasons"] and c["estimate"]["memory_gib"]["total"] <= 24
    assert all(set(r) == {"model", "why"} and r["why"] for r in data["rejected"])


def test_estimate_json_shape(capsys):
    code, out, _ = run(capsys, "models", "estimate", "qwen2.5-7b-instruct", "--precision", "int4", "--gpu", "t4",
                       "--context", "8192", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "qwen2.5-7b-instruct" and data["precision"] == "int4" and data["mode"] == "inference"
    assert set(data["memory_gib"]) == {"weights", "kv_cache", "activations", "gradients", "optimizer", "overhead", "total"}
    assert data["gpus_needed"] == 1 and data["fits"] is True and data["decode_tokens_per_s"] > 0


def test_estimate_text_and_training_mode(capsys):
    code, out, _ = run(capsys, "models", "estimate", "llama-2-7b-chat", "--mode", "qlora")
    assert code == 0 and "optimizer" in out and "total" in out and "LoRA rank 8" in out


def test_show_lists_sources(capsys):
    code, out, _ = run(capsys, "models", "show", "deepseek-v3")
    assert code == 0
    assert "config.json" in out and "arXiv:2412.19437" in out and "kv_lora_rank=512" in out


def test_catalog_gpus_and_scenarios_listings(capsys):
    code, out, _ = run(capsys, "models", "catalog", "--api")
    assert code == 0 and "gpt-4o-mini" in out and "qwen3-8b" not in out
    code, out, _ = run(capsys, "models", "gpus", "--json")
    assert code == 0 and any(g["id"] == "h200" for g in json.loads(out))
    code, out, _ = run(capsys, "models", "scenarios")
    assert code == 0 and "financial-compliance" in out and "金融合规问答" in out


def test_select_with_scenario_text(capsys):
    code, out, _ = run(capsys, "models", "select", "--scenario", "code-assistant", "--limit", "3")
    assert code == 0 and "scenario code-assistant" in out and "quality +" in out


def test_list_still_works(capsys):
    code, out, _ = run(capsys, "models", "list", "--json")
    assert code == 0 and any(r["name"] == "smollm2" for r in json.loads(out))


@pytest.mark.parametrize("args, expected", [
    (("models", "estimate", "llama-2-7b"), "did you mean: llama-2-7b-chat"),
    (("models", "estimate", "qwen2.5-7b-instruct", "--precision", "int3"), "unknown precision 'int3'"),
    (("models", "estimate", "qwen2.5-7b-instruct", "--mode", "qlora", "--precision", "fp16"), "qlora"),
    (("models", "estimate", "qwen2.5-7b-instruct", "--gpu", "h1000"), "unknown GPU 'h1000'"),
    (("models", "select", "--lang", "fr"), "unknown --lang 'fr'"),
    (("models", "select", "--scenario", "finance"), "unknown scenario 'finance'"),
    (("models", "show", "gpt4o"), "did you mean: gpt-4o"),
])
def test_errors_are_one_line_with_exit_2(capsys, args, expected):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err


@pytest.mark.parametrize("args, listing, known", [
    (("models", "estimate", "qwen2.5-7b-instruct", "--gpu", "zz9"), ("models", "gpus"), "h200"),
    (("models", "select", "--scenario", "zz9"), ("models", "scenarios"), "code-assistant"),
    (("models", "estimate", "zz9"), ("models", "catalog"), "qwen2.5-7b-instruct"),
])
def test_an_unknown_name_points_to_the_command_that_lists_it(capsys, args, listing, known):
    # A GPU or scenario with no close match used to point to 'lingxi models catalog', which lists neither.
    code, _, err = run(capsys, *args)
    assert code == 2 and f"see 'lingxi {' '.join(listing)}'" in err
    code, out, _ = run(capsys, *listing)
    assert code == 0 and known in out
