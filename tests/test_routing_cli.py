"""``lingxi route train | eval | explain | collect`` as a user runs them (in this process, for speed)."""

from __future__ import annotations

import json

import pytest
from conftest import invoke_lingxi

CONFIG = """
default_model = "local"
[models.local]
engine = "fake"
replies = ["Paris.", "I'm sorry, I don't know.", "巴黎。", "the the the the the the the the the the"]
[models.strong]
engine = "fake"
cost_per_mtok_in = 2.5
cost_per_mtok_out = 10.0
replies = ["Paris.", "Because of the Euclid argument.", "巴黎。", "An essay."]
[gateway.router]
policy = "cascade"
local_model = "local"
strong_model = "strong"
policy_path = "{policy}"
[[gateway.router.rules]]
name = "legal"
model = "strong"
keywords = ["contract"]
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "lingxi.toml"
    path.write_text(CONFIG.replace("{policy}", str(tmp_path / "policy.json")), encoding="utf-8")
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "reference": "Paris"},
    {"id": "q2", "question": "Why are there infinitely many primes?", "reference": "Euclid"},
    {"id": "q3", "question": "法国的首都是哪里？", "reference": "巴黎"},
    {"id": "q4", "question": "Write an essay about autumn.", "reference": "essay"},
]


def test_collect_train_eval_explain_end_to_end(tmp_path, config):
    questions = write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    answered = tmp_path / "answered.jsonl"
    r = invoke_lingxi("route", "collect", str(questions), "--out", str(answered), config=config)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in answered.read_text(encoding="utf-8").splitlines()]
    assert [rec["local"]["quality"] for rec in records] == [1.0, 0.0, 1.0, 0.0]
    assert [rec["strong"]["quality"] for rec in records] == [1.0, 1.0, 1.0, 1.0]
    assert not (tmp_path / "answered.jsonl.partial").exists()

    r = invoke_lingxi("route", "train", str(answered), "--json", config=config)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["examples"] == 4 and report["good_share"] == 0.5
    assert (tmp_path / "policy.json").is_file()

    r = invoke_lingxi("route", "eval", str(answered), "--json", config=config)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["policy_source"] == "answered.jsonl"
    assert report["policies"]["always_strong"]["cost_saved"] == 0.0
    assert set(report["policies"]) >= {"always_local", "always_strong", "learned", "cascade", "oracle", "rules"}
    r = invoke_lingxi("route", "eval", str(answered), config=config)
    assert r.returncode == 0 and "cascade" in r.stdout and "saved" in r.stdout

    r = invoke_lingxi("route", "explain", "Please review this contract", "--json", config=config)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "strong"
    r = invoke_lingxi("route", "explain", "hello", "--answer", "I'm sorry, I cannot help.", config=config)
    assert r.returncode == 0 and "escalate" in r.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path, config):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "hi", "feedback": "up"}\nnot json\n', encoding="utf-8")
    r = invoke_lingxi("route", "train", str(bad), config=config)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "bad.jsonl: line 2" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = invoke_lingxi("route", "eval", str(tmp_path / "missing.jsonl"), config=config)
    assert r.returncode == 2 and "file not found" in r.stderr
    assert not (tmp_path / "policy.json").exists()


def test_train_from_the_gateways_feedback_store(tmp_path, config):
    from lingxi.stores.feedback import SQLiteFeedbackStore as FeedbackStore

    home = tmp_path / "home"
    env = {"LINGXI_HOME": str(home)}
    r = invoke_lingxi("route", "train", "--feedback", config=config, env=env)
    assert r.returncode == 2 and "no feedback recorded yet" in r.stderr
    store = FeedbackStore(home / "gateway" / "feedback.db")
    easy = ["hello", "thanks", "what is the capital of Italy", "你好", "who is Ada Lovelace", "翻译：苹果"]
    hard = ["Prove that sqrt(2) is irrational", "Write a Python function to merge sorted lists",
            "计算 123 * 456 并解释步骤", "Explain why quicksort is O(n log n) on average", "证明三角形内角和为180度",
            "Design a database schema and explain the trade-offs"]
    for i, q in enumerate(easy + hard):
        store.add(response_id=f"r{i}", model="local", rating=1 if q in easy else -1,
                  messages=[{"role": "user", "content": q}], answer="An answer.")
    store.add(response_id="s", model="strong", rating=1, messages=[{"role": "user", "content": "x"}], answer="y")
    store.close()
    r = invoke_lingxi("route", "train", "--feedback", "--json", config=config, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["examples"] == 12 and report["good_share"] == 0.5
    r = invoke_lingxi("route", "train", str(tmp_path / "x.jsonl"), "--feedback", config=config, env=env)
    assert r.returncode == 2
