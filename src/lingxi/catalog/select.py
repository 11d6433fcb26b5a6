"""The selection advisor: hard requirements first, then a transparent score.

Every catalog model ends up either in ``candidates`` (with its score and one reason per score
component) or in ``rejected`` (with every requirement it fails). The score is a sum of five
components, each capped and multiplied by the scenario's weight (default 1):

========== ===== =========================================================================
component  max   how it is earned
========== ===== =========================================================================
quality    40    the task's benchmark: HumanEval (code), GSM8K (math), C-Eval/CMMLU (zh),
                 else MMLU; 40 × (score − chance)/(100 − chance), chance 25 for the four-way
                 multiple-choice MMLU/C-Eval/CMMLU, 0 otherwise. A fallback to MMLU counts
                 75%. Quantizing to fit the memory limit costs 2 (int8) or 4 (int4) points.
language   15    zh: native 15, supported 8 · multi: ≥10 languages or "many" 15, ≥5 10 · en 15
task       15    the card names the task's strength (code, math/reasoning, tool-use, long
                 context for rag/summarize, multilingual for translate, chat)
context    10    10 × log2(model window / required) / 4, capped at 10 (16× headroom = full)
cost       20    API: 20 × (1 − price/budget), or 20 / (1 + price) without a budget (USD per
                 million tokens, 3:1 blend) · local (hardware is a fixed cost, so footprint
                 earns at most 10): 10 × (1 − memory/limit), or 10 / (1 + memory/40 GiB)
========== ===== =========================================================================

Benchmarks are as published (different shots and base/instruct variants, see each score's
``setting``); the score ranks, it does not certify.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lingxi.catalog.estimate import PRECISIONS, Estimate, estimate
from lingxi.catalog.registry import Catalog
from lingxi.catalog.schema import ModelEntry, Scenario
from lingxi.errors import UsageError

TASKS = ("chat", "code", "rag", "summarize", "translate", "math", "agent")
LANGS = ("zh", "en", "multi")
DEPLOYS = ("local", "cloud", "either")
LICENSES = ("commercial", "any")
COMPONENTS = ("quality", "language", "task", "context", "cost")

#: Score of random guessing (four-way multiple choice); quality counts only what is above it.
_CHANCE = {"MMLU": 25.0, "C-Eval": 25.0, "CMMLU": 25.0}

_TASK_STRENGTHS = {
    "chat": ("chat",), "code": ("code",), "math": ("math", "reasoning"), "agent": ("tool-use",),
    "translate": ("multilingual",), "rag": ("long-context",), "summarize": ("long-context",),
}


@dataclass(frozen=True)
class Requirements:
    """What the deployment needs. ``None`` means no requirement."""

    task: str | None = None
    lang: str | None = None
    deploy: str = "either"
    max_gpu_mem: float | None = None
    """GiB available for one local deployment."""
    context: int | None = None
    license: str = "any"
    budget_per_mtok: float | None = None
    """USD per million tokens (3:1 blend) an API model may cost."""
    precision: str | None = None
    """Only try this precision for local models (default: bf16, then int8, then int4)."""
    weights: dict[str, float] = field(default_factory=dict)
    scenario: str | None = None

    def __post_init__(self) -> None:
        checks = [("task", self.task, TASKS), ("lang", self.lang, LANGS), ("deploy", self.deploy, DEPLOYS),
                  ("license", self.license, LICENSES)]
        for name, value, allowed in checks:
            if value is not None and value not in allowed:
                raise UsageError(f"unknown --{name} '{value}'; expected one of {', '.join(allowed)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision '{self.precision}'; expected one of {', '.join(PRECISIONS)}")
        if self.max_gpu_mem is not None and self.max_gpu_mem <= 0:
            raise UsageError(f"--max-gpu-mem must be > 0 GiB, got {self.max_gpu_mem}")
        if self.context is not None and self.context < 1:
            raise UsageError(f"--context must be >= 1, got {self.context}")
        if self.budget_per_mtok is not None and self.budget_per_mtok < 0:
            raise UsageError(f"--budget-per-mtok must be >= 0, got {self.budget_per_mtok}")

    @classmethod
    def from_scenario(cls, scenario: Scenario | None, **overrides: Any) -> Requirements:
        """The scenario's requirements with every non-None override applied on top."""
        base: dict[str, Any] = {}
        if scenario is not None:
            base = {k: getattr(scenario, k) for k in ("task", "lang", "deploy", "max_gpu_mem", "context",
                                                      "license", "budget_per_mtok") if getattr(scenario, k) is not None}
            base["weights"] = dict(scenario.weights)
            base["scenario"] = scenario.id
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass
class Selection:
    requirements: Requirements
    candidates: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    scenario: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"requirements": asdict(self.requirements), "scenario": self.scenario,
                "candidates": self.candidates, "rejected": self.rejected}


