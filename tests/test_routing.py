"""The router: rules, the learned policy, the cascade with a real confidence signal, training and evaluation."""

from __future__ import annotations

import asyncio
import json

import pytest

from lingxi.config import parse_config
from lingxi.engines.base import GenerationParams
from lingxi.engines.fake import FakeEngine
from lingxi.errors import ConfigError, EngineError, UsageError
from lingxi.routing import (
    Example,
    collect,
    PRIOR,
    RouteDecision,
    Router,
    answer_features,
    create_router,
    evaluate,
    examples,
    load_policy,
    save_policy,
    train,
)
from lingxi.routing.policy import fit_logistic, quality_score
from lingxi.text import language_of

MODELS = {
    "local": {"engine": "fake"},
    "strong": {"engine": "fake", "cost_per_mtok_in": 2.5, "cost_per_mtok_out": 10.0},
}


def settings(tmp_path, **router):
    return parse_config({"home": str(tmp_path), "models": MODELS, "default_model": "local",
                         "gateway": {"router": {"local_model": "local", "strong_model": "strong", **router}}})


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def engines():
    local, strong = FakeEngine("local"), FakeEngine("strong")
    return local, strong, {"local": local, "strong": strong}.__getitem__


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- rules


RULES = [
    {"name": "vip", "model": "strong", "tenants": ["vip"]},
    {"model": "strong", "keywords": ["contract", "合同"]},
    {"model": "strong", "min_tokens": 200},
    {"model": "local", "languages": ["zh"], "max_tokens": 50},
]


@pytest.mark.parametrize("text, tenant, model, reason", [
    ("hello", "vip", "strong", "rule vip: tenant vip -> strong"),
    ("Review this CONTRACT clause", "acme", "strong", "rule 2: keyword contract/合同 -> strong"),
    ("请审阅这份合同", "acme", "strong", "rule 2: keyword contract/合同 -> strong"),
    ("word " * 300, "acme", "strong", "rule 3: >= 200 tokens -> strong"),
    ("你好，今天天气怎么样？", "acme", "local", "rule 4: <= 50 tokens, language zh -> local"),
    ("hello there", "acme", "local", "no rule matched: local model"),
])
def test_rules_pick_by_tenant_keyword_length_and_language_first_match_wins(tmp_path, text, tenant, model, reason):
    router = create_router(settings(tmp_path, rules=RULES))
    decision = run(router.route(user(text), tenant))
    assert decision == RouteDecision(model, reason, False)


def test_rules_policy_answers_with_the_routed_engine(tmp_path):
    router = create_router(settings(tmp_path, rules=RULES))
    local, strong, get = engines()
    strong.enqueue("Clause 4 limits liability.")
    completion, decision = run(router.complete(user("Review this contract"), None, "acme", get))
    assert decision.model == "strong" and completion.text == "Clause 4 limits liability."
    assert local.prompts == [] and len(strong.prompts) == 1


def test_language_of():
    assert language_of("今天天气怎么样") == "zh"
    assert language_of("用Python写一个排序函数") == "zh"
    assert language_of("What is the weather?") == "en"
    assert language_of("Как дела?") == "other"


# ---------------------------------------------------------------- cascade


@pytest.mark.parametrize("reply", [
    "The capital of France is Paris.",
    "巴黎是法国的首都。",
])
def test_cascade_keeps_a_confident_local_answer(tmp_path, reply):
    router = create_router(settings(tmp_path, policy="cascade"))
    local, strong, get = engines()
    local.enqueue(reply)
    question = "What is the capital of France?" if reply.startswith("The") else "法国的首都是哪里？"
    completion, decision = run(router.complete(user(question), None, "acme", get))
    assert decision.model == "local" and decision.cascade and decision.confidence >= 0.5
    assert completion.text == reply and strong.prompts == []


