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
- ``serve``: three LoRA adapters (random, r 16 on q/v) over the bundled base, served by name on
  the transformers engine (random B, std 0.1); each configuration in a fresh process: its resident and peak memory
  with one shared base and 1 or 3 adapters, and with a private merged copy per model (the old way);
  every model's greedy answer, which must differ between adapters and match across configurations.

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


def preference_split(data_dir: Path, out: Path, n_train: int, n_held: int, n_val: int) -> tuple[str, str, str]:
    """hh-rlhf harmless pairs, shuffled once with a fixed seed: the first ``n_held`` held out (the
    reported numbers), the next ``n_val`` a validation slice (for choosing settings), the next
    ``n_train`` for training; the three are disjoint and do not depend on the settings tried."""
    from lingxi.tune.data import read_rows

    prefs = [r.data for r in read_rows(data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl")]
    random.Random(2).shuffle(prefs)
    if n_held + n_val + n_train > len(prefs):
        raise SystemExit(f"--pref-held + --pref-val + --pref-train > the {len(prefs)} pairs")
    return (write(out / "pref_train.jsonl", prefs[n_held + n_val:n_held + n_val + n_train]),
            write(out / "pref_held.jsonl", prefs[:n_held]),
            write(out / "pref_val.jsonl", prefs[n_held:n_held + n_val]))


def shorter_answer_baseline(path: str) -> float:
    """Preference accuracy of "the shorter answer is the chosen one" (characters, a tie half): how
    much of a learned preference length alone could explain on these pairs."""
    from lingxi.tune.data import read_rows

    rows = [r.data for r in read_rows(Path(path))]
    score = sum(1.0 if len(r["chosen"]) < len(r["rejected"]) else 0.5 if len(r["chosen"]) == len(r["rejected"])
                else 0.0 for r in rows)
    return round(score / len(rows), 4)


def judge_held(folder: Path, held: str, home: Path) -> dict[str, Any]:
    """A saved ``rm`` or ``dpo`` run (trained and evaluated on the validation slice, where its
    settings were chosen) judged once on the held-out pairs, with the recipe's own metric: before
    training every pair ties (a zero reward head; a policy equal to its reference), so the sign
    test is over every pair that is not a tie after."""
    import torch

    from lingxi.tune.data import read_rows
    from lingxi.tune.loop import eval_batches, preference_stats
    from lingxi.tune.tokens import encode_pairs, pair_batch, sequence_logps

    info = json.loads((folder / "report.json").read_text())
    cfg = info["config"]
    rows = [r.data for r in read_rows(Path(held)) if r.kind == "preference"]
    implicit: list[float] = []
    own: list[float] = []
    base_own: list[float] = []
    with torch.no_grad():
        if info["recipe"] == "rm":
            from lingxi.tune.recipes.rm import load_reward_model

            rm, tok = load_reward_model(folder, home, "cpu")
            for chunk in eval_batches(encode_pairs(tok, rows, cfg["max_len"]), 8):
                r = rm.rewards(pair_batch(chunk, tok.pad_token_id, "cpu"))
                implicit += (r[: len(chunk)] - r[len(chunk):]).tolist()
        else:
            from peft import PeftModel

            from lingxi.tune.model import load_causal_lm, load_tokenizer, resolve

            source = resolve(cfg["model"])
            tok = load_tokenizer(source, home)
            model = PeftModel.from_pretrained(load_causal_lm(source, home, device="cpu"), str(folder / "adapter")).eval()
            for chunk in eval_batches(encode_pairs(tok, rows, cfg["max_len"]), 8):
                batch, n = pair_batch(chunk, tok.pad_token_id, "cpu"), len(chunk)
                policy = sequence_logps(model, batch)
                with model.disable_adapter():
                    ref = sequence_logps(model, batch)
                implicit += (cfg["beta"] * ((policy[:n] - ref[:n]) - (policy[n:] - ref[n:]))).tolist()
                own += (policy[:n] - policy[n:]).tolist()
                base_own += (ref[:n] - ref[n:]).tolist()
    out: dict[str, Any] = {"recipe": info["recipe"], "lr": cfg["lr"], "steps": info["steps"],
                           "after": {**preference_stats(implicit, [0.0] * len(implicit)),
                                     "reward_margin": round(sum(implicit) / len(implicit), 4)}}
    if own:
        out["policy_accuracy"] = {"before": preference_stats(base_own)["preference_accuracy"],
                                  "after": preference_stats(own, base_own)}
    return out


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


SERVE_PROMPT = [{"role": "user", "content": "Give me one tip for writing a clear contract."}]


def random_adapters(out: Path, n: int) -> list[str]:
    """``n`` LoRA adapters over the bundled base (r 16, alpha 32, q/v), B drawn at random (std
    0.1; at 0.02 all three turned the same greedy token of the base and then agreed) instead of
    trained: what is measured here is memory and which adapter answers."""
    import peft
    import torch

    from lingxi.tune.model import load_causal_lm, resolve

    folders = []
    for i in range(n):
        torch.manual_seed(100 + i)
        model = load_causal_lm(resolve(MODEL), out / "home")
        lora = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, p in lora.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.1)
        folder = out / "serve" / f"lora{i}"
        lora.save_pretrained(str(folder))
        folders.append(str(folder))
    return folders


def serve_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this (fresh) process: load every named model through the config and
    ``load_engine`` as the gateway does, answer the probe with each, report memory."""
    import resource

    import torch

    from lingxi.config import parse_config
    from lingxi.engines import GenerationParams, load_engine
    from lingxi.tune.model import resolve

    torch.set_num_threads(1)
    source = resolve(MODEL)
    entry = {"engine": "transformers", "path": str(source.folder), "gguf_file": source.gguf_file, "device": "cpu",
             "share_base": spec["share_base"]}
    models = {"base": dict(entry)} | {f"lora{i}": {**entry, "adapters": [a]} for i, a in enumerate(spec["adapters"])}
    settings = parse_config({"home": spec["home"], "default_model": "base", "models": models})

    def rss_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    began = time.perf_counter()
    engines = {name: load_engine(name, settings) for name in models}
    loaded = time.perf_counter() - began
    answers, seconds = {}, {}
    for name, engine in engines.items():
        t = time.perf_counter()
        answers[name] = engine.generate(SERVE_PROMPT, GenerationParams(max_tokens=24, temperature=0)).text
        seconds[name] = round(time.perf_counter() - t, 2)
    return {"share_base": spec["share_base"], "models": list(models), "adapters": len(spec["adapters"]),
            "distinct_weight_copies": len({id(e.model) for e in engines.values()}),
            "rss_mib_after_load": round(rss_mib(), 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_seconds": round(loaded, 1), "answer_seconds_24_tokens": seconds, "answers": answers}


def serve_part(out: Path) -> dict[str, Any]:
    import subprocess
    import sys

    adapters = random_adapters(out, 3)
    runs = {}
    for label, share, n in (("shared_1", True, 1), ("shared_3", True, 3), ("private_3", False, 3)):
        spec = {"share_base": share, "adapters": adapters[:n], "home": str(out / "home")}
        done = subprocess.run([sys.executable, __file__, "--serve-child", json.dumps(spec), "--data-dir", ".",
                               "--out", str(out)], capture_output=True, text=True, check=True)
        runs[label] = json.loads(done.stdout)
    a1, a3, p3 = runs["shared_1"]["answers"], runs["shared_3"]["answers"], runs["private_3"]["answers"]
    return {**runs, "checks": {
        "adapters_answer_differently": len({a3[f"lora{i}"] for i in range(3)} | {a3["base"]}) == 4,
        "shared_1_equals_shared_3": all(a1[k] == a3[k] for k in a1),
        "shared_3_equals_private_merged_3": a3 == p3}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--parts", default="throughput,sft,pretrain,vocab,rm,dpo,ppo,embed,export,serve")
    ap.add_argument("--rounds", type=int, default=3, help="throughput: alternations of Lingxi and the plain loop")
    ap.add_argument("--pref-train", type=int, default=240, help="rm/dpo: training pairs")
    ap.add_argument("--pref-held", type=int, default=400, help="rm/dpo: held-out pairs (disjoint, reported)")
    ap.add_argument("--pref-val", type=int, default=200, help="rm/dpo: validation pairs (disjoint, for choosing settings)")
    ap.add_argument("--pref-eval", choices=("held", "val"), default="held",
                    help="rm/dpo: evaluate on the held-out pairs or on the validation slice")
    ap.add_argument("--pref-len", type=int, default=64, help="rm/dpo/ppo: tokens per prompt+answer")
    ap.add_argument("--pref-lora-layers", type=int, default=8, help="rm/dpo: LoRA in the last N layers (cheaper steps)")
    ap.add_argument("--pref-epochs", type=int, default=1, help="rm/dpo: passes over the training pairs")
    ap.add_argument("--rm-lr", type=float, default=2e-4, help="rm: LoRA learning rate (the head gets 10x)")
    ap.add_argument("--dpo-lr", type=float, default=1e-4, help="dpo: LoRA learning rate")
    ap.add_argument("--ppo-lr", type=float, default=1e-4, help="ppo: LoRA learning rate")
    ap.add_argument("--ppo-steps", type=int, default=12)
    ap.add_argument("--ppo-reward", default="rm", help="ppo: 'rm' (the rm part's model) or a programmatic reward (brevity)")
    ap.add_argument("--ppo-kl-end", type=float, default=0.1, help="ppo: KL coefficient at the last step")
    ap.add_argument("--ppo-epochs", type=int, default=2, help="ppo: clipped updates per sampled batch")
    ap.add_argument("--ppo-eval-rows", type=int, default=32, help="ppo: held-out prompts scored before and after")
    ap.add_argument("--embed-steps", type=int, default=30)
    ap.add_argument("--judge-held", default="",
                    help="rm/dpo: comma-separated run folders (trained with --pref-eval val) to judge once on the "
                         "held-out pairs of the same split")
    ap.add_argument("--serve-child", help=argparse.SUPPRESS)  # the serve part's per-configuration process
    args = ap.parse_args()
    if args.serve_child:
        print(json.dumps(serve_child(json.loads(args.serve_child)), ensure_ascii=False))
        return
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
    if {"rm", "dpo", "ppo"} & set(parts) or args.judge_held:
        train, held, val = preference_split(args.data_dir, out, args.pref_train, args.pref_held, args.pref_val)
        judged = held if args.pref_eval == "held" else val
        common = {"batch_size": 8, "max_len": args.pref_len, "threads": 1,
                  "eval_rows": args.pref_held if args.pref_eval == "held" else args.pref_val,
                  "epochs": args.pref_epochs,
                  "lora_layers": args.pref_lora_layers}
        result["preference_pairs"] = {"train": args.pref_train, "held": args.pref_held, "val": args.pref_val,
                                      "evaluated_on": args.pref_eval,
                                      "shorter_answer_accuracy": shorter_answer_baseline(judged)}
        if "rm" in parts:
            result["rm"] = recipe(out, "rm", train, judged, lr=args.rm_lr, **common)
        if "dpo" in parts:
            result["dpo"] = recipe(out, "dpo", train, judged, lr=args.dpo_lr, **common)
        if args.judge_held:
            result["preference_pairs"]["held_shorter_answer_accuracy"] = shorter_answer_baseline(held)
            result["held_out"] = {f: judge_held(Path(f), held, out / "home") for f in args.judge_held.split(",")}
        reward = str(out / "rm") if args.ppo_reward == "rm" else args.ppo_reward
        if "ppo" in parts and (args.ppo_reward != "rm" or (out / "rm" / "report.json").is_file()):
            result["ppo"] = recipe(out, "ppo", train, held, reward_model=reward, max_steps=args.ppo_steps,
                                   batch_size=8, max_len=args.pref_len, max_new_tokens=16, threads=1,
                                   eval_rows=args.ppo_eval_rows, lr=args.ppo_lr, kl_end=args.ppo_kl_end,
                                   ppo_epochs=args.ppo_epochs)
            report = json.loads((out / "ppo" / "report.json").read_text())
            for key in ("kl_curve", "reward_curve", "held_out_reward_change"):
                result["ppo"][key] = report[key]
    if "embed" in parts:
        result["embed"] = embed_part(args.data_dir, out, args.embed_steps)
    if "serve" in parts:
        result["serve"] = serve_part(out)
    if "export" in parts and (out / "sft" / "report.json").is_file():
        from lingxi.tune.adapters import export_gguf

        began = time.perf_counter()
        result["export"] = {**export_gguf(out / "sft", out / "home"), "seconds": round(time.perf_counter() - began, 1)}
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
