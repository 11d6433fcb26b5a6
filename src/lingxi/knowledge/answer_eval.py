"""Measuring cited answers: the support check on labelled pairs, and whole answers on QA sets.

- :func:`build_pairs` turns hand-written items (a question, the chunk it is asked over, answer
  sentences the chunk supports, sentences that contradict it, a true-but-beside-the-point
  sentence and a restatement of the question) into labelled ``(question, cited, answer, label)``
  pairs: ``supported``, ``contradicted``, ``unrelated`` (beside the point, or from another
  item's chunk), ``question-echo`` (the hand-written restatement and the bare question) and
  ``repetition`` (a phrase of a supported answer looped, as small models do).
- :func:`evaluate_support` runs :func:`lingxi.knowledge.support.check` over pairs and reports the
  precision and recall of ``supported`` and, per category, how often the check gets it right.
- :func:`evaluate_answers` asks a knowledge base questions with gold answers (and questions it
  cannot answer) in each answer mode and reports the precision of ``supported: true``, the
  answered rate, the "unknown" rate on unanswerable questions and latency.

``benchmarks/kb_answers.py`` and ``lingxi eval`` call these; nothing here prints.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lingxi.text import language_of

LABELS = ("supported", "contradicted", "unrelated", "question-echo", "repetition")
#: Which label a failed check's reason stands for.
REASON_LABEL = {
    "supported": "supported", "repetition": "repetition", "echo": "question-echo", "not-an-answer": "question-echo",
    "off-topic": "unrelated", "uncovered": "unrelated", "empty": "unrelated", "number": "contradicted",
    "date": "contradicted", "entity": "contradicted", "negation": "contradicted", "opposite": "contradicted",
    "comparative": "contradicted",
}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _loop(sentence: str) -> str:
    """A phrase of the sentence repeated as a looping model would."""
    if re.search(r"[\u4e00-\u9fff]", sentence):
        core = re.sub(r"[。！？，]", "", sentence)[:6]
        return "".join([core + "，"] * 6) + core + "。"
    words = sentence.rstrip(".").split()[:4]
    return " ".join(words * 6) + "."


def build_pairs(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Labelled pairs from items (see the module docstring); deterministic."""
    pairs: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        q, chunk = item["question"], item["chunk"]

        def add(answer: str, label: str, kind: str) -> None:
            pairs.append({"id": f"{item['id']}-{len(pairs)}", "item": item["id"], "question": q, "cited": chunk,
                          "answer": answer, "label": label, "kind": kind})
        for s in item["supported"]:
            add(s, "supported", "supported")
        for s, kind in item["contradicted"]:
            add(s, "contradicted", kind)
        add(item["beside"], "unrelated", "beside-the-point")
        other = items[(n + 7) % len(items)]
        add(other["supported"][0], "unrelated", "other-chunk")
        add(item["echo"], "question-echo", "restated")
        add(q, "question-echo", "verbatim")
        add(_loop(item["supported"][0]), "repetition", "loop")
    return pairs


def evaluate_support(pairs: Iterable[dict[str, Any]], *, similarity: Any = None) -> dict[str, Any]:
    """Run the support check over labelled pairs.

    Returns ``{"n", "supported": {"precision", "recall"}, "per_category": {label: {"n",
    "correct" (share judged right: passed for supported, refused otherwise), "precision",
    "recall" (of the category the failed reason names)}}, "errors": [...]}``.
    """
    from lingxi.knowledge.support import check

    rows = []
    for p in pairs:
        v = check(p["question"], p["answer"], p["cited"], similarity=similarity)
        rows.append((p, v))
    tp = sum(1 for p, v in rows if v.supported and p["label"] == "supported")
    passed = sum(1 for _, v in rows if v.supported)
    positives = sum(1 for p, _ in rows if p["label"] == "supported")
    per: dict[str, Any] = {}
    for label in LABELS:
        mine = [(p, v) for p, v in rows if p["label"] == label]
        predicted = [(p, v) for p, v in rows if REASON_LABEL[v.reason] == label]
        right = sum(1 for p, v in mine if v.supported == (label == "supported"))
        per[label] = {
            "n": len(mine),
            "correct": round(right / len(mine), 4) if mine else None,
            "precision": round(sum(1 for p, _ in predicted if p["label"] == label) / len(predicted), 4)
            if predicted else None,
            "recall": round(sum(1 for _, v in mine if REASON_LABEL[v.reason] == label) / len(mine), 4) if mine else None,
        }
    errors = [{"id": p["id"], "label": p["label"], "reason": v.reason, "answer": p["answer"]}
              for p, v in rows if v.supported != (p["label"] == "supported")]
    return {
        "n": len(rows),
        "supported": {"precision": round(tp / passed, 4) if passed else None,
                      "recall": round(tp / positives, 4) if positives else None},
        "per_category": per,
        "errors": errors,
    }