def select(catalog: Catalog, req: Requirements) -> Selection:
    """Filter and rank every catalog model against ``req``."""
    candidates, rejected = [], []
    for entry in catalog.models.values():
        why, est = _hard_filters(catalog, entry, req)
        if why:
            rejected.append({"model": entry.id, "why": why})
            continue
        score, reasons = _score(catalog, entry, req, est)
        candidates.append({
            "model": entry.id, "name": entry.name, "score": round(score, 1), "reasons": reasons,
            "deploy": "local" if entry.open_weights else "cloud",
            "estimate": est.to_dict() if est else None,
        })
    candidates.sort(key=lambda c: (-c["score"], c["model"]))
    scn = catalog.scenarios.get(req.scenario) if req.scenario else None
    return Selection(req, candidates, rejected, scn.model_dump() if scn else None)


def _hard_filters(catalog: Catalog, m: ModelEntry, req: Requirements) -> tuple[list[str], Estimate | None]:
    why: list[str] = []
    if req.deploy == "local" and not m.open_weights:
        why.append("API-only: --deploy local needs downloadable weights")
    if req.deploy == "cloud" and m.open_weights:
        why.append("open weights, not a hosted API: --deploy cloud needs a vendor API entry")
    if req.license == "commercial":
        if m.commercial is None:
            why.append("licence terms unknown")
        elif m.commercial == "no":
            why.append(f"licence '{m.license}' does not allow commercial use")
    why += _language_problems(m, req.lang)
    need_ctx = req.context
    if need_ctx is not None:
        if m.context_length is None:
            why.append("context window unknown")
        elif m.context_length < need_ctx:
            why.append(f"context window {m.context_length} < required {need_ctx}")
    if req.budget_per_mtok is not None and not m.open_weights:
        price = _usd_blended(catalog, m)
        if m.price is None or m.price.blended() is None:
            why.append("API price unknown")
        elif price is None:
            why.append(f"priced in {m.price.currency}; set [catalog] cny_per_usd to compare with a USD budget")
        elif price > req.budget_per_mtok:
            why.append(f"${price:.2f} per million tokens (3:1 blend) > budget ${req.budget_per_mtok:.2f}")
    est = None
    if m.open_weights and not why:
        est, problem = _local_estimate(catalog, m, req)
        if problem and req.max_gpu_mem is not None:  # without a memory limit, not knowing the size is no reason to reject
            why.append(problem)
    return why, est


def _language_problems(m: ModelEntry, lang: str | None) -> list[str]:
    if lang == "zh":
        if m.chinese is None:
            return ["Chinese support unknown"]
        if m.chinese == "limited":
            return ["its card does not list Chinese among supported languages"]
    elif lang == "multi":
        if m.languages is None:
            return ["supported languages unknown"]
        if "many" not in m.languages and len(m.languages) < 5:
            return [f"its card lists only {len(m.languages)} language(s): {', '.join(m.languages)}"]
    elif lang == "en" and m.languages is not None and not ({"en", "many"} & set(m.languages)):
        return ["its card does not list English"]
    return []


def _local_estimate(catalog: Catalog, m: ModelEntry, req: Requirements) -> tuple[Estimate | None, str | None]:
    """The best-precision inference estimate that fits ``req.max_gpu_mem`` (or bf16 without a limit)."""
    context = req.context or (min(4096, m.context_length) if m.context_length else 4096)
    precisions = [req.precision] if req.precision else (["bf16", "int8", "int4"] if req.max_gpu_mem else ["bf16"])
    smallest = None
    for precision in precisions:
        try:
            est = estimate(m, precision=precision, context=context)
        except UsageError as exc:
            return None, str(exc)
        smallest = est
        if req.max_gpu_mem is None or est.memory_gib["total"] <= req.max_gpu_mem:
            return est, None
    return None, (f"needs {smallest.memory_gib['total']:.1f} GiB even at {smallest.precision} "
                  f"({context} tokens of context) > {req.max_gpu_mem:g} GiB")


def _usd_blended(catalog: Catalog, m: ModelEntry) -> float | None:
    if m.price is None:
        return None
    return catalog.usd(m.price.blended(), m.price.currency)