@pytest.mark.parametrize("question, reply, cue", [
    ("What is the capital of France?", "I'm sorry, I don't know.", "refusal"),
    ("法国的首都是哪里？", "I am not sure about that.", "lang_mismatch"),
    ("Summarise the causes of World War I.", "the war the war the war the war the war the war the war the war",
     "repetition"),
    ("What is the capital of France?", "", "ans_empty"),
])
def test_cascade_escalates_refusals_wrong_language_loops_and_empty_answers(tmp_path, question, reply, cue):
    router = create_router(settings(tmp_path, policy="cascade"))
    local, strong, get = engines()
    local.enqueue(reply)
    strong.enqueue("A good answer.")
    completion, decision = run(router.complete(user(question), None, "acme", get))
    assert decision.model == "strong" and decision.cascade and decision.confidence < 0.5
    assert completion.text == "A good answer." and cue in decision.reason
    assert len(local.prompts) == 1 and len(strong.prompts) == 1


def test_cascade_escalates_a_cut_off_local_answer(tmp_path):
    router = create_router(settings(tmp_path, policy="cascade"))
    local, strong, get = engines()
    local.enqueue("Step one: take the derivative of the numerator and then " * 5)
    strong.enqueue("The limit is 2.")
    params = GenerationParams(max_tokens=8)
    completion, decision = run(router.complete(user("Compute the limit of (x^2-1)/(x-1) as x -> 1, step by step"),
                                               params, "acme", get))
    assert decision.model == "strong" and "truncated" in decision.reason
    assert completion.text == "The limit is 2."


def test_cascade_escalates_when_the_local_engine_fails(tmp_path):
    router = create_router(settings(tmp_path, policy="cascade"))
    local, strong, get = engines()
    local.enqueue(EngineError("llama.cpp crashed"))
    strong.enqueue("Fine.")
    completion, decision = run(router.complete(user("hello"), None, "acme", get))
    assert decision.model == "strong" and "local model failed" in decision.reason and completion.text == "Fine."


def test_self_consistency_escalates_when_sampled_answers_disagree(tmp_path):
    router = create_router(settings(tmp_path, policy="cascade", consistency_samples=2))
    local, strong, get = engines()
    local.enqueue("The meeting is on Tuesday at noon.", "Nobody knows when the meeting happens.",
                  "Cats like warm places.")
    strong.enqueue("Tuesday, 12:00.")
    _, decision = run(router.complete(user("When is the team meeting?"), None, "acme", get))
    assert decision.model == "strong" and "samples agree" in decision.reason and len(local.prompts) == 3

    local.enqueue("The meeting is on Tuesday at noon.", "The meeting is on Tuesday at noon.",
                  "The meeting is Tuesday at noon.")
    _, decision = run(router.complete(user("When is the team meeting?"), None, "acme", get))
    assert decision.model == "local"


def test_get_engine_may_be_async(tmp_path):
    router = create_router(settings(tmp_path, policy="cascade"))
    local, strong, _ = engines()
    local.enqueue("Paris is the capital of France.")

    async def get(name):
        return {"local": local, "strong": strong}[name]

    _, decision = run(router.complete(user("What is the capital of France?"), None, "acme", get))
    assert decision.model == "local"


# ---------------------------------------------------------------- learned policy, training, evaluation


