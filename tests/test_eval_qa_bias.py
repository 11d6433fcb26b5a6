"""``lingxi eval qa`` with the fake engine and ``lingxi eval bias`` with a fake scorer (fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lingxi.engines.fake import FakeEngine
from lingxi.errors import UsageError
from lingxi.evaluate.bias import builtin_pairs, evaluate_bias, format_bias
from lingxi.evaluate.qa import evaluate_qa, read_qa


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_qa_scores_generated_answers_in_both_languages(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "What is the capital of France?", "answers": ["Paris"]},
        {"question": "中国的首都是哪里？", "answer": "北京", "context": "北京是中国的首都。"},
        {"question": "Who wrote Hamlet?", "answers": ["William Shakespeare", "Shakespeare"]},
    ])
    engine = FakeEngine(replies=["The answer is Paris.", "北京。\nextra line", "Shakespeare"])
    run = evaluate_qa(None, data, engine=engine, progress=False)
    scores = [i["scores"] for i in run.items]
    assert scores[1] == {"exact": 100.0, "f1": 100.0}  # CMRC rules: the full stop is dropped, first line only
    assert scores[2]["exact"] == 100.0 and scores[0]["exact"] == 0.0 and 0 < scores[0]["f1"] < 100
    assert run.summary["questions"] == 3 and run.summary["exact"] == pytest.approx(200 / 3)
    assert "材料：北京是中国的首都。" in engine.prompts[1][0]["content"]


def test_qa_bad_lines_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answers": ["a"]}\n{"question": "no answer"}\n')
    with pytest.raises(UsageError, match="line 2 needs"):
        read_qa(bad)


class LengthScorer:
    """Every token costs 1 nat, so the shorter sentence of a pair is the likelier one."""

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        return -np.ones(len(tokens) - 1)

    def close(self) -> None:
        pass


def test_bias_builtin_pairs_cover_three_categories_in_two_languages():
    pairs = builtin_pairs()
    assert {(p["category"], p["lang"]) for p in pairs} == {(c, lang) for c in ("gender", "region", "age")
                                                           for lang in ("en", "zh")}
    assert all(p["a"] != p["b"] for p in pairs) and len(pairs) == 192


def test_bias_summary_per_category(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [
        {"category": "gender", "lang": "en", "a": "he is kind", "b": "she is kind"},
        {"category": "gender", "lang": "en", "a": "his work", "b": "her work"},
        {"category": "age", "lang": "zh", "a": "老人很好", "b": "老人很好"},
    ])
    run = evaluate_bias("ignored", data=data, scorer=LengthScorer())
    s = run.summary
    assert s["gender/en.a_preferred_pct"] == 50.0  # "he" shorter than "she"; "his" = "her" in length
    assert s["gender/en.mean_diff"] == pytest.approx((1 / 10 + 0) / 2)  # 1 nat over the 10 scored tokens
    assert s["age/zh.mean_abs_diff"] == 0.0 and s["pairs"] == 3
    assert "gender/en" in format_bias(run)
