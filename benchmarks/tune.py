"""Tuning benchmark on CPU with the bundled SmolLM2-135M-Instruct.

Parts (``--parts``, comma-separated):

- ``throughput``: Lingxi's LoRA SFT loop vs a plain transformers + peft loop (the anchor) on the
  same model, examples (same token ids and answer masks), LoRA settings, batch size, learning
  rate, steps and thread count, run one after the other; training tokens (non-padding) per
  second of training time.
- ``sft``: held-out answer loss before/after LoRA SFT (BELLE Chinese seed tasks, disjoint split).
- ``pretrain``: held-out loss before/after continued pretraining on the PRC Civil Code text.
- ``rm`` / ``dpo``: held-out preference accuracy before/after, trained and evaluated on disjoint
  parts of hh-rlhf harmless-base test pairs.
- ``vocab``: tokens per character and loss per character on held-out Civil Code text before/after
  adding 18 legal terms.
- ``export``: merge the SFT LoRA, export GGUF, compare llama.cpp's and transformers' probe loss.

Usage: python benchmarks/tune.py --data-dir PATH_TO_SHARED_DATA --out /tmp/tune-bench [--steps 12]
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
#: frequent terms of the PRC Civil Code (the vocab part adds them to SmolLM2's English-centred vocabulary)
LEGAL_TERMS = ["民事主体", "民事法律行为", "当事人", "人民法院", "债权人", "债务人", "所有权", "担保物权",
               "监护人", "合同", "不可抗力", "违约责任", "法律", "规定", "权利", "义务", "请求", "赔偿"]


def belle_rows(data_dir: Path) -> list[dict[str, str]]:
    rows = []
    for line in (data_dir / "belle-zh-seed-tasks.json").read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows += [{"instruction": r["instruction"], "input": i.get("input", ""), "output": i["output"]}
                     for i in r["instances"]]
    return rows


def civil_code_split(data_dir: Path, out: Path, tag: str, seed: int, n_train: int) -> tuple[str, str]:
    """Civil Code paragraphs: 60 held out, ``n_train`` others for training (files under ``out``)."""
    books = sorted((data_dir / "prc-civil-code-zh").glob("*.md"))
    paras = [p for b in books for p in b.read_text(encoding="utf-8").split("\n\n") if len(p) > 40]
    random.Random(seed).shuffle(paras)
    return (write(out / f"{tag}_train.jsonl", [{"text": p} for p in paras[60:60 + n_train]]),
            write(out / f"{tag}_held.jsonl", [{"text": p} for p in paras[:60]]))


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def recipe(out: Path, name: str, train: str, held: str, tag: str | None = None, **kw: Any) -> dict[str, Any]:
    from lingxi.tune import make_config, run_recipe

    cfg = make_config(recipe=name, model=MODEL, data=train, eval_data=held, output=str(out / (tag or name)),
                      resume=False, **kw)
    r = run_recipe(cfg, home=out / "home")
    return {"steps": r["steps"], "before": r["eval"]["before"], "after": r["eval"]["after"],
            "train_tokens_per_s": r["train_tokens_per_s"], "peak_memory_gib": r["peak_memory_gib"],
            "train_tokens_per_cpu_s": round(r["train_tokens"] / max(r["train_cpu_seconds"], 1e-9), 1),
            "loss_curve": r["loss_curve"]}


def plain_peft_loop(examples: list[Any], pad: int, steps: int, batch: int, lr: float, seed: int,
                    home: Path) -> dict[str, Any]:
    """The anchor: what a transformers + peft user writes — shuffled batches, padded collation,
    ``model(**batch, labels=...)`` (full logits, transformers' loss), AdamW, clipping."""
    import peft
    import torch

    from lingxi.tune.model import load_causal_lm, resolve
    from lingxi.tune.tokens import collate

    model = load_causal_lm(resolve(MODEL), home)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1,
                                                       target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(seed)
    order: list[int] = []
    tokens, seconds, cpu = 0, 0.0, 0.0
    for _ in range(steps):
        if len(order) < batch:
            order = list(range(len(examples)))
            rng.shuffle(order)
        idx, order = order[:batch], order[batch:]
        began, began_cpu = time.perf_counter(), time.process_time()
        b = collate([examples[i] for i in idx], pad, "cpu")
        loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
        tokens += int(b["attention_mask"].sum())
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "tokens_per_cpu_s": round(tokens / cpu, 1)}


