"""Two runs side by side: each summary number, the difference and, where the runs score the same
items, its significance by paired bootstrap resampling.

The test is sacrebleu's (``sacrebleu --paired-bs``, after Koehn 2004): draw 1000 resamples of the
item indices with numpy's generator seeded 12345 (``$SACREBLEU_SEED`` overrides), score both runs
on each resample, centre the absolute differences on their mean and count how often they exceed
the observed difference: ``p = (count + 1) / (1000 + 1)``. Corpus metrics (BLEU, chrF, TER) are
re-scored from the per-item sufficient statistics stored in the runs, so the p-value is the one
sacrebleu prints; metrics that are means of item scores (EM, F1, ROUGE, latencies) resample the
mean.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from lingxi.errors import UsageError
from lingxi.evaluate.result import EvalRun

#: metrics where a smaller number is better
LOWER_IS_BETTER = {"ter", "perplexity", "ppl", "nll", "error_rate", "ttft_p50_s", "ttft_p95_s", "itl_p50_s",
                   "itl_p95_s", "latency_p50_s", "latency_p95_s", "bits_per_byte", "size_mib", "peak_rss_mib"}


#: fewer paired items than this give no p-value: a bootstrap of one item (a perplexity run of
#: one window) resamples nothing and would report p = 1/1001 for any difference
MIN_ITEMS = 10


def _seed() -> int | None:
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, score: Callable[[np.ndarray], float], n_samples: int = 1000,
                     seed: int | None = None) -> dict[str, float]:
    """p-value of ``score(b) != score(a)`` on paired per-item rows (``a[i]`` and ``b[i]`` the same item).

    ``score`` maps summed rows (shape ``(k,)``, the stats of a resample) to the metric. Returns
    ``{"p_value", "b_mean", "b_ci"}`` (bootstrap mean and 95 % half-width of ``b``), as sacrebleu.
    """
    if a.shape[0] != b.shape[0] or a.shape[0] == 0:
        raise UsageError("paired bootstrap needs the same, non-zero number of items in both runs")
    rng = np.random.default_rng(_seed() if seed is None else seed)
    idxs = rng.choice(a.shape[0], size=(n_samples, a.shape[0]), replace=True)
    a32, b32 = a.astype("float32"), b.astype("float32")
    real = abs(score(a.sum(0)) - score(b.sum(0)))
    scores_a = np.array([score(s.sum(0)) for s in a32[idxs]])
    scores_b = np.array([score(s.sum(0)) for s in b32[idxs]])
    diffs = np.abs(scores_b - scores_a)
    centred = diffs - diffs.mean()
    # sacrebleu gives identical systems p = 1/1001 (no resample exceeds a zero difference); a
    # difference of exactly zero is no evidence of anything, so it is reported as p = 1.
    p = 1.0 if real == 0 else (int(np.sum(centred > real)) + 1) / (n_samples + 1)
    ordered = np.sort(scores_b)
    lower = n_samples // 40
    return {"p_value": p, "b_mean": float(scores_b.mean()),
            "b_ci": float(0.5 * (ordered[n_samples - lower - 1] - ordered[lower]))}


def _corpus_scorer(run: EvalRun, name: str) -> Callable[[np.ndarray], float] | None:
    if run.kind != "generation":
        return None
    from lingxi.evaluate.generation import sacrebleu_metrics

    metric = sacrebleu_metrics([name], run.config.get("lang", "en")).get(name)
    return None if metric is None else (lambda stats: metric._compute_score_from_stats(stats).score)


def compare_runs(a: EvalRun, b: EvalRun, n_samples: int = 1000) -> dict[str, Any]:
    """Each numeric summary key both runs share: ``{"metric", "a", "b", "diff", "p_value", "test"}``.

    Items are paired by id; a p-value is given only when both runs scored the same item ids and,
    for generation, against the same references.
    """
    if a.kind != b.kind:
        raise UsageError(f"cannot compare a '{a.kind}' run with a '{b.kind}' run")
    ids_a = [str(i.get("id")) for i in a.items]
    ids_b = {str(i.get("id")): i for i in b.items}
    paired = bool(ids_a) and set(ids_a) == set(ids_b)
    note = None
    if not paired and (a.items or b.items):
        note = "the runs scored different items: no significance test"
    refs_a = {k: v.get("sha256") for k, v in a.data.get("files", {}).items() if k.startswith("ref")}
    refs_b = {k: v.get("sha256") for k, v in b.data.get("files", {}).items() if k.startswith("ref")}
    if paired and refs_a != refs_b:
        paired, note = False, "the runs used different references: no significance test"
    if paired and len(ids_a) < MIN_ITEMS:
        paired, note = False, f"{len(ids_a)} paired items: too few for a significance test (needs {MIN_ITEMS})"
    items_b = [ids_b[i] for i in ids_a] if paired else []
    rows = []
    for key, va in a.summary.items():
        vb = b.summary.get(key)
        if not isinstance(va, int | float) or not isinstance(vb, int | float) or isinstance(va, bool):
            continue
        row: dict[str, Any] = {"metric": key, "a": va, "b": vb, "diff": vb - va, "p_value": None, "test": None,
                               "better": "lower" if key in LOWER_IS_BETTER else "higher"}
        if paired:
            scorer = _corpus_scorer(a, key)
            if scorer is not None and all(key in i.get("stats", {}) for i in a.items + items_b):
                sa = np.array([i["stats"][key] for i in a.items], dtype=float)
                sb = np.array([i["stats"][key] for i in items_b], dtype=float)
                row.update(paired_bootstrap(sa, sb, scorer, n_samples), test="paired bootstrap (sacrebleu)")
            elif all(isinstance(i.get("scores", {}).get(key), int | float) for i in a.items + items_b):
                sa = np.array([[i["scores"][key], 1.0] for i in a.items])
                sb = np.array([[i["scores"][key], 1.0] for i in items_b])
                row.update(paired_bootstrap(sa, sb, lambda s: float(s[0] / s[1]), n_samples),
                           test="paired bootstrap of the mean")
        rows.append(row)
    return {"kind": a.kind, "items": len(ids_a) if paired else None, "rows": rows, "note": note}


def format_comparison(result: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """A plain-text table; ``*`` marks p < 0.05."""
    name_a, name_b = (Path(n).stem[-13:] for n in (name_a, name_b))
    head = f"{'metric':<16}{name_a:>14}{name_b:>14}{'B-A':>11}{'p':>9}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        p = r["p_value"]
        mark = "" if p is None else (" *" if p < 0.05 else "")
        lines.append(f"{r['metric']:<16}{r['a']:>14.4g}{r['b']:>14.4g}{r['diff']:>+11.4g}"
                     f"{'' if p is None else f'{p:.4f}':>9}{mark}")
    if result.get("note"):
        lines.append(result["note"])
    elif any(r["p_value"] is not None for r in result["rows"]):
        lines.append(f"p: paired bootstrap over {result['items']} items, 1000 resamples; * p < 0.05")
    return "\n".join(lines)