def _traffic(tmp_path):
    """Logged traffic: the local model does well on small talk and facts, badly on maths and code."""
    rows = []
    easy = ["hello", "hi there", "thanks a lot", "what is the capital of Italy", "who is Ada Lovelace",
            "你好", "谢谢你", "翻译：苹果", "what is an API", "define photosynthesis", "good morning", "法国的首都是哪里"]
    hard = ["Solve 3x + 7 = 22 and explain each step", "Write a Python function that merges two sorted lists",
            "Prove that the square root of 2 is irrational", "Compute 17 * 23 - 45 / 5",
            "分析这段代码的时间复杂度：def f(n): return sum(range(n))", "计算 123 * 456 的结果并解释步骤",
            "Explain why quicksort is O(n log n) on average and compare it with mergesort",
            "Design a database schema for a library and explain the trade-offs",
            "How many ways can 8 queens be placed on a chessboard? Explain.", "证明三角形内角和为180度",
            "Write a SQL query that finds the second highest salary", "写一个Python函数计算斐波那契数列"]
    for q in easy:
        rows.append({"messages": user(q), "model": "local", "answer": "A short, correct answer.", "feedback": "up"})
    for q in hard:
        rows.append({"messages": user(q), "model": "local", "answer": "I am not sure.", "feedback": "down"})
    rows.append({"messages": user("ignored: answered by strong"), "model": "strong", "answer": "x", "feedback": "up"})
    path = tmp_path / "traffic.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_train_then_learned_policy_routes_hard_queries_to_the_strong_model(tmp_path):
    s = settings(tmp_path, policy="learned")
    exs = examples(_traffic(tmp_path), "local")
    assert len(exs) == 24  # the strong model's answer is not evidence about the local model
    policy, report = train(exs, source="traffic.jsonl")
    assert report["examples"] == 24 and report["good_share"] == 0.5
    save_policy(policy, tmp_path / "router" / "policy.json")
    router = create_router(s)
    assert router.policy.meta["source"] == "traffic.jsonl"
    hard = run(router.route(user("Write a Python function that reverses a linked list and explain why it works"), "a"))
    easy = run(router.route(user("hello, thanks"), "a"))
    assert hard.model == "strong" and hard.confidence < 0.5 and "learned" in hard.reason
    assert easy.model == "local" and easy.confidence >= 0.5


def test_fit_logistic_separates_and_refuses_one_class_data():
    rows = [{"a": float(i), "b": 1.0} for i in range(20)]
    model = fit_logistic(rows, [int(i >= 10) for i in range(20)], ["a", "b"])
    assert model.proba({"a": 18, "b": 1}) > 0.9 and model.proba({"a": 1, "b": 1}) < 0.1
    with pytest.raises(UsageError, match="at least 2 good and 2 bad"):
        fit_logistic(rows, [1] * 20, ["a"])


def test_policy_file_round_trips_and_a_broken_one_is_a_clear_error(tmp_path):
    path = tmp_path / "p" / "policy.json"
    save_policy(PRIOR, path)
    loaded = load_policy(path)
    feats = answer_features(user("hi"), "Hello!")
    assert loaded.answer.proba(feats) == pytest.approx(PRIOR.answer.proba(feats))
    assert [p.name for p in path.parent.iterdir()] == ["policy.json"]  # no temp file left behind
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match="not a valid policy file"):
        load_policy(path)


def _eval_set(tmp_path):
    rows = [
        # local good on the easy half, bad (and visibly so) on the hard half
        {"id": "1", "messages": user("What is the capital of France?"),
         "local": {"answer": "Paris.", "quality": 1.0}, "strong": {"answer": "Paris.", "quality": 1.0}},
        {"id": "2", "messages": user("hello"),
         "local": {"answer": "Hello! How can I help?", "quality": 1.0}, "strong": {"answer": "Hi!", "quality": 1.0}},
        {"id": "3", "messages": user("Prove that there are infinitely many primes, step by step."),
         "local": {"answer": "I'm sorry, I don't know.", "quality": 0.0},
         "strong": {"answer": "Assume finitely many primes p1..pn; consider p1*...*pn + 1 ...", "quality": 1.0}},
        {"id": "4", "messages": user("法国的首都是哪里？"),
         "local": {"answer": "I am not sure.", "quality": 0.0}, "strong": {"answer": "巴黎。", "quality": 1.0}},
    ]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_evaluate_reports_cost_saved_and_quality_kept_from_configured_prices(tmp_path):
    s = settings(tmp_path, policy="cascade")
    router = create_router(s)
    report = evaluate(examples(_eval_set(tmp_path), "local"), s, router)
    p = report["policies"]
    assert report["examples"] == 4 and report["local_good_share"] == 0.5
    assert p["always_strong"]["cost_saved"] == 0.0 and p["always_strong"]["quality_kept"] == 1.0
    assert p["always_local"]["cost_saved"] == 1.0 and p["always_local"]["quality_kept"] == 0.5
    # the cascade keeps the two good local answers and escalates the refusal and the wrong-language answer
    assert p["cascade"]["quality_kept"] == 1.0 and p["cascade"]["strong_share"] == 0.5
    assert 0.0 < p["cascade"]["cost_saved"] < 1.0
    assert p["oracle"]["quality_kept"] == 1.0
    assert report["signal_auc"]["answer_model"] == 1.0