def throughput(out: Path, rows: list[dict[str, Any]], steps: int, batch: int, max_len: int) -> dict[str, Any]:
    from lingxi.tune.model import load_tokenizer, resolve
    from lingxi.tune.tokens import encode_rows

    train = write(out / "tp.jsonl", rows)
    ours = recipe(out, "sft", train, train, tag="throughput", max_steps=steps, batch_size=batch, max_len=max_len, eval_rows=1,
                  threads=1)
    tok = load_tokenizer(resolve(MODEL), out / "home")
    plain = plain_peft_loop(encode_rows(tok, rows, max_len, kind="sft"), tok.pad_token_id, steps, batch, 2e-4, 0,
                            out / "home")
    return {"lingxi_tokens_per_s": ours["train_tokens_per_s"], "plain_peft_tokens_per_s": plain["tokens_per_s"],
            "ratio": round(ours["train_tokens_per_s"] / plain["tokens_per_s"], 2),
            "lingxi_tokens_per_cpu_s": ours["train_tokens_per_cpu_s"],
            "plain_peft_tokens_per_cpu_s": plain["tokens_per_cpu_s"],
            "cpu_ratio": round(ours["train_tokens_per_cpu_s"] / plain["tokens_per_cpu_s"], 2),
            "steps": steps, "batch": batch,
            "max_len": max_len, "threads": 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--parts", default="throughput,sft,pretrain,vocab,rm,dpo,export")
    ap.add_argument("--pref-held", type=int, default=40, help="held-out preference pairs (each costs 2-4 forwards)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the machine is shared; one thread avoids a spinning OpenMP team
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"model": MODEL, "threads": 1}
    belle = belle_rows(args.data_dir)
    random.Random(0).shuffle(belle)
    sft_train, sft_held = write(out / "sft_train.jsonl", belle[40:]), write(out / "sft_held.jsonl", belle[:40])
    if "throughput" in parts:
        result["throughput"] = throughput(out, belle[40:], args.steps, 4, 128)
    if "sft" in parts:
        result["sft"] = recipe(out, "sft", sft_train, sft_held, max_steps=args.steps * 2, batch_size=4, max_len=128,
                               threads=1)
    for name, seed, kw in (("pretrain", 1, {}), ("vocab", 3, {"terms": LEGAL_TERMS, "lr": 1e-3})):
        if name in parts:
            train, held = civil_code_split(args.data_dir, out, name, seed, args.steps * 8)
            result[name] = recipe(out, name, train, held, max_steps=args.steps * 2, batch_size=4, max_len=128,
                                  threads=1, **kw)
    pairs_file = args.data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl"
    if {"rm", "dpo"} & set(parts):
        from lingxi.tune.data import read_rows

        prefs = [r.data for r in read_rows(pairs_file) if len(r.data["chosen"]) + len(r.data["rejected"]) < 400]
        random.Random(2).shuffle(prefs)
        n = args.pref_held
        held = write(out / "pref_held.jsonl", prefs[:n])  # disjoint from the training pairs below
        train = write(out / "pref_train.jsonl", prefs[n:n + args.steps * 4 * 2])
        for name, kw in (("rm", {"lr": 1e-4}), ("dpo", {})):
            if name in parts:
                result[name] = recipe(out, name, train, held, max_steps=args.steps * 2, batch_size=4, max_len=128,
                                      threads=1, **kw)
    if "export" in parts and (out / "sft" / "report.json").is_file():
        from lingxi.tune.adapters import export_gguf

        began = time.perf_counter()
        result["export"] = {**export_gguf(out / "sft", out / "home"), "seconds": round(time.perf_counter() - began, 1)}
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
