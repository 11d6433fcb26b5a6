"""Routing: which model answers a request — rules, a learned policy, or a local-first cascade.

- :mod:`lingxi.routing.router`: the :class:`Router` the gateway's ``router`` model calls
  (:func:`create_router` builds it from ``[gateway.router]``).
- :mod:`lingxi.routing.policy`: query and answer features and the small logistic models that
  turn them into P(the local answer is good enough); :data:`PRIOR` when nothing is trained.
- :mod:`lingxi.routing.evaluate`: reading traffic logs and evaluation records, training a
  policy, comparing policies on quality and cost, collecting both models' answers.

This package does not serve HTTP, stream or count usage: the gateway does, around
:meth:`Router.complete`.
"""

from lingxi.routing.evaluate import Example, collect, evaluate, examples, examples_from, model_cost, train
from lingxi.routing.policy import (
    PRIOR,
    Policy,
    answer_features,
    load_policy,
    query_features,
    save_policy,
)
from lingxi.routing.router import RouteDecision, Router, create_router, policy_path

__all__ = [
    "Router", "RouteDecision", "create_router", "policy_path",
    "Policy", "PRIOR", "load_policy", "save_policy", "query_features", "answer_features",
    "Example", "examples", "examples_from", "train", "evaluate", "collect", "model_cost",
]
