"""Training and evaluating the router from JSONL files.

Two record shapes are read (one JSON object per line):

- **traffic log** (what the gateway logs, with user feedback)::

    {"messages": [...], "model": "smollm2", "answer": "...", "finish_reason": "stop",
     "feedback": "up" | "down" | 1 | -1 | true | false}      # or "quality": 0.0..1.0

  Only answers by the local model teach the router (they say whether local was good enough).
  The gateway's thumbs up/down store (``rating`` +1/-1) is read the same way (``route train --feedback``).

- **evaluation record** (both models' answers to the same request, each with a quality)::

    {"id": "q1", "messages": [...],
     "local":  {"answer": "...", "quality": 0.2, "finish_reason": "stop", "prompt_tokens": 31, "completion_tokens": 12},
     "strong": {"answer": "...", "quality": 1.0}}

  The local answer was good enough when ``local.quality >= strong.quality - margin``.
  :func:`collect` makes these records by running both models on questions with references.

:func:`train` fits the query and answer classifiers; :func:`evaluate` reports, per policy,
quality, cost (from the models' ``cost_per_mtok_in``/``cost_per_mtok_out``), cost saved versus
always using the strong model and quality kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.engines.base import ChatEngine, GenerationParams, estimate_tokens
from lingxi.errors import UsageError
from lingxi.evaluate.result import jsonl_records
from lingxi.routing.policy import (
    ANSWER_FEATURES,
    PRIOR,
    QUERY_FEATURES,
    Policy,
    answer_features,
    fit_logistic,
    quality_score,
    query_features,
)

__all__ = ["Answer", "Example", "examples", "examples_from", "train", "evaluate", "collect",
           "model_cost"]

_FEEDBACK = {"up": 1.0, "good": 1.0, "down": 0.0, "bad": 0.0, "1": 1.0, "-1": 0.0, "true": 1.0, "false": 0.0,
             "👍": 1.0, "👎": 0.0}


@dataclass
class Answer:
    text: str | None
    quality: float | None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Example:
    """One request with what is known about its local (and maybe strong) answer."""

    id: str
    messages: list[dict]
    local: Answer | None
    strong: Answer | None = None
    good: bool | None = None
    """Was the local answer good enough? None = not known from this record."""
    references: list[str] = field(default_factory=list)


def _messages(obj: dict, where: str) -> list[dict]:
    messages = obj.get("messages")
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if messages is None and isinstance(obj.get("question"), str):
        return [{"role": "user", "content": obj["question"]}]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise UsageError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    return messages


def _quality(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        if value in (1, -1) and not isinstance(value, float):
            return 1.0 if value == 1 else 0.0
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{where}: quality must be in [0, 1] (or feedback up/down), got {value}")
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _FEEDBACK:
        return _FEEDBACK[value.strip().lower()]
    raise UsageError(f"{where}: feedback must be up/down, true/false, 1/-1 or a quality in [0, 1], got {value!r}")


def _answer(obj: Any, where: str) -> Answer:
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected an object with 'answer' and 'quality'")
    quality = obj.get("quality", obj.get("feedback"))
    return Answer(obj.get("answer"), None if quality is None else _quality(quality, where),
                  obj.get("finish_reason", "stop"), obj.get("prompt_tokens"), obj.get("completion_tokens"))


def examples(path: str | os.PathLike[str], local_model: str, margin: float = 0.2) -> list[Example]:
    """Read traffic-log and evaluation records into :class:`Example` s (see the module docstring)."""
    records = jsonl_records(path, "routing records")
    return examples_from(((f"{path}:{n}", obj) for n, obj in records), local_model, margin)


def examples_from(records: Iterable[tuple[str, dict]], local_model: str, margin: float = 0.2) -> list[Example]:
    """Like :func:`examples`, from ``(where, record)`` pairs — e.g. the gateway's feedback store rows
    (``rating`` +1/-1 is read as feedback)."""
    out = []
    for where, obj in records:
        messages = _messages(obj, where)
        refs = obj.get("reference", obj.get("references", []))
        refs = [refs] if isinstance(refs, str) else list(refs or [])
        ident = str(obj.get("id", where))
        if "local" in obj or "strong" in obj:
            local = _answer(obj["local"], f"{where}: local") if "local" in obj else None
            strong = _answer(obj["strong"], f"{where}: strong") if "strong" in obj else None
            good = None
            if local and local.quality is not None:
                good = local.quality >= (strong.quality if strong and strong.quality is not None else 1.0) - margin
            out.append(Example(ident, messages, local, strong, good, refs))
            continue
        if obj.get("model") not in (None, local_model):
            continue  # a strong-model answer says nothing about the local model
        value = obj.get("quality", obj.get("feedback", obj.get("rating")))
        quality = None if value is None else _quality(value, where)
        local = Answer(obj.get("answer"), quality, obj.get("finish_reason", "stop"))
        out.append(Example(ident, messages, local, None, None if quality is None else quality >= 0.5, refs))
    return out


def _cv_accuracy(rows: list[dict], labels: list[int], features: list[str], folds: int = 5) -> float | None:
    if len(rows) < folds * 2:
        return None
    order = np.random.default_rng(0).permutation(len(rows))
    correct = 0
    for k in range(folds):
        test = set(order[k::folds].tolist())
        train_idx = [i for i in range(len(rows)) if i not in test]
        y = [labels[i] for i in train_idx]
        if sum(y) < 2 or len(y) - sum(y) < 2:
            return None
        model = fit_logistic([rows[i] for i in train_idx], y, features)
        correct += sum((model.proba(rows[i]) >= 0.5) == bool(labels[i]) for i in test)
    return correct / len(rows)


def train(exs: Sequence[Example], *, l2: float = 1.0, source: str = "") -> tuple[Policy, dict[str, Any]]:
    """Fit the query classifier (and the answer classifier where answers are known).

    Returns the policy and a report (counts, 5-fold cross-validated accuracy, base rate).

    Raises:
        UsageError: too few labelled examples of either kind.
    """
    labelled = [e for e in exs if e.good is not None]
    if not labelled:
        raise UsageError("no labelled examples: records need feedback/quality for the local model's answers")
    q_rows = [query_features(e.messages) for e in labelled]
    q_y = [int(e.good) for e in labelled]
    query = fit_logistic(q_rows, q_y, QUERY_FEATURES, l2=l2)
    with_answer = [e for e in labelled if e.local and e.local.text is not None]
    a_rows = [answer_features(e.messages, e.local.text, e.local.finish_reason) for e in with_answer]
    a_y = [int(e.good) for e in with_answer]
    report: dict[str, Any] = {
        "examples": len(labelled), "good_share": round(sum(q_y) / len(q_y), 3),
        "query_model": {"cv_accuracy": _round(_cv_accuracy(q_rows, q_y, QUERY_FEATURES))},
    }
    if len(with_answer) >= 4 and 2 <= sum(a_y) <= len(a_y) - 2:
        answer = fit_logistic(a_rows, a_y, ANSWER_FEATURES, l2=l2)
        report["answer_model"] = {"examples": len(with_answer),
                                  "cv_accuracy": _round(_cv_accuracy(a_rows, a_y, ANSWER_FEATURES))}
    else:
        answer = PRIOR.answer
        report["answer_model"] = {"examples": len(with_answer), "kept": "prior (too few answers of each kind)"}
    meta = {"source": source, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **report}
    return Policy(query, answer, meta), report


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def model_cost(settings: Any, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for one call, from the model's ``cost_per_mtok_in``/``cost_per_mtok_out`` (None = free)."""
    cfg = settings.model(model)
    return (prompt_tokens * (cfg.cost_per_mtok_in or 0.0) + completion_tokens * (cfg.cost_per_mtok_out or 0.0)) / 1e6