def test_evaluate_needs_a_priced_strong_model(tmp_path):
    s = parse_config({"home": str(tmp_path), "models": {"local": {"engine": "fake"}, "strong": {"engine": "fake"}},
                      "gateway": {"router": {"local_model": "local", "strong_model": "strong"}}})
    with pytest.raises(UsageError, match="model 'strong' has no cost_per_mtok_in"):
        evaluate(examples(_eval_set(tmp_path), "local"), s, create_router(s))


@pytest.mark.parametrize("router_cfg, key", [
    ({"policy": "cascade", "strong_model": None}, "gateway.router.strong_model: required for policy 'cascade'"),
    ({"strong_model": "gpt-9"}, "gateway.router.strong_model: unknown model 'gpt-9'"),
    ({"rules": [{"model": "nope"}]}, "gateway.router.rules.0.model: unknown model 'nope'"),
])
def test_config_errors_name_the_key(tmp_path, router_cfg, key):
    # checked when the config loads, with every other problem, not when the gateway starts
    with pytest.raises(ConfigError, match=key.replace("(", r"\(")):
        settings(tmp_path, **router_cfg)


def test_bad_training_records_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}], "feedback": "up"}\n{oops\n', encoding="utf-8")
    with pytest.raises(UsageError, match="bad.jsonl: line 2 is not JSON"):
        examples(path, "local")
    path.write_text('{"messages": [{"role": "user", "content": "hi"}], "feedback": "meh"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="bad.jsonl:1: feedback must be"):
        examples(path, "local")


@pytest.mark.parametrize("answer, refs, score", [
    ("The capital is Paris.", ["Paris"], 1.0),
    ("巴黎是法国的首都", ["巴黎"], 1.0),
    ("London", ["Paris"], 0.0),
    ("the cat sat", ["the cat sat on the mat"], pytest.approx(2 * 1 * 0.5 / 1.5)),
])
def test_quality_score(answer, refs, score):
    assert quality_score(answer, refs) == score


def test_router_without_rules_or_strong_model_routes_locally(tmp_path):
    s = parse_config({"home": str(tmp_path), "models": {"local": {"engine": "fake"}}, "default_model": "local"})
    router = create_router(s)
    assert isinstance(router, Router)
    assert run(router.route(user("anything"), "t")) == RouteDecision("local", "no rule matched: local model", False)


def test_collect_resumes_after_a_kill_that_cut_a_record_short(tmp_path):
    questions = [Example(id=f"q{i}", messages=user(f"question {i}"), local=None, references=["yes"])
                 for i in range(3)]
    out = tmp_path / "answered.jsonl"
    partial = tmp_path / "answered.jsonl.partial"
    whole = json.dumps({"id": "q0", "messages": user("question 0"), "local": {"answer": "yes", "quality": 1.0},
                        "strong": {"answer": "yes", "quality": 1.0}})
    partial.write_text(whole + "\n" + whole[:25], encoding="utf-8")  # killed while writing q1
    local = FakeEngine("local", replies=["yes", "no"])
    n = collect(questions, local, None, out, GenerationParams(max_tokens=8), progress=False)
    assert n == 2 and not partial.exists()
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["q0", "q1", "q2"]
    assert [r["local"]["quality"] for r in records] == [1.0, 1.0, 0.0]