def answer_matches(answer: str, golds: Sequence[str]) -> bool:
    """Whether an answer contains a gold answer (ignoring case, spaces and punctuation), or a gold
    answer contains the whole answer body (a shorter, exact quote of it)."""
    def norm(s: str) -> str:
        return re.sub(r"[\W_]+", "", s.lower())
    answer = re.sub(r"\[[\d.,\s]+\]", "", answer).strip()
    quoted = re.match(r"^(?:文档原文：「(.*)」|The documents say: “(.*)”)$", answer, re.S)
    body = norm(next(g for g in quoted.groups() if g is not None) if quoted else answer)
    for g in golds:
        gold = norm(g)
        if gold and (gold in body or (len(body) >= 2 and body in gold)):
            return True
    return False


def evaluate_answers(kb: Any, engine: Any, questions: Sequence[dict[str, Any]], unanswerable: Sequence[str],
                     modes: Sequence[str] = ("generate", "extract", "auto"), k: int = 5,
                     progress: Any = None) -> dict[str, Any]:
    """Ask ``kb`` every question in each mode.

    Args:
        questions: ``{"question", "answers": [gold, ...]}`` the corpus answers.
        unanswerable: questions the corpus does not answer.

    Returns, per mode: ``precision`` (share of ``supported: true`` answers that contain a gold
    answer), ``answered`` (share of answerable questions answered with ``supported: true``),
    ``correct`` (share of answerable questions answered correctly), ``unknown`` (share of
    unanswerable questions refused), ``answered_from_other_language`` (supported answers whose
    first citation is in another language than the question), latency ``p50_s``/``p95_s`` and
    the answer modes used.
    """
    out: dict[str, Any] = {}
    for mode in modes:
        times: list[float] = []
        supported = correct = cross = 0
        used: dict[str, int] = {}
        wrong: list[dict[str, Any]] = []
        for q in questions:
            start = time.perf_counter()
            a = kb.answer(q["question"], engine, k=k, mode=mode)
            times.append(time.perf_counter() - start)
            used[a.mode] = used.get(a.mode, 0) + 1
            if a.supported:
                supported += 1
                cross += bool(a.citations) and language_of(a.citations[0].text) != language_of(q["question"])
                if answer_matches(a.answer, q["answers"]):
                    correct += 1
                elif len(wrong) < 20:
                    wrong.append({"question": q["question"], "gold": q["answers"][:2], "answer": a.answer[:200]})
            if progress:
                progress()
        refused = 0
        for text in unanswerable:
            start = time.perf_counter()
            a = kb.answer(text, engine, k=k, mode=mode)
            times.append(time.perf_counter() - start)
            refused += a.mode == "unknown" or not a.supported
            if progress:
                progress()
        n = len(questions)
        out[mode] = {
            "n": n,
            "n_unanswerable": len(unanswerable),
            "precision": round(correct / supported, 4) if supported else None,
            "answered": round(supported / n, 4) if n else None,
            "correct": round(correct / n, 4) if n else None,
            "unknown": round(refused / len(unanswerable), 4) if unanswerable else None,
            "answered_from_other_language": cross,
            "p50_s": round(statistics.median(times), 3) if times else None,
            "p95_s": round(sorted(times)[int(0.95 * (len(times) - 1))], 3) if times else None,
            "modes": used,
            "wrong_examples": wrong,
        }
    return out
