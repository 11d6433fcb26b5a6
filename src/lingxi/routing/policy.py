"""The learned part of routing: features of a query and of a local answer, and a small logistic model.

Two classifiers estimate the same thing — *P(the local model's answer is good enough)* — from
different evidence:

- the **query model** sees only the request (length, language, code, maths, reasoning and
  long-form cues, turns). The ``learned`` policy uses it to pick a model before generating.
- the **answer model** sees the request *and* the local answer: its length, whether it was cut
  off, refusal and hedging phrases, repetition, a language that does not match the question's,
  an answer that only echoes the question. The ``cascade`` uses it to decide, after answering
  locally, whether to escalate.

Both are L2-regularised logistic regressions on standardised features, fitted by Newton's
method in numpy (a few dozen features: exact, fast, no extra dependency) and stored as JSON — a
policy file is data, never code. Without a trained file, :data:`PRIOR` gives hand-set weights
that encode the same cues; ``lingxi route train`` replaces them with weights fitted to logged
traffic and feedback.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.engines.base import estimate_tokens
from lingxi.errors import UsageError
from lingxi.text import CJK

__all__ = [
    "QUERY_FEATURES", "ANSWER_FEATURES", "query_features", "answer_features", "agreement", "Logistic",
    "Policy", "PRIOR", "load_policy", "save_policy", "fit_logistic", "last_user_text",
    "quality_score",
]

_CJK = re.compile(f"[{CJK}]")
_LATIN = re.compile(r"[A-Za-z]")
_TOKENS = re.compile(f"[{CJK}]|[A-Za-z0-9]+")

_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|\breturn\b|;\s*$|\bSELECT\b|\bimport |=>|\{\s*$|#include|"
                   r"\bregex\b|\bSQL\b|\bpython\b|\bjavascript\b|\bbash\b|代码|函数|编程|程序", re.I | re.M)
_MATH = re.compile(r"\d+\s*[-+*/^×÷=]\s*\d+|\bsolve\b|\bcalculate\b|\bcompute\b|\bequation\b|\bprove\b|"
                   r"\bintegral\b|\bderivative\b|\bprobability\b|\bhow many\b|\bhow much\b|计算|求解|方程|证明|"
                   r"概率|多少|几个|积分|导数", re.I)
_REASON = re.compile(r"\bwhy\b|\bexplain\b|\banaly[sz]e\b|\bcompare\b|\bstep by step\b|\breason\b|\bevaluate\b|"
                     r"\bdesign\b|\btrade-?offs?\b|\bpros and cons\b|\bimplications?\b|\bplan\b|\bstrategy\b|"
                     r"为什么|分析|比较|解释|推理|设计|评估|利弊|优缺点|原因|策略|方案", re.I)
_LONGFORM = re.compile(r"\bwrite\b|\bessay\b|\bstory\b|\barticle\b|\breport\b|\bdraft\b|\bpoem\b|\bsummar|"
                       r"写一|撰写|文章|故事|报告|总结|诗", re.I)
_SIMPLE = re.compile(r"^\s*(hi|hello|hey|thanks|thank you|good (morning|night))\b|\bwhat is\b|\bwho is\b|"
                     r"\bdefine\b|\btranslate\b|\bspell\b|你好|谢谢|是什么|是谁|翻译|早上好", re.I)
_REFUSAL = re.compile(r"\bI (?:can(?:no|')t|am unable|'m unable|am not able|won't)\b|\bas an AI\b|\bI'?m sorry\b|"
                      r"\bI apologi[sz]e\b|\bI don'?t know\b|\bnot sure\b|\bI'?m not certain\b|\bcannot (?:help|answer|"
                      r"provide)\b|\bunable to\b|\bno information\b|抱歉|对不起|我不知道|无法回答|不能回答|不确定|"
                      r"作为一个?(?:AI|人工智能)|无法提供|我不能", re.I)
_HEDGE = re.compile(r"\bmaybe\b|\bperhaps\b|\bpossibly\b|\bmight\b|\bI think\b|\bI believe\b|\bprobably\b|"
                    r"\bit depends\b|\bnot (?:entirely|completely) sure\b|可能|也许|大概|或许|我觉得|我认为|不一定", re.I)

QUERY_FEATURES = ["log_tokens", "zh", "turns", "code", "math", "reasoning", "longform", "simple", "questions",
                  "digits"]
ANSWER_FEATURES = QUERY_FEATURES + ["ans_log_tokens", "ans_empty", "truncated", "refusal", "hedging",
                                    "repetition", "lang_mismatch", "echo", "ans_ratio"]


def last_user_text(messages: Sequence[dict] | str) -> str:
    if isinstance(messages, str):
        return messages
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return content or ""
    return ""


def _all_text(messages: Sequence[dict] | str) -> str:
    if isinstance(messages, str):
        return messages
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(content or "")
    return "\n".join(parts)


def _zh_share(text: str) -> float:
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return cjk / (cjk + latin / 4) if cjk + latin else 0.0


def query_features(messages: Sequence[dict] | str) -> dict[str, float]:
    """Features of a request, all roughly in [0, 1] before standardising."""
    question = last_user_text(messages)
    text = _all_text(messages)
    turns = 1 if isinstance(messages, str) else sum(1 for m in messages if m.get("role") == "user")
    return {
        "log_tokens": math.log1p(estimate_tokens(text)) / 8,
        "zh": _zh_share(question),
        "turns": math.log1p(max(turns - 1, 0)),
        "code": min(len(_CODE.findall(text)), 3) / 3,
        "math": min(len(_MATH.findall(question)), 3) / 3,
        "reasoning": min(len(_REASON.findall(question)), 3) / 3,
        "longform": min(len(_LONGFORM.findall(question)), 2) / 2,
        "simple": min(len(_SIMPLE.findall(question)), 2) / 2,
        "questions": min(question.count("?") + question.count("？"), 3) / 3,
        "digits": min(sum(ch.isdigit() for ch in question), 20) / 20,
    }


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKENS.findall(text)]


def _repetition(tokens: list[str]) -> float:
    """Share of 3-grams that occur more than once: small models loop when they are lost."""
    grams = list(zip(tokens, tokens[1:], tokens[2:]))
    if len(grams) < 4:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def answer_features(messages: Sequence[dict] | str, answer: str, finish_reason: str = "stop") -> dict[str, float]:
    """:func:`query_features` plus features of the local model's answer."""
    features = query_features(messages)
    question = last_user_text(messages)
    q_tokens, a_tokens = _tokens(question), _tokens(answer)
    q_set = set(q_tokens)
    echo = sum(1 for t in a_tokens if t in q_set) / len(a_tokens) if a_tokens else 1.0
    features.update({
        "ans_log_tokens": math.log1p(len(a_tokens)) / 8,
        "ans_empty": 0.0 if a_tokens else 1.0,
        "truncated": 1.0 if finish_reason == "length" else 0.0,
        "refusal": min(len(_REFUSAL.findall(answer)), 2) / 2,
        "hedging": min(len(_HEDGE.findall(answer)), 3) / 3,
        "repetition": _repetition(a_tokens),
        "lang_mismatch": abs(_zh_share(question) - _zh_share(answer)) if answer.strip() else 1.0,
        "echo": echo,
        "ans_ratio": min(len(a_tokens) / (len(q_tokens) + 1), 20) / 20,
    })
    return features


