"""Score the PII detector and the injection classifier on labelled JSONL files.

PII lines: ``{"text", "spans": [{"start", "end", "label"}]}``. A predicted span is a true
positive when it overlaps an unmatched gold span of the same label by at least half of the
longer of the two (so ``Dr. Alice Wong`` against ``Alice Wong`` counts, a phone number's first
digits alone do not). F2 weighs recall twice: for PII a miss costs more than an extra mask.

Injection lines: ``{"text", "label"}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.guard.pii import PiiDetector, Span


def read_pii_gold(path: str | Path) -> list[tuple[str, list[Span]]]:
    """``(text, gold spans)`` per line; a bad line is a UsageError naming it."""
    from lingxi.guard._io import iter_jsonl

    rows = []
    for n, row in iter_jsonl(path):
        try:
            text = row["text"]
            spans = [Span(int(s["start"]), int(s["end"]), str(s["label"]), 1.0) for s in row.get("spans", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{path}:{n}: expected {{\"text\", \"spans\": [{{\"start\", \"end\", \"label\"}}]}}") from None
        if not isinstance(text, str) or any(not (0 <= s.start < s.end <= len(text)) for s in spans):
            raise UsageError(f"{path}:{n}: 'text' must be a string and each span inside it")
        rows.append((text, spans))
    return rows


def _matches(pred: Span, gold: Span) -> bool:
    overlap = min(pred.end, gold.end) - max(pred.start, gold.start)
    return pred.label == gold.label and overlap > 0 and overlap * 2 >= max(pred.end - pred.start, gold.end - gold.start)


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0

    def f(beta: float) -> float:
        b2 = beta * beta
        return (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0

    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f(1), 4), "f2": round(f(2), 4),
            "tp": tp, "fp": fp, "fn": fn}


def score_pii(gold: Sequence[tuple[str, Sequence[Span]]], predicted: Iterable[Sequence[Span]]) -> dict[str, Any]:
    """Precision, recall, F1, F2 overall and per label (labels the gold never uses count as
    false positives under their own name)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for (_text, gspans), pspans in zip(gold, predicted):
        unmatched = list(gspans)
        for p in pspans:
            hit = next((g for g in unmatched if _matches(p, g)), None)
            if hit is None:
                fp[p.label] += 1
            else:
                tp[p.label] += 1
                unmatched.remove(hit)
        for g in unmatched:
            fn[g.label] += 1
    result = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    labels = sorted(set(tp) | set(fp) | set(fn))
    result["per_label"] = {lab: _prf(tp[lab], fp[lab], fn[lab]) for lab in labels}
    result["texts"] = len(gold)
    return result


def evaluate_pii(path: str | Path, lang: str = "auto", detector: PiiDetector | None = None) -> dict[str, Any]:
    """Run the detector over a gold file and score it (see :func:`score_pii`)."""
    gold = read_pii_gold(path)
    detector = detector or PiiDetector(lang=lang)  # type: ignore[arg-type]
    return score_pii(gold, (detector.detect(text) for text, _spans in gold))


def evaluate_injection(path: str | Path, model_path: str | Path | None = None) -> dict[str, Any]:
    """TPR/FPR at the model's threshold, AUC, TPR at FPR <= 5 % and <= 1 % on a labelled file."""
    from lingxi.guard.injection import injection_metrics, load_model, read_labelled

    rows = read_labelled([path])
    model = load_model(model_path)
    scores = [model.score(t) for t, _y in rows]
    metrics = injection_metrics([y for _t, y in rows], scores, model.threshold)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
