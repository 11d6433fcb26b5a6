"""``lingxi eval qa``: a model answers questions; exact match and F1 against gold answers.

Data: JSONL, one question a line: ``{"question", "answers": [...]}`` (or ``"answer"``), with an
optional ``"context"`` (reading comprehension: the passage is put in the prompt) and ``"id"``.
Answers are generated greedily through the engine (any configured model, local or remote) and
scored with SQuAD's rules for English and CMRC 2018's for Chinese (:mod:`lingxi.evaluate.answers`,
chosen per question by its script unless ``lang`` is given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.evaluate.answers import exact_match, f1, is_chinese
from lingxi.evaluate.result import EvalRun, data_record, jsonl_records, package_versions


def read_qa(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, row in jsonl_records(path, "QA"):
        answers = row.get("answers", [row["answer"]] if "answer" in row else None)
        if not row.get("question") or not answers:
            raise UsageError(f"QA {path}: line {n} needs \"question\" and \"answers\" (or \"answer\")")
        rows.append({"id": str(row.get("id", n)), "question": str(row["question"]),
                     "answers": [str(a) for a in (answers if isinstance(answers, list) else [answers])],
                     "context": row.get("context")})
    return rows


def qa_prompt(question: str, context: str | None) -> str:
    zh = is_chinese(question)
    if context:
        return (f"根据下面的材料，用最简短的词语回答问题。\n\n材料：{context}\n\n问题：{question}\n答案：" if zh else
                f"Answer the question with a short phrase from the passage.\n\nPassage: {context}\n\n"
                f"Question: {question}\nAnswer:")
    return f"请用最简短的词语回答：{question}" if zh else f"Answer with a short phrase only: {question}"


def evaluate_qa(model: str | None, data: str | Path, *, settings: Any = None, engine: Any = None,
                max_tokens: int = 48, lang: str | None = None, limit: int | None = None,
                progress: bool = True) -> EvalRun:
    """Generate an answer per question and score it; summary ``{"exact", "f1", "questions"}`` (0-100)."""
    from lingxi.engines import GenerationParams

    rows = read_qa(data)[:limit] if limit else read_qa(data)
    if engine is None:
        from lingxi.engines import load_engine

        engine = load_engine(model, settings)
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="qa", unit="q", file=sys.stderr, leave=False)
    items = []
    for row in rows:
        reply = engine.generate([{"role": "user", "content": qa_prompt(row["question"], row["context"])}], params)
        answer = reply.text.strip().splitlines()[0].strip() if reply.text.strip() else ""
        items.append({"id": row["id"], "question": row["question"], "prediction": answer, "gold": row["answers"],
                      "scores": {"exact": 100 * exact_match(answer, row["answers"], lang),
                                 "f1": 100 * f1(answer, row["answers"], lang)}})
        if bar:
            bar.update()
    if bar:
        bar.close()
    n = len(items)
    summary = {"exact": sum(i["scores"]["exact"] for i in items) / n, "f1": sum(i["scores"]["f1"] for i in items) / n,
               "questions": n}
    return EvalRun(kind="qa", summary=summary, items=items,
                   config={"model": getattr(engine, "name", model), "max_tokens": max_tokens, "lang": lang,
                           "limit": limit, "first_line_of_answer": True},
                   data=data_record({"qa": data}), versions=package_versions())