def agreement(a: str, b: str) -> float:
    """Token F1 between two answers (CJK by character): 1 = same content, 0 = nothing shared."""
    return quality_score(a, [b])


def quality_score(answer: str, references: Iterable[str]) -> float:
    """How well ``answer`` covers a reference answer: the best token F1 over ``references``
    (English by word, Chinese by character), or 1.0 when a whole short reference appears in it."""
    a_tokens = _tokens(answer)
    best = 0.0
    for ref in references:
        r_tokens = _tokens(ref)
        if not r_tokens or not a_tokens:
            continue
        if len(r_tokens) <= 4 and _contains(a_tokens, r_tokens):
            return 1.0
        common = sum((Counter(a_tokens) & Counter(r_tokens)).values())
        if common:
            p, r = common / len(a_tokens), common / len(r_tokens)
            best = max(best, 2 * p * r / (p + r))
    return best


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


# ---------------------------------------------------------------- logistic model


@dataclass
class Logistic:
    """``P(y=1 | x) = sigmoid(coef · (x - mean) / std + intercept)`` over named features."""

    features: list[str]
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray

    def proba(self, feats: dict[str, float]) -> float:
        x = np.array([feats.get(name, 0.0) for name in self.features], dtype=np.float64)
        z = float(self.coef @ ((x - self.mean) / self.std) + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))

    def contributions(self, feats: dict[str, float]) -> dict[str, float]:
        """Each feature's push on the log-odds (for ``lingxi route explain``)."""
        x = np.array([feats.get(name, 0.0) for name in self.features], dtype=np.float64)
        parts = self.coef * ((x - self.mean) / self.std)
        return {name: round(float(v), 3) for name, v in zip(self.features, parts)}

    def to_json(self) -> dict[str, Any]:
        return {"features": self.features, "coef": self.coef.tolist(), "intercept": self.intercept,
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Logistic:
        n = len(data["features"])
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("coef", "mean", "std")]
        if any(a.shape != (n,) for a in arrays) or np.any(arrays[2] <= 0):
            raise ValueError("coef/mean/std must be lists with one positive-std entry per feature")
        return cls(list(data["features"]), arrays[0], float(data["intercept"]), arrays[1], arrays[2])