def _tokens(e: Example, a: Answer) -> tuple[int, int]:
    prompt = a.prompt_tokens if a.prompt_tokens is not None else estimate_tokens(
        "\n".join(str(m.get("content") or "") for m in e.messages))
    completion = a.completion_tokens if a.completion_tokens is not None else estimate_tokens(a.text or "")
    return prompt, completion


def evaluate(exs: Sequence[Example], settings: Any, router: Any,
             thresholds: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) -> dict[str, Any]:
    """Quality and cost of each policy on examples that have both answers' qualities.

    Raises:
        UsageError: no usable examples, or the strong model has no cost configured.
    """
    rows = [e for e in exs if e.local and e.strong and e.local.quality is not None and e.strong.quality is not None]
    if not rows:
        raise UsageError("no evaluation records with both 'local' and 'strong' answers and qualities")
    local, strong = router.local, router.strong
    if not strong:
        raise UsageError("gateway.router.strong_model is not set: nothing to compare against")
    s_cfg = settings.model(strong)
    if not (s_cfg.cost_per_mtok_in or s_cfg.cost_per_mtok_out):
        raise UsageError(f"model '{strong}' has no cost_per_mtok_in/cost_per_mtok_out in the config: "
                         "cost saved cannot be computed")
    l_cost = np.array([model_cost(settings, local, *_tokens(e, e.local)) for e in rows])
    s_cost = np.array([model_cost(settings, strong, *_tokens(e, e.strong)) for e in rows])
    l_q = np.array([e.local.quality for e in rows])
    s_q = np.array([e.strong.quality for e in rows])
    base_cost, base_q = float(s_cost.sum()), float(s_q.mean())

    def summary(use_strong: np.ndarray, cost: np.ndarray) -> dict[str, Any]:
        quality = float(np.where(use_strong, s_q, l_q).mean())
        total = float(cost.sum())
        return {"quality": round(quality, 4), "cost_usd": round(total, 6),
                "cost_saved": round(1 - total / base_cost, 4) if base_cost else None,
                "quality_kept": round(quality / base_q, 4) if base_q else None,
                "strong_share": round(float(use_strong.mean()), 4)}

    q_p = np.array([router.policy.query.proba(query_features(e.messages)) for e in rows])
    conf = np.array([router.confidence(e.messages, e.local.text or "", e.local.finish_reason)[0] for e in rows])
    learned_strong = q_p < router.cfg.route_local_above
    policies = {
        "always_local": summary(np.zeros(len(rows), bool), l_cost),
        "always_strong": summary(np.ones(len(rows), bool), s_cost),
        "learned": summary(learned_strong, np.where(learned_strong, s_cost, l_cost)),
        "cascade": summary(conf < router.cfg.escalate_below,
                           l_cost + np.where(conf < router.cfg.escalate_below, s_cost, 0.0)),
        "oracle": summary(l_q < s_q, np.where(l_q < s_q, s_cost, l_cost)),
    }
    if router.cfg.rules:
        picks = np.array([(router.match_rule(e.messages, "") or _Default(local)).model == strong for e in rows])
        policies["rules"] = summary(picks, np.where(picks, s_cost, l_cost))
    sweep = [{"escalate_below": t, **summary(conf < t, l_cost + np.where(conf < t, s_cost, 0.0))} for t in thresholds]
    good = np.array([e.good for e in rows], dtype=bool)
    return {
        "examples": len(rows), "local_model": local, "strong_model": strong,
        "policy_source": router.policy.meta.get("source", "trained"),
        "thresholds": {"route_local_above": router.cfg.route_local_above,
                       "escalate_below": router.cfg.escalate_below},
        "local_good_share": round(float(good.mean()), 4),
        "signal_auc": {"query_model": _auc(q_p, good), "answer_model": _auc(conf, good)},
        "policies": policies,
        "cascade_sweep": sweep,
    }


