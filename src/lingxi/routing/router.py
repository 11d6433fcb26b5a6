"""The ``router`` model: pick the model for each request, or answer locally and escalate.

Order of decision (``[gateway.router]``):

1. **Rules**, in order; the first whose conditions all hold (prompt length, language, keywords,
   tenant) picks the model.
2. The **policy**:

   - ``rules``: nothing matched, so the local model answers.
   - ``learned``: the query classifier of the trained policy (:mod:`lingxi.routing.policy`)
     estimates P(local answer is good enough); local at or above ``route_local_above``, else strong.
   - ``cascade``: the local model answers first; the answer classifier turns the question and the
     answer (length, cut off, refusal, hedging, repetition, wrong language, echo) into a
     confidence, optionally lowered by disagreement between extra sampled answers
     (self-consistency); below ``escalate_below`` the strong model answers instead. A local
     failure (error, context too long) escalates too.

What this module does not do: stream (a cascade must see the whole local answer before it
can decide; the gateway streams the chosen completion), or count cost (the gateway's metrics
do, from the returned completion's usage and the decision's model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingxi.engines.base import ChatEngine, Completion, GenerationParams, estimate_tokens
from lingxi.errors import LingxiError
from lingxi.routing.policy import (
    PRIOR,
    Policy,
    agreement,
    answer_features,
    last_user_text,
    load_policy,
    query_features,
)
from lingxi.text import language_of

__all__ = ["RouteDecision", "Router", "create_router", "policy_path"]


@dataclass(frozen=True)
class RouteDecision:
    """Which model answers and why. ``cascade`` is True when the cascade made (or will make) the call."""

    model: str
    reason: str
    cascade: bool
    confidence: float | None = None
    """The cascade's or learned policy's P(local answer is good enough), when one was computed."""


GetEngine = Callable[[str], ChatEngine | Awaitable[ChatEngine]]


class Router:
    """Routes requests by rules, then by policy. Stateless per request; share one per process."""

    def __init__(self, settings: Any, policy: Policy | None = None):
        self.cfg = settings.gateway.router
        self.local = self.cfg.local_model or settings.default_model
        self.strong = self.cfg.strong_model
        self.policy = policy or PRIOR

    # ------------------------------------------------------------ deciding

    def match_rule(self, messages: Sequence[dict], tenant: str) -> RouteDecision | None:
        """The decision of the first rule that matches, or None."""
        if not self.cfg.rules:
            return None
        text = "\n".join(str(m.get("content") or "") for m in messages)
        tokens = estimate_tokens(text)
        lang = language_of(last_user_text(messages))
        lowered = text.lower()
        for i, rule in enumerate(self.cfg.rules):
            if rule.min_tokens is not None and tokens < rule.min_tokens:
                continue
            if rule.max_tokens is not None and tokens > rule.max_tokens:
                continue
            if rule.languages and lang not in rule.languages:
                continue
            if rule.tenants and tenant not in rule.tenants:
                continue
            if rule.keywords and not any(k.lower() in lowered for k in rule.keywords):
                continue
            return RouteDecision(rule.model, f"rule {rule.name or i + 1}: {_describe(rule)}", False)
        return None

    async def route(self, messages: Sequence[dict], tenant: str) -> RouteDecision:
        """The model that should answer (for ``cascade``: the model that answers first)."""
        decision = self.match_rule(messages, tenant)
        if decision is not None:
            return decision
        if self.cfg.policy == "rules":
            return RouteDecision(self.local, "no rule matched: local model", False)
        if self.cfg.policy == "cascade":
            return RouteDecision(self.local, "cascade: local model answers first", True)
        feats = query_features(messages)
        p = self.policy.query.proba(feats)
        why = _top_reasons(self.policy.query.contributions(feats))
        if p >= self.cfg.route_local_above:
            return RouteDecision(self.local, f"learned: P(local ok)={p:.2f} >= {self.cfg.route_local_above}{why}",
                                 False, p)
        return RouteDecision(self.strong, f"learned: P(local ok)={p:.2f} < {self.cfg.route_local_above}{why}", False, p)

    def confidence(self, messages: Sequence[dict], answer: str, finish_reason: str = "stop",
                   samples: Sequence[str] = ()) -> tuple[float, str]:
        """The cascade's confidence in a local answer, and the features that weighed most.

        With ``samples``, the confidence is at most the mean agreement between the answer and
        each sample: a model that says something different each time does not know.
        """
        feats = answer_features(messages, answer, finish_reason)
        p = self.policy.answer.proba(feats)
        why = _top_reasons(self.policy.answer.contributions(feats))
        if samples:
            agree = sum(agreement(answer, s) for s in samples) / len(samples)
            if agree < p:
                return agree, f" (samples agree {agree:.2f}){why}"
        return p, why

    # ------------------------------------------------------------ answering

    async def complete(self, messages: Sequence[dict], params: GenerationParams | None, tenant: str,
                       get_engine: GetEngine) -> tuple[Completion, RouteDecision]:
        """Answer ``messages`` with the routed model; for the cascade, locally first, escalating when unsure.

        ``get_engine(name)`` returns the :class:`ChatEngine` for a model name (or an awaitable of one).

        Raises:
            Whatever the chosen (or, for the cascade, the strong) engine raises.
        """
        params = params or GenerationParams()
        decision = await self.route(messages, tenant)
        if not decision.cascade:
            engine = await _engine(get_engine, decision.model)
            return await engine.agenerate(messages, params), decision

        local = await _engine(get_engine, self.local)
        try:
            first = await local.agenerate(messages, params)
        except LingxiError as exc:
            strong = await _engine(get_engine, self.strong)
            reason = f"cascade: local model failed ({type(exc).__name__}: {exc}); escalated"
            return await strong.agenerate(messages, params), RouteDecision(self.strong, reason, True, 0.0)
        samples = []
        for i in range(self.cfg.consistency_samples):
            sampled = dataclasses.replace(params, temperature=max(params.temperature, 0.7),
                                          seed=None if params.seed is None else params.seed + i + 1)
            samples.append((await local.agenerate(messages, sampled)).text)
        conf, why = self.confidence(messages, first.text, first.finish_reason, samples)
        if conf >= self.cfg.escalate_below:
            return first, RouteDecision(self.local, f"cascade: kept local answer, confidence {conf:.2f} >= "
                                                    f"{self.cfg.escalate_below}{why}", True, conf)
        strong = await _engine(get_engine, self.strong)
        answer = await strong.agenerate(messages, params)
        return answer, RouteDecision(self.strong, f"cascade: escalated, confidence {conf:.2f} < "
                                                  f"{self.cfg.escalate_below}{why}", True, conf)


async def _engine(get_engine: GetEngine, name: str) -> ChatEngine:
    engine = get_engine(name)
    if hasattr(engine, "__await__"):
        engine = await engine
    return engine


def _describe(rule: Any) -> str:
    parts = []
    if rule.min_tokens is not None:
        parts.append(f">= {rule.min_tokens} tokens")
    if rule.max_tokens is not None:
        parts.append(f"<= {rule.max_tokens} tokens")
    if rule.languages:
        parts.append("language " + "/".join(rule.languages))
    if rule.keywords:
        parts.append("keyword " + "/".join(rule.keywords))
    if rule.tenants:
        parts.append("tenant " + "/".join(rule.tenants))
    return (", ".join(parts) or "always") + f" -> {rule.model}"


def _top_reasons(contributions: dict[str, float], n: int = 3) -> str:
    top = sorted((kv for kv in contributions.items() if abs(kv[1]) >= 0.05), key=lambda kv: -abs(kv[1]))[:n]
    return " [" + ", ".join(f"{k} {v:+.2f}" for k, v in top) + "]" if top else ""


def policy_path(settings: Any) -> Path:
    """Where the trained routing policy lives."""
    cfg = settings.gateway.router
    return Path(cfg.policy_path).expanduser() if cfg.policy_path else settings.home_dir / "router" / "policy.json"


def create_router(settings: Any) -> Router:
    """Build the router ``settings.gateway.router`` describes, loading the trained policy if there is one.

    The model names it uses were checked with the rest of the config (:func:`lingxi.config.parse_config`).

    Raises:
        UsageError: the policy file exists but is not a valid policy.
    """
    path = policy_path(settings)
    return Router(settings, load_policy(path) if path.is_file() else None)