def fit_logistic(rows: list[dict[str, float]], labels: Sequence[int], features: list[str], *,
                 l2: float = 1.0, weights: Sequence[float] | None = None) -> Logistic:
    """Fit an L2-regularised logistic regression by Newton's method (IRLS).

    Raises:
        UsageError: fewer than 2 examples of either class.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.sum() < 2 or (1 - y).sum() < 2:
        raise UsageError(f"need at least 2 good and 2 bad examples to train, got {int(y.sum())} good and "
                         f"{int((1 - y).sum())} bad")
    x = np.array([[r.get(f, 0.0) for f in features] for r in rows], dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-6] = 1.0
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    beta = np.zeros(z.shape[1])
    penalty = np.eye(z.shape[1]) * l2
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (w * (p - y)) + penalty @ beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(beta)), grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Logistic(list(features), beta[:-1], float(beta[-1]), mean, std)


@dataclass
class Policy:
    """A query model and an answer model, plus where they came from."""

    query: Logistic
    answer: Logistic
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "query": self.query.to_json(), "answer": self.answer.to_json(), "meta": self.meta}


def _prior_model(features: list[str], weights: dict[str, float], intercept: float) -> Logistic:
    n = len(features)
    return Logistic(list(features), np.array([weights.get(f, 0.0) for f in features]), intercept,
                    np.zeros(n), np.ones(n))


#: Hand-set weights used until a policy is trained: long, code, maths, reasoning and long-form
#: requests are harder; an answer that is empty, cut off, refuses, hedges, loops, switches
#: language or echoes the question is a bad sign. Features are in [0, 1], so each weight is
#: the log-odds change from "absent" to "fully present".
PRIOR = Policy(
    query=_prior_model(QUERY_FEATURES, {
        "log_tokens": -4.0, "turns": -0.5, "code": -2.0, "math": -2.0, "reasoning": -2.0, "longform": -1.5,
        "simple": 1.5, "digits": -1.0, "zh": -0.5}, intercept=2.5),
    answer=_prior_model(ANSWER_FEATURES, {
        "log_tokens": -2.0, "code": -1.0, "math": -1.5, "reasoning": -1.0, "longform": -0.5, "simple": 0.5,
        "ans_empty": -4.0, "truncated": -1.5, "refusal": -3.0, "hedging": -1.5, "repetition": -4.0,
        "lang_mismatch": -3.0, "echo": -2.0, "ans_log_tokens": 1.0}, intercept=2.5),
    meta={"source": "prior"},
)


def save_policy(policy: Policy, path: Path) -> None:
    """Write the policy as JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".policy-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(policy.to_json(), fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_policy(path: Path) -> Policy:
    """Read a policy written by :func:`save_policy`.

    Raises:
        UsageError: the file is not a valid policy (named, with the reason).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Policy(Logistic.from_json(data["query"]), Logistic.from_json(data["answer"]), dict(data.get("meta", {})))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"router policy {path} is not a valid policy file: {exc}") from None
