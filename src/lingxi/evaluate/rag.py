"""``lingxi eval rag``: a knowledge base answering questions, scored without a judge model.

Data: JSONL lines ``{"question", "answers": [...], "doc"?: "source or document key of the passage
that answers it"}``; a line with ``"answers": []`` (or ``"unanswerable": true``) is a question the
documents do not answer. For each question the knowledge base answers (its own retrieval, answer
mode and support check, :meth:`KnowledgeBase.answer`) and the harness scores:

- ``retrieval_hit``: the gold ``doc`` is among the retrieved chunks' documents (when given);
- ``exact`` / ``f1``: the answer against the gold answers (SQuAD / CMRC 2018 rules; an answer
  usually is a sentence, so F1 and ``contains`` — a gold answer appears in it — say more than EM);
- ``citation_precision``: share of cited chunks that contain a gold answer (normalised text);
- ``faithfulness``: share of the answer's tokens (CJK characters, words; punctuation and
  citation markers dropped) that occur in the cited text — lexical, no judge model. An
  extracted answer is scored on its quoted sentences, not the framing around them;
- ``dont_know``: on unanswerable questions, the share answered "unknown" (or not supported).

Chinese and English questions can be mixed; scoring picks the rules per question.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.evaluate.answers import cmrc_segments, exact_match, f1, is_chinese, squad_normalize
from lingxi.evaluate.result import EvalRun, data_record, jsonl_records, package_versions

_MARKER = re.compile(r"\[[^\]]{1,40}\]")
_QUOTED = re.compile(r"“([^”]+)”|「([^」]+)」|\"([^\"]+)\"")


def answer_text(answer: Any) -> str:
    """The words an answer asserts: for an extracted answer, the quoted source sentences without
    the framing around them ("The documents say: ..."); for a graph answer, the entities it
    names, without the paths; for a generated one, all of it."""
    if not answer.supported:
        return ""
    if answer.mode == "extracted":
        quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(answer.answer)]
        if quoted:
            return " ".join(quoted)
    if answer.mode == "graph":  # "CYP2C19 (氯吡格雷 -METABOLIZED_BY-> CYP2C19) [1.1.1.0]": the entities
        return _MARKER.sub("", answer.answer.split(" (", 1)[0]).strip()
    return answer.answer


def read_rag(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, row in jsonl_records(path, "RAG"):
        if not row.get("question"):
            raise UsageError(f"RAG {path}: line {n} needs a \"question\"")
        answers = [] if row.get("unanswerable") else row.get("answers", [row["answer"]] if "answer" in row else [])
        rows.append({"id": str(row.get("id", n)), "question": str(row["question"]),
                     "answers": [str(a) for a in answers], "doc": row.get("doc")})
    return rows


def _tokens(text: str) -> list[str]:
    text = _MARKER.sub(" ", text)
    return cmrc_segments(text) if is_chinese(text) else squad_normalize(text).split()


def _normal(text: str) -> str:
    return "".join(_tokens(text))


def faithfulness(answer: str, cited: list[str]) -> float | None:
    """Share of the answer's tokens found in the cited text (None for an empty answer)."""
    tokens = _tokens(answer)
    if not tokens:
        return None
    pool = set(_tokens(" ".join(cited)))
    return sum(t in pool for t in tokens) / len(tokens)


def score_answer(row: dict[str, Any], answer: Any) -> dict[str, Any]:
    """Per-question scores of one :class:`~lingxi.knowledge.types.Answer`."""
    scores: dict[str, Any] = {}
    docs = {h.source for h in answer.hits} | {h.doc for h in answer.hits}
    if row["doc"] is not None:
        scores["retrieval_hit"] = 100.0 * any(str(row["doc"]) in d or d == str(row["doc"]) for d in docs)
    if not row["answers"]:
        scores["dont_know"] = 100.0 * (answer.mode == "unknown" or not answer.supported)
        return scores
    text = answer_text(answer)
    gold = [_normal(g) for g in row["answers"]]
    scores["exact"] = 100 * exact_match(text, row["answers"])
    scores["f1"] = 100 * f1(text, row["answers"])
    scores["contains"] = 100.0 * any(g and g in _normal(text) for g in gold)
    scores["answered"] = 100.0 * bool(answer.supported)
    cited = [c.text for c in answer.citations]
    if cited:
        scores["citation_precision"] = 100 * sum(any(g and g in _normal(c) for g in gold) for c in cited) / len(cited)
    faithful = faithfulness(text, cited) if text else None
    if faithful is not None:
        scores["faithfulness"] = 100 * faithful
    return scores


def evaluate_rag(kb_name: str, data: str | Path, *, settings: Any, model: str | None = None, k: int = 5,
                 mode: str | None = None, kb: Any = None, engine: Any = None, progress: bool = True) -> EvalRun:
    """Ask the knowledge base ``kb_name`` every question of ``data`` and score the answers."""
    rows = read_rag(data)
    mode = mode or settings.knowledge.answer_mode
    if engine is None and mode != "extract":
        from lingxi.engines import load_engine

        engine = load_engine(model, settings)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="rag", unit="q", file=sys.stderr, leave=False)
    items = []
    own = kb is None
    if own:
        from lingxi.knowledge import open_kb

        kb = open_kb(kb_name, settings)
    try:
        for row in rows:
            answer = kb.answer(row["question"], engine, k=k, mode=mode)
            items.append({"id": row["id"], "question": row["question"], "answer": answer.answer, "mode": answer.mode,
                          "scores": score_answer(row, answer)})
            if bar:
                bar.update()
    finally:
        if own:
            kb.close()
        if bar:
            bar.close()
    summary: dict[str, Any] = {}
    for key in ("retrieval_hit", "exact", "f1", "contains", "answered", "citation_precision", "faithfulness",
                "dont_know"):
        values = [i["scores"][key] for i in items if key in i["scores"]]
        summary[key] = sum(values) / len(values) if values else None
    summary["questions"] = sum(1 for r in rows if r["answers"])
    summary["unanswerable"] = sum(1 for r in rows if not r["answers"])
    return EvalRun(kind="rag", summary=summary, items=items,
                   config={"kb": kb_name, "model": getattr(engine, "name", model), "k": k, "mode": mode,
                           "judge": None},
                   data=data_record({"rag": data}), versions=package_versions())