def _score(catalog: Catalog, m: ModelEntry, req: Requirements, est: Estimate | None) -> tuple[float, list[str]]:
    parts: list[tuple[str, float, str]] = []
    parts.append(("quality", *_quality(m, req, est)))
    parts.append(("language", *_language(m, req.lang)))
    parts.append(("task", *_task(m, req.task)))
    parts.append(("context", *_context(m, req.context)))
    parts.append(("cost", *_cost_points(catalog, m, req, est)))
    total, reasons = 0.0, []
    for name, points, why in parts:
        w = req.weights.get(name, 1.0)
        points *= w
        total += points
        shown = f"{name} +{points:.1f}" + (f" (×{w:g})" if w != 1.0 else "")
        reasons.append(f"{shown}: {why}")
    if est is not None:
        reasons.append(f"runs locally at {est.precision} in {est.memory_gib['total']:.1f} GiB "
                       f"({est.context} tokens of context)")
    if m.commercial == "conditional" and req.license == "commercial":
        reasons.append(f"commercial use is conditional: {m.license_terms or m.license}")
    return total, reasons


def _quality(m: ModelEntry, req: Requirements, est: Estimate | None) -> tuple[float, str]:
    if req.task == "code":
        order = ["HumanEval"]
    elif req.task == "math":
        order = ["GSM8K"]
    elif req.lang == "zh":
        order = ["C-Eval", "CMMLU"]
    else:
        order = ["MMLU"]
    found = next(((b, 1.0) for b in order if b in m.benchmarks), None)
    if found is None and "MMLU" in m.benchmarks and "MMLU" not in order:
        found = ("MMLU", 0.75)
    penalty = {"int8": 2.0, "int4": 4.0}.get(est.precision, 0.0) if est else 0.0
    if found is None:
        return 0.0, f"no published {' or '.join(order)} score in the catalog"
    bench, factor = found
    s = m.benchmarks[bench]
    chance = _CHANCE.get(bench, 0.0)
    points = max(0.0, 40 * max(0.0, s.score - chance) / (100 - chance) * factor - penalty)
    note = f"{bench} {s.score:g}" + (f" [{s.setting}]" if s.setting else "")
    if factor < 1:
        note += f" (fallback for {'/'.join(order)}, counted at {factor:.0%})"
    if penalty:
        note += f"; −{penalty:g} for running at {est.precision}"
    return points, note


def _language(m: ModelEntry, lang: str | None) -> tuple[float, str]:
    if lang is None:
        return 0.0, "no language requirement"
    if lang == "zh":
        return (15.0, "Chinese is a primary language") if m.chinese == "native" else (8.0, "Chinese supported")
    if lang == "multi":
        langs = m.languages or []
        if "many" in langs or len(langs) >= 10:
            return 15.0, "broad multilingual support" if "many" in langs else f"{len(langs)} languages listed"
        return 10.0, f"{len(langs)} languages listed"
    return 15.0, "English supported"


def _task(m: ModelEntry, task: str | None) -> tuple[float, str]:
    if task is None:
        return 0.0, "no task given"
    wanted = _TASK_STRENGTHS[task]
    hit = [s for s in wanted if s in m.strengths]
    if not hit and task in ("rag", "summarize") and (m.context_length or 0) >= 32768:
        return 15.0, f"{m.context_length}-token window suits {task}"
    if hit:
        return 15.0, f"built for {', '.join(hit)}"
    return 0.0, f"its card does not highlight {' or '.join(wanted)}"


def _context(m: ModelEntry, required: int | None) -> tuple[float, str]:
    need = required or 4096
    if not m.context_length:
        return 0.0, "context window unknown"
    ratio = m.context_length / need
    points = 0.0 if ratio <= 1 else min(10.0, 10 * math.log2(ratio) / 4)
    return points, f"{m.context_length}-token window, {ratio:.3g}× the {need} needed"


def _cost_points(catalog: Catalog, m: ModelEntry, req: Requirements, est: Estimate | None) -> tuple[float, str]:
    if m.open_weights:
        if est is None:
            return 0.0, "self-hosted; memory not estimated"
        total = est.memory_gib["total"]
        if req.max_gpu_mem:
            return 10 * max(0.0, 1 - total / req.max_gpu_mem), f"self-hosted, {total:.1f} of {req.max_gpu_mem:g} GiB"
        return 10 / (1 + total / 40), f"self-hosted, no per-token fee; {total:.1f} GiB at {est.precision}"
    price = _usd_blended(catalog, m)
    if price is None:
        return 0.0, "API price unknown" if m.price is None else f"price in {m.price.currency} (no exchange rate set)"
    if req.budget_per_mtok:
        return 20 * max(0.0, 1 - price / req.budget_per_mtok), f"${price:.3g}/Mtok of ${req.budget_per_mtok:g} budget"
    return 20 / (1 + price), f"${price:.3g} per million tokens (3:1 blend, as of {m.price.as_of})"

