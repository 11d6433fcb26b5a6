"""``lingxi route``: train, evaluate and explain the gateway's ``router`` model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from lingxi.cli import emit_json, settings
from lingxi.errors import UsageError


@click.group()
def route() -> None:
    """Train, evaluate and explain the router (local vs strong model, cascade)."""


@route.command()
@click.argument("data", type=click.Path(dir_okay=False), required=False)
@click.option("--feedback", "use_feedback", is_flag=True,
              help="Learn from the gateway's stored thumbs up/down (<home>/gateway/feedback.db) instead of DATA.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the policy (default: gateway.router.policy_path, else <home>/router/policy.json).")
@click.option("--margin", type=float, default=0.2, show_default=True,
              help="Evaluation records: the local answer is good enough when its quality >= strong's - margin.")
@click.option("--l2", type=float, default=1.0, show_default=True, help="L2 regularisation strength.")
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
def train(data: str | None, use_feedback: bool, out: str | None, margin: float, l2: float, as_json: bool) -> None:
    """Fit the routing policy from logged traffic/feedback or evaluation records (JSONL).

    Each line is either {"messages", "model", "answer", "feedback": up/down | "quality": 0..1}
    (only the local model's answers count) or {"messages", "local": {"answer", "quality"},
    "strong": {"answer", "quality"}}. The policy is written atomically.
    """
    from lingxi.routing import create_router, examples, policy_path, save_policy
    from lingxi.routing import train as fit

    s = settings()
    router = create_router(s)
    if use_feedback == bool(data):
        raise click.UsageError("give DATA (a JSONL file) or --feedback, not both or neither")
    if use_feedback:
        from lingxi.stores.feedback import SQLiteFeedbackStore as FeedbackStore
        from lingxi.routing import examples_from

        path = s.home_dir / "gateway" / "feedback.db"
        if not path.is_file():
            raise UsageError(f"no feedback recorded yet (looked for {path})")
        store = FeedbackStore(path)
        try:
            exs = examples_from(((f"feedback row {r['id']}", r) for r in store.rows()), router.local, margin)
        finally:
            store.close()
        source = "feedback.db"
    else:
        exs = examples(data, router.local, margin=margin)
        source = Path(data).name
    policy, report = fit(exs, l2=l2, source=source)
    target = Path(out) if out else policy_path(s)
    save_policy(policy, target)
    report["saved_to"] = str(target)
    if as_json:
        emit_json(report)
    else:
        q = report["query_model"]["cv_accuracy"]
        a = report["answer_model"].get("cv_accuracy")
        click.echo(f"trained on {report['examples']} examples ({report['good_share']:.0%} good locally); "
                   f"cv accuracy: query {q if q is not None else 'n/a'}, answer {a if a is not None else 'n/a'}")
        click.echo(f"saved {target}")


@route.command("eval")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="A policy file to evaluate (default: the configured one, else the built-in prior).")
@click.option("--margin", type=float, default=0.2, show_default=True, help="As for train (labels only).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def eval_cmd(data: str, policy_file: str | None, margin: float, as_json: bool) -> None:
    """Cost saved vs always-strong and quality kept, per policy, on evaluation records (JSONL)."""
    from lingxi.routing import Router, create_router, evaluate, examples, load_policy

    s = settings()
    router = create_router(s)
    if policy_file:
        router = Router(s, load_policy(Path(policy_file)))
    report = evaluate(examples(data, router.local, margin=margin), s, router)
    if as_json:
        emit_json(report)
        return
    click.echo(f"{report['examples']} examples, local {report['local_model']}, strong {report['strong_model']}, "
               f"policy {report['policy_source']}")
    click.echo(f"{'policy':<14}{'quality':>9}{'kept':>8}{'cost $':>12}{'saved':>8}{'strong':>8}")
    for name, p in report["policies"].items():
        click.echo(f"{name:<14}{p['quality']:>9.3f}{p['quality_kept']:>8.1%}{p['cost_usd']:>12.6f}"
                   f"{p['cost_saved']:>8.1%}{p['strong_share']:>8.1%}")


@route.command("collect")
@click.argument("questions", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Evaluation records to write.")
@click.option("--max-tokens", type=int, default=128, show_default=True)
@click.option("--no-strong", is_flag=True,
              help="Do not call the strong model: take the reference as its answer (quality 1.0, assumed).")
def collect_cmd(questions: str, out: str, max_tokens: int, no_strong: bool) -> None:
    """Answer questions ({"id", "messages" or "question", "reference"}) with the local and strong
    models and score both against the references, writing evaluation records (resumable)."""
    from lingxi.engines import GenerationParams, load_engine
    from lingxi.routing import collect, create_router, examples

    s = settings()
    router = create_router(s)
    if not no_strong and not router.strong:
        raise click.UsageError("gateway.router.strong_model is not set (or pass --no-strong)")
    exs = examples(questions, router.local)
    local = load_engine(router.local, s)
    strong = None if no_strong else load_engine(router.strong, s)
    n = collect(exs, local, strong, Path(out), GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0))
    click.echo(f"answered {n} questions; wrote {out}")


@route.command()
@click.argument("prompt")
@click.option("--tenant", default="default", show_default=True)
@click.option("--answer", default=None, help="A local answer to score as the cascade would.")
@click.option("--json", "as_json", is_flag=True)
def explain(prompt: str, tenant: str, answer: str | None, as_json: bool) -> None:
    """Show which model PROMPT would go to and why (and, with --answer, the cascade's confidence)."""
    from lingxi.routing import create_router, query_features

    router = create_router(settings())
    messages = [{"role": "user", "content": prompt}]
    decision = asyncio.run(router.route(messages, tenant))
    feats = query_features(messages)
    report = {"model": decision.model, "reason": decision.reason, "cascade": decision.cascade,
              "policy": router.cfg.policy, "policy_source": router.policy.meta.get("source", "trained"),
              "p_local_ok_from_query": round(router.policy.query.proba(feats), 4),
              "features": {k: round(v, 3) for k, v in feats.items()}}
    if answer is not None:
        conf, why = router.confidence(messages, answer)
        report["answer_confidence"] = round(conf, 4)
        report["escalate"] = conf < router.cfg.escalate_below
        report["answer_reasons"] = why.strip()
    if as_json:
        emit_json(report)
        return
    click.echo(f"-> {decision.model}  ({decision.reason})")
    click.echo(f"P(local ok | query) = {report['p_local_ok_from_query']:.2f}")
    if answer is not None:
        verdict = "escalate" if report["escalate"] else "keep local answer"
        click.echo(f"cascade confidence = {report['answer_confidence']:.2f} -> {verdict} {report['answer_reasons']}")