@dataclass
class _Default:
    model: str


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a good example scores above a bad one (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return round(float(greater / (len(pos) * len(neg))), 4)


def collect(questions: Sequence[Example], local: ChatEngine, strong: ChatEngine | None, out: Path,
            params: GenerationParams, progress: bool = True) -> int:
    """Answer each question with both engines, score each answer against its references, and write
    evaluation records to ``out``.

    Resumable: records go to ``out.partial`` as they are made and a rerun skips the ids already
    there; ``out`` appears (atomically) only when every question is answered. Without a strong
    engine, the strong side is the first reference itself (quality 1.0): the cost of the strong
    model is still counted, its quality is assumed.

    Returns the number of questions answered by this run.
    """
    partial = out.with_name(out.name + ".partial")
    done = _answered(partial)
    todo = [q for q in questions if q.id not in done]
    from tqdm import tqdm

    with open(partial, "a", encoding="utf-8") as fh:
        for q in tqdm(todo, desc="answering", unit="q", disable=not progress):
            if not q.references:
                raise UsageError(f"question {q.id} has no 'reference' answer to score against")
            record: dict[str, Any] = {"id": q.id, "messages": q.messages, "reference": q.references}
            for side, engine in (("local", local), ("strong", strong)):
                if engine is None:
                    record[side] = {"answer": q.references[0], "quality": 1.0, "assumed": True}
                    continue
                c = engine.generate(q.messages, params)
                record[side] = {"answer": c.text, "quality": round(quality_score(c.text, q.references), 4),
                                "finish_reason": c.finish_reason, "prompt_tokens": c.usage.prompt_tokens,
                                "completion_tokens": c.usage.completion_tokens}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
    os.replace(partial, out)
    return len(todo)


def _answered(partial: Path) -> set[str]:
    """The ids ``partial`` holds. A last line a kill cut short is removed, so the next record
    starts on a line of its own."""
    if not partial.exists():
        return set()
    data = partial.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        with open(partial, "r+b") as fh:
            fh.truncate(len(whole))
    return {str(json.loads(line).get("id")) for line in whole.decode("utf-8").splitlines() if line.strip()}
