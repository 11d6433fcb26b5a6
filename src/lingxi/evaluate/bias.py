"""``lingxi eval bias``: does swapping a group word change how likely the model finds a sentence?

Minimal pairs (CrowS-Pairs style): a neutral sentence template with one slot, filled with two
groups (gender, region, age; English and Chinese). The score of a pair is the difference in the
model's log-likelihood of the two whole sentences, per token of the longer one, from the model's
own logits (the perplexity backends). An unbiased model gives differences near zero; the report
gives, per category and language, the mean signed difference (positive: the first group of the
pair is preferred), the mean absolute difference, and the share of pairs where the first group
wins (50 % = no preference).

The built-in pairs (``evaluate/data/bias_pairs.json``) are small and written for Lingxi; pass
``--data`` with JSONL lines ``{"category", "lang", "a", "b"}`` for your own.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.evaluate.result import EvalRun, data_record, jsonl_records, package_versions


def builtin_pairs() -> list[dict[str, str]]:
    doc = json.loads(files("lingxi.evaluate").joinpath("data/bias_pairs.json").read_text(encoding="utf-8"))
    pairs = []
    for category, by_lang in doc["swaps"].items():
        for lang, swaps in by_lang.items():
            for template in doc["templates"][lang]:
                for a, b in swaps:
                    pairs.append({"category": category, "lang": lang, "a": template.format(x=a),
                                  "b": template.format(x=b)})
    return pairs


def read_pairs(path: str | Path) -> list[dict[str, str]]:
    pairs = []
    for n, row in jsonl_records(path, "pairs"):
        if any(k not in row for k in ("category", "lang", "a", "b")):
            raise UsageError(f"pairs {path}: line {n} needs \"category\", \"lang\", \"a\", \"b\"")
        pairs.append({k: str(row[k]) for k in ("category", "lang", "a", "b")})
    return pairs


def sentence_logprob(scorer: Any, text: str) -> tuple[float, int]:
    """Sum of log p over the sentence's tokens after the first, and that token count."""
    tokens = scorer.tokenize(text)
    if len(tokens) < 2:
        return 0.0, 0
    return float(scorer.logprobs(tokens).sum()), len(tokens) - 1


def evaluate_bias(model: str, *, settings: Any = None, data: str | Path | None = None, backend: str | None = None,
                  scorer: Any = None) -> EvalRun:
    """Score every pair; the summary is per ``category/lang`` (see the module docstring)."""
    from lingxi.evaluate.perplexity import load_scorer, resolve_model

    pairs = read_pairs(data) if data else builtin_pairs()
    own = scorer is None
    ref = resolve_model(model, settings, backend) if own else None
    scorer = scorer or load_scorer(ref, context=256)
    items = []
    try:
        for n, pair in enumerate(pairs):
            la, na = sentence_logprob(scorer, pair["a"])
            lb, nb = sentence_logprob(scorer, pair["b"])
            diff = (la - lb) / max(na, nb, 1)
            items.append({"id": str(n), "category": pair["category"], "lang": pair["lang"], "a": pair["a"],
                          "b": pair["b"], "scores": {"diff": diff, "abs_diff": abs(diff), "a_wins": float(la > lb)}})
    finally:
        if own:
            scorer.close()
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(f"{item['category']}/{item['lang']}", []).append(item["scores"])
    summary: dict[str, Any] = {}
    for key, scores in sorted(groups.items()):
        n = len(scores)
        summary[f"{key}.mean_diff"] = sum(s["diff"] for s in scores) / n
        summary[f"{key}.mean_abs_diff"] = sum(s["abs_diff"] for s in scores) / n
        summary[f"{key}.a_preferred_pct"] = 100 * sum(s["a_wins"] for s in scores) / n
    summary["mean_abs_diff"] = sum(i["scores"]["abs_diff"] for i in items) / len(items)
    summary["pairs"] = len(items)
    return EvalRun(kind="bias", summary=summary, items=items,
                   config={"model": ref.label if ref else model, "backend": ref.backend if ref else None,
                           "pairs": "builtin" if data is None else str(data),
                           "score": "log-likelihood difference per token, sentence a minus b"},
                   data=data_record({"pairs": data}) if data else {"builtin_pairs": len(items)},
                   versions=package_versions("llama_cpp_python", "torch", "transformers"))


def format_bias(run: EvalRun) -> str:
    lines = [f"{'category/lang':<14}{'mean diff':>11}{'mean |diff|':>13}{'a preferred':>13}"]
    keys = sorted({k.rsplit(".", 1)[0] for k in run.summary if "." in k})
    for key in keys:
        s = run.summary
        lines.append(f"{key:<14}{s[key + '.mean_diff']:>+11.4f}{s[key + '.mean_abs_diff']:>13.4f}"
                     f"{s[key + '.a_preferred_pct']:>12.1f}%")
    lines.append(f"{run.summary['pairs']} pairs; diff = log-likelihood per token, first group minus second")
    return "\n".join(lines)
