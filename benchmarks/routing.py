"""Router: cost saved versus always-strong and quality kept, per policy, on a real local model's answers.

Data: ``benchmarks/data/routing_questions.jsonl`` — 80 short-answer questions written for this
benchmark (40 English, 40 Chinese; facts, arithmetic, word problems, code), each with reference
answers. ``benchmarks/data/routing_eval.jsonl`` holds the bundled SmolLM2-135M's greedy answers
to them (``lingxi route collect --no-strong``; ``--regenerate`` here makes them again), each
scored against the references (containment / token F1).

The strong model is not run here (no cloud access): its answers are taken to be the references
(quality 1.0, an assumption that favours always-strong) and its cost comes from the configured
price of a GPT-4o-class API, USD 2.50 / 10.00 per million input / output tokens, over the real
prompt tokens and the reference's tokens. The local model is free (no price configured).

Reported: the built-in prior policy on all questions, and policies trained with ``route train``
in 2-fold cross-validation (train on one half, evaluate on the other; never on their own data).

    python benchmarks/routing.py
    python benchmarks/routing.py --regenerate     # re-run SmolLM2 on the questions (~2 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from lingxi.config import parse_config
from lingxi.engines import GenerationParams, load_engine
from lingxi.routing import PRIOR, Router, collect, evaluate, examples, train

HERE = Path(__file__).parent / "data"
CONFIG = {
    "models": {"strong": {"engine": "fake", "cost_per_mtok_in": 2.5, "cost_per_mtok_out": 10.0,
                          "description": "priced like a GPT-4o-class cloud API; not called here"}},
    "gateway": {"router": {"policy": "cascade", "local_model": "smollm2", "strong_model": "strong"}},
}
KEYS = ("quality", "quality_kept", "cost_saved", "strong_share")


def mean_policies(folds: list[dict]) -> dict:
    out = {}
    for name in folds[0]["policies"]:
        out[name] = {k: round(float(np.mean([f["policies"][name][k] for f in folds])), 4) for k in KEYS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=Path, default=HERE / "routing_questions.jsonl")
    parser.add_argument("--answers", type=Path, default=HERE / "routing_eval.jsonl")
    parser.add_argument("--regenerate", action="store_true", help="answer the questions with SmolLM2 again")
    args = parser.parse_args()
    settings = parse_config({"home": tempfile.mkdtemp(prefix="lingxi-bench-"), **CONFIG})
    if args.regenerate or not args.answers.exists():
        questions = examples(args.questions, "smollm2")
        collect(questions, load_engine("smollm2", settings), None, args.answers,
                GenerationParams(max_tokens=64, temperature=0.0, seed=0))
    exs = examples(args.answers, "smollm2")

    prior = evaluate(exs, settings, Router(settings, PRIOR))
    order = np.random.default_rng(0).permutation(len(exs))
    halves = [[exs[i] for i in order[: len(exs) // 2]], [exs[i] for i in order[len(exs) // 2:]]]
    folds = []
    for k in (0, 1):
        policy, report = train(halves[k], source=f"fold {k}")
        result = evaluate(halves[1 - k], settings, Router(settings, policy))
        result["train_report"] = report
        folds.append(result)
    print(json.dumps({
        "data": {"questions": args.questions.name, "answers": args.answers.name, "examples": len(exs),
                 "local_model": "smollm2 (SmolLM2-135M-Instruct Q4_1, greedy, max 64 tokens)",
                 "strong_model": "assumed correct; priced USD 2.50/10.00 per Mtok in/out",
                 "local_good_share": prior["local_good_share"],
                 "local_good_share_by_lang": {
                     lang: round(float(np.mean([e.good for e in exs if e.id.startswith(lang)])), 4)
                     for lang in ("en", "zh")}},
        "prior_policy": {"signal_auc": prior["signal_auc"], "policies": prior["policies"],
                         "cascade_sweep": prior["cascade_sweep"]},
        "trained_2fold": {"signal_auc": [f["signal_auc"] for f in folds], "policies": mean_policies(folds),
                          "cascade_sweep": [
                              {"escalate_below": s0["escalate_below"],
                               **{k: round((s0[k] + s1[k]) / 2, 4) for k in KEYS}}
                              for s0, s1 in zip(folds[0]["cascade_sweep"], folds[1]["cascade_sweep"])],
                          "train_reports": [f["train_report"] for f in folds]},
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
