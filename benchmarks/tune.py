"""Tuning benchmark on CPU with the bundled SmolLM2-135M-Instruct.

Parts (``--parts``, comma-separated):

- ``throughput``: Lingxi's LoRA SFT loop vs a plain transformers + peft loop (the anchor) on the
  same model, examples (same token ids and answer masks), LoRA settings, batch size, learning
  rate, steps and thread count, alternated ``--rounds`` times in this one process (load changes
  hit both); training tokens (non-padding) per second, wall and CPU, and the median ratio.
- ``sft``: held-out answer loss before/after LoRA SFT (BELLE Chinese seed tasks, disjoint split).
- ``pretrain``: held-out loss before/after continued pretraining on the PRC Civil Code text.
- ``vocab``: tokens per character and loss per character on held-out Civil Code text before/after
  adding 18 legal terms.
- ``rm`` / ``dpo``: held-out preference accuracy (95 % interval, sign test) before/after, trained
  on ``--pref-train`` and evaluated on ``--pref-held`` disjoint hh-rlhf harmless pairs.
- ``ppo``: the ``rm`` part's reward model as the reward (or ``--ppo-reward brevity``, programmatic);
  held-out mean reward and KL before/after.
- ``embed``: MiniLM on CMRC 2018 questions of 60 % of the paragraphs; dense nDCG@10 through
  ``lingxi eval retrieval``'s scratch knowledge base on the other 40 % before/after.
- ``export``: merge the SFT LoRA, export GGUF, compare llama.cpp's and transformers' probe loss.

Usage: python benchmarks/tune.py --data-dir PATH_TO_SHARED_DATA --out OUT_DIR [--steps 12]
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
            "train_seconds": r["train_seconds"],
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


def throughput(out: Path, rows: list[dict[str, Any]], steps: int, batch: int, max_len: int,
               rounds: int) -> dict[str, Any]:
    """Lingxi's recipe and the plain loop, alternated ``rounds`` times in this one process so that
    a change of machine load hits both; the ratio is of the medians."""
    from statistics import median

    from lingxi.tune.model import load_tokenizer, resolve
    from lingxi.tune.tokens import encode_rows

    train = write(out / "tp.jsonl", rows)
    tok = load_tokenizer(resolve(MODEL), out / "home")
    examples = encode_rows(tok, rows, max_len, kind="sft")
    ours, plain = [], []
    for r in range(rounds):
        ours.append(recipe(out, "sft", train, train, tag=f"throughput{r}", max_steps=steps, batch_size=batch,
                           max_len=max_len, eval_rows=1, threads=1, seed=r))
        plain.append(plain_peft_loop(examples, tok.pad_token_id, steps, batch, 2e-4, r, out / "home"))
    wall = [o["train_tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours, plain)]
    cpu = [o["train_tokens_per_cpu_s"] / p["tokens_per_cpu_s"] for o, p in zip(ours, plain)]
    return {"lingxi_tokens_per_s": [o["train_tokens_per_s"] for o in ours],
            "plain_peft_tokens_per_s": [p["tokens_per_s"] for p in plain],
            "lingxi_tokens_per_cpu_s": [o["train_tokens_per_cpu_s"] for o in ours],
            "plain_peft_tokens_per_cpu_s": [p["tokens_per_cpu_s"] for p in plain],
            "ratio_per_round": [round(x, 2) for x in wall], "ratio": round(median(wall), 2),
            "cpu_ratio_per_round": [round(x, 2) for x in cpu], "cpu_ratio": round(median(cpu), 2),
            "steps": steps, "batch": batch, "max_len": max_len, "threads": 1, "rounds": rounds}


def preference_split(data_dir: Path, out: Path, n_train: int, n_held: int) -> tuple[str, str]:
    """hh-rlhf harmless pairs, shuffled once: the first ``n_held`` held out, the next ``n_train``
    for training (disjoint)."""
    from lingxi.tune.data import read_rows

    prefs = [r.data for r in read_rows(data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl")]
    random.Random(2).shuffle(prefs)
    return (write(out / "pref_train.jsonl", prefs[n_held:n_held + n_train]),
            write(out / "pref_held.jsonl", prefs[:n_held]))


def embed_part(data_dir: Path, out: Path, steps: int) -> dict[str, Any]:
    """MiniLM fine-tuned on CMRC 2018 questions of 60 % of the paragraphs; nDCG@10 of dense
    retrieval through ``lingxi eval retrieval``'s code (a scratch knowledge base) on the questions
    of the other 40 %, over a corpus of those paragraphs only."""
    from lingxi.config import parse_config
    from lingxi.evaluate.retrieval import evaluate_retrieval, load_beir

    src = data_dir / "cmrc2018-trial-zh"
    beir = load_beir(src / "corpus.jsonl", src / "queries.jsonl", src / "qrels" / "test.tsv")
    docs = {json.loads(line)["_id"]: json.loads(line) for line in (src / "corpus.jsonl").read_text().splitlines()
            if line.strip()}
    ids = sorted(docs)
    random.Random(4).shuffle(ids)
    held_docs = set(ids[: len(ids) * 2 // 5])
    train_rows, held_q = [], {}
    for q, text in beir.queries.items():
        doc = next(iter(beir.qrels[q]))
        if doc in held_docs:
            held_q[q] = text
        else:
            d = docs[doc]
            train_rows.append({"query": text, "positive": f"{d['title']}\n{d['text']}"})
    folder = out / "embed_eval"
    folder.mkdir(exist_ok=True)
    corpus = write(folder / "corpus.jsonl", [docs[d] for d in sorted(held_docs)])
    queries = write(folder / "queries.jsonl", [{"_id": q, "text": t} for q, t in held_q.items()])
    qrels = folder / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{next(iter(beir.qrels[q]))}\t1\n" for q in held_q), encoding="utf-8")
    train = write(out / "embed_train.jsonl", train_rows)
    r = recipe(out, "embed", train, train, max_steps=steps, batch_size=16, threads=1, eval_rows=1)
    tuned = str(out / "embed" / "adapter")
    settings = parse_config({"home": str(out / "home"), "embedders": {
        "tuned-minilm": {"engine": "sentence-transformers", "path": tuned}}})
    before = evaluate_retrieval(settings, corpus, queries, qrels, mode="dense", embedder="minilm", progress=False)
    after = evaluate_retrieval(settings, corpus, queries, qrels, mode="dense", embedder="tuned-minilm",
                               progress=False)
    keys = ("ndcg@10", "recall@10", "mrr@10", "queries")
    return {"train_pairs": len(train_rows), "held_queries": len(held_q), "held_corpus": len(held_docs),
            "steps": r["steps"], "train_seconds": r.get("train_seconds"),
            "before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--parts", default="throughput,sft,pretrain,vocab,rm,dpo,ppo,embed,export")
    ap.add_argument("--rounds", type=int, default=3, help="throughput: alternations of Lingxi and the plain loop")
    ap.add_argument("--pref-train", type=int, default=240, help="rm/dpo: training pairs")
    ap.add_argument("--pref-held", type=int, default=200, help="rm/dpo: held-out pairs (disjoint)")
    ap.add_argument("--pref-len", type=int, default=64, help="rm/dpo/ppo: tokens per prompt+answer")
    ap.add_argument("--pref-lora-layers", type=int, default=8, help="rm/dpo: LoRA in the last N layers (cheaper steps)")
    ap.add_argument("--pref-epochs", type=int, default=1, help="rm/dpo: passes over the training pairs")
    ap.add_argument("--rm-lr", type=float, default=2e-4, help="rm: LoRA learning rate (the head gets 10x)")
    ap.add_argument("--dpo-lr", type=float, default=1e-4, help="dpo: LoRA learning rate")
    ap.add_argument("--ppo-lr", type=float, default=1e-4, help="ppo: LoRA learning rate")
    ap.add_argument("--ppo-steps", type=int, default=12)
    ap.add_argument("--ppo-reward", default="rm", help="ppo: 'rm' (the rm part's model) or a programmatic reward (brevity)")
    ap.add_argument("--embed-steps", type=int, default=30)
    args = ap.parse_args()
    import os

    import torch

    torch.set_num_threads(1)  # the machine is shared; one thread avoids a spinning OpenMP team
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"model": MODEL, "threads": 1, "load_average_at_start": os.getloadavg()}
    belle = belle_rows(args.data_dir)
    random.Random(0).shuffle(belle)
    sft_train, sft_held = write(out / "sft_train.jsonl", belle[40:]), write(out / "sft_held.jsonl", belle[:40])
    if "throughput" in parts:
        result["throughput"] = throughput(out, belle[40:], args.steps, 4, 128, args.rounds)
    if "sft" in parts:
        result["sft"] = recipe(out, "sft", sft_train, sft_held, max_steps=args.steps * 2, batch_size=4, max_len=128,
                               threads=1)
    for name, seed, kw in (("pretrain", 1, {}), ("vocab", 3, {"terms": LEGAL_TERMS, "lr": 1e-3})):
        if name in parts:
            train, held = civil_code_split(args.data_dir, out, name, seed, args.steps * 8)
            result[name] = recipe(out, name, train, held, max_steps=args.steps * 2, batch_size=4, max_len=128,
                                  threads=1, **kw)
    if {"rm", "dpo", "ppo"} & set(parts):
        train, held = preference_split(args.data_dir, out, args.pref_train, args.pref_held)
        common = {"batch_size": 8, "max_len": args.pref_len, "threads": 1, "eval_rows": args.pref_held,
                  "epochs": args.pref_epochs,
                  "lora_layers": args.pref_lora_layers}
        if "rm" in parts:
            result["rm"] = recipe(out, "rm", train, held, lr=args.rm_lr, **common)
        if "dpo" in parts:
            result["dpo"] = recipe(out, "dpo", train, held, lr=args.dpo_lr, **common)
        reward = str(out / "rm") if args.ppo_reward == "rm" else args.ppo_reward
        if "ppo" in parts and (args.ppo_reward != "rm" or (out / "rm" / "report.json").is_file()):
            result["ppo"] = recipe(out, "ppo", train, held, reward_model=reward, max_steps=args.ppo_steps,
                                   batch_size=8, max_len=args.pref_len, max_new_tokens=16, threads=1, eval_rows=32,
                                   lr=args.ppo_lr)
            result["ppo"]["kl_curve"] = json.loads((out / "ppo" / "report.json").read_text())["kl_curve"]
            result["ppo"]["reward_curve"] = json.loads((out / "ppo" / "report.json").read_text())["reward_curve"]
    if "embed" in parts:
        result["embed"] = embed_part(args.data_dir, out, args.embed_steps)
    if "export" in parts and (out / "sft" / "report.json").is_file():
        from lingxi.tune.adapters import export_gguf

        began = time.perf_counter()
        result["export"] = {**export_gguf(out / "sft", out / "home"), "seconds": round(time.perf_counter() - began, 1)}
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
