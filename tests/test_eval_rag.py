"""``lingxi eval rag`` on a small real knowledge base (hash embedder, extract mode: no model)."""

from __future__ import annotations

import json

import pytest

from lingxi.evaluate.rag import evaluate_rag, faithfulness
from lingxi.knowledge import create_kb

from kb_fixtures.helpers import kb_settings

DOCS = {
    "parking.md": "# Parking\n\nVisitors park in lot B behind the main building. Parking is free after 6 pm.\n",
    "canteen.md": "# 食堂\n\n员工食堂在三楼，每天中午十一点半开门。晚餐供应到七点。\n",
}


@pytest.mark.slow  # jieba and a real SQLite knowledge base: a few seconds
def test_rag_scores_retrieval_answers_citations_and_dont_know(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = kb_settings(tmp_path / "home")
    kb = create_kb("docs", settings)
    kb.ingest([folder], progress=False)
    data = tmp_path / "rag.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"question": "Where do visitors park?", "answers": ["lot B"], "doc": "parking.md"},
        {"question": "员工食堂在几楼？", "answers": ["三楼"], "doc": "canteen.md"},
        {"question": "What is the CEO's favourite colour?", "answers": []},
    ]) + "\n", encoding="utf-8")
    run = evaluate_rag("docs", data, settings=settings, kb=kb, mode="extract", progress=False)
    kb.close()
    s = run.summary
    assert s["questions"] == 2 and s["unanswerable"] == 1
    assert s["retrieval_hit"] == 100.0
    by_id = {i["id"]: i["scores"] for i in run.items}
    assert by_id["1"]["contains"] == 100.0 and by_id["1"]["citation_precision"] == 100.0
    assert by_id["1"]["faithfulness"] == 100.0  # extracted sentences are quotations
    assert "dont_know" in by_id["3"] and s["dont_know"] == by_id["3"]["dont_know"]


def test_faithfulness_is_lexical_overlap_with_cited_text():
    assert faithfulness("Lot B [1].", ["Visitors park in lot B."]) == 1.0
    assert faithfulness("Lot C", ["Visitors park in lot B."]) == 0.5
    assert faithfulness("三楼", ["食堂在三楼"]) == 1.0 and faithfulness("", ["x"]) is None
