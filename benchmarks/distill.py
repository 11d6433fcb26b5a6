"""Distillation of the bundled SmolLM2-135M into the same model less a few decoder blocks.

Builds the texts from the shared data folder and runs ``lingxi.compress.distill`` on them:

- held-out (scored, never trained on): the first ``--held-docs`` DBpedia-5k documents, the same
  text ``benchmarks/compress.py`` scores the quantised files on;
- training: the next ``--train-docs`` documents (``title. text``, one blank line apart);
- out of domain (scored only, with ``--ood-pairs N``): the first N "chosen" dialogues of the
  hh-rlhf harmless test pairs, to show what training on encyclopaedia text does to the student
  elsewhere.

Usage::

    python benchmarks/distill.py DATA_DIR --out DIR [--train-docs 4940] [--steps 600]
        [--batch-size 4] [--seq-len 256] [--lr 1e-4] [--warmup-steps 30] [--schedule cosine]
        [--eval-every 50] [--max-tokens 2048] [--ood-pairs 40] [--threads 2]

DIR keeps the texts, the student (DIR/student) and its checkpoints (DIR/student.work): running the
same command again resumes. Prints one JSON object: the distillation report (teacher and student
perplexity, quality retained = teacher ppl / student ppl, top-1 agreement, the held-out curve) and
the load average sampled every 30 s while it ran. Target (issue 16): >= 90 % retained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path


def dbpedia_docs(data_dir: Path, start: int, count: int) -> str:
    rows = []
    with open(data_dir / "dbpedia-5k-en" / "corpus.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < start:
                continue
            if len(rows) >= count:
                break
            d = json.loads(line)
            rows.append(f"{d.get('title', '')}. {d['text']}")
    return "\n\n".join(rows)


def dialogues(data_dir: Path, count: int) -> str:
    rows = []
    with open(data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if len(rows) >= count:
                break
            rows.append(json.loads(line)["chosen"].strip())
    return "\n\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--held-docs", type=int, default=60)
    parser.add_argument("--train-docs", type=int, default=4940)
    parser.add_argument("--ood-pairs", type=int, default=0)
    parser.add_argument("--drop-layers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--time-limit", type=float, default=None, help="stop training after this many minutes")
    args = parser.parse_args()

    from lingxi.compress.distill import distill
    from lingxi.config import load_config

    args.out.mkdir(parents=True, exist_ok=True)
    held = args.out / "held_out_en.txt"
    held.write_text(dbpedia_docs(args.data_dir, 0, args.held_docs), encoding="utf-8")
    train = args.out / "train_en.txt"
    train.write_text(dbpedia_docs(args.data_dir, args.held_docs, args.train_docs), encoding="utf-8")
    eval_data = [held]
    if args.ood_pairs:
        ood = args.out / "dialogues.txt"
        ood.write_text(dialogues(args.data_dir, args.ood_pairs), encoding="utf-8")
        eval_data.append(ood)

    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(30):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    report = distill("smollm2", args.out / "student", train, drop_layers=args.drop_layers, steps=args.steps,
                     seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, temperature=args.temperature,
                     alpha=args.alpha, eval_data=eval_data, max_tokens=args.max_tokens,
                     save_every=args.save_every, threads=args.threads, warmup_steps=args.warmup_steps,
                     schedule=args.schedule, eval_every=args.eval_every, settings=load_config(),
                     time_limit_s=60 * args.time_limit if args.time_limit else None)
    done.set()
    print(json.dumps({"held_docs": args.held_docs, "train_docs": args.train_docs, "ood_pairs": args.ood_pairs,
                      "threads": args.threads, "cpus": len(os.sched_getaffinity(0)),
                      "wall_s_this_invocation": round(time.perf_counter() - start, 1),
                      "load_avg_1m": {"min": min(loads, default=None), "max": max(loads, default=None),
                                      "mean": round(sum(loads) / len(loads), 2) if loads else None,
                                      "samples": len(loads)},
                      "report": report}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
