"""Generated text against references: BLEU, chrF and TER through sacrebleu, ROUGE, EM and F1.

- BLEU, chrF, TER: sacrebleu's own metric classes with its defaults, the tokenizer chosen from
  the target language as sacrebleu's ``-l`` does (``zh`` for Chinese, ``ja-mecab``/``ko-mecab``
  for Japanese/Korean, ``13a`` otherwise); for CJK targets TER normalises with ``asian_support``
  (sacrebleu's ``--ter-normalized --ter-asian-support``), else one unspaced line is one word. Lines are
  read as sacrebleu's command line reads them (UTF-8, ``\\n``-separated, trailing space
  stripped), so the corpus scores equal ``sacrebleu REF... -i HYP`` to the last digit.
- ROUGE-1/2/L: the definitions of Google's ``rouge-score`` (the reference reimplementation of
  ROUGE-1.5.5; a test checks equality with it), F-measure, best over the references, averaged
  over lines. It is not imported: it pulls in NLTK, 2.3 s of imports for a stemmer not used here.
  Tokenisation: English as rouge-score's default (lowercase, ``[a-z0-9]+``, no stemming); Chinese,
  Japanese and Korean are split into single characters (CJK ideographs
  and kana/hangul each one token; Latin words and numbers stay whole), the usual practice for
  Chinese ROUGE since it needs no word segmenter; other languages split on Unicode word
  characters, lowercased.
- EM, F1: :mod:`lingxi.evaluate.answers` (SQuAD for English, CMRC 2018 for Chinese).

Everything is on sacrebleu's 0-100 scale.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError, missing_extra
from lingxi.evaluate.result import EvalRun, data_record, package_versions

METRICS = ("bleu", "chrf", "ter", "rouge", "exact", "f1")
#: corpus-level metrics: their score is computed from summed per-line statistics, not a mean
CORPUS_METRICS = ("bleu", "chrf", "ter")
CJK_LANGS = ("zh", "ja", "ko")

_CJK_CHAR = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_TOKEN = re.compile(rf"[{_CJK_CHAR}]|[^\W{_CJK_CHAR}]+")
_WORD = re.compile(r"\w+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def read_lines(path: str | Path, role: str) -> list[str]:
    """The lines of a hypothesis or reference file, read as sacrebleu's CLI reads them."""
    try:
        with open(path, encoding="utf-8", newline="\n") as fh:
            lines = [line.rstrip() for line in fh]
    except FileNotFoundError:
        raise UsageError(f"{role} file not found: {path}") from None
    except UnicodeDecodeError as exc:
        with open(path, "rb") as fh:
            line = fh.read(exc.start).count(b"\n") + 1
        raise UsageError(f"{role} {path}: line {line} is not UTF-8") from None
    if not lines:
        raise UsageError(f"{role} {path} is empty")
    return lines


def parse_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """``"bleu,chrf"`` or a list -> checked names in the given order; None -> all."""
    if metrics is None:
        return list(METRICS)
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise UsageError(f"unknown metric '{','.join(unknown) or metrics}'; known: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def sacrebleu_metrics(names: Sequence[str], lang: str) -> dict[str, Any]:
    """The sacrebleu metric objects for ``names`` (those of bleu/chrf/ter present), configured for ``lang``."""
    try:
        from sacrebleu.metrics import BLEU, CHRF, TER
    except ImportError as exc:
        raise missing_extra("BLEU, chrF and TER", "eval", exc) from exc
    out: dict[str, Any] = {}
    if "bleu" in names:
        out["bleu"] = BLEU(trg_lang=lang if lang in CJK_LANGS else "")
    if "chrf" in names:
        out["chrf"] = CHRF()
    if "ter" in names:
        cjk = lang in CJK_LANGS  # unspaced CJK text is one "word" per line unless TER normalises it
        out["ter"] = TER(normalized=cjk, asian_support=cjk)
    return out


def rouge_tokens(text: str, lang: str) -> list[str]:
    """ROUGE's tokens for ``lang`` (see the module docstring)."""
    if lang == "en":
        return _ASCII_WORD.findall(text.lower())
    return (_CJK_TOKEN if lang in CJK_LANGS else _WORD).findall(text.lower())


def _f(overlap: int, n_hyp: int, n_ref: int) -> float:
    precision, recall = overlap / max(n_hyp, 1), overlap / max(n_ref, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge(hyp: list[str], ref: list[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0-1) of two token lists, as rouge-score computes them."""
    out = {}
    for n in (1, 2):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        out[f"rouge{n}"] = _f(sum((h & r).values()), sum(h.values()), sum(r.values()))
    out["rougeL"] = _f(_lcs(ref, hyp), len(hyp), len(ref)) if hyp and ref else 0.0
    return out


def _check_lengths(hyp_path: str, hyps: list[str], refs: dict[str, list[str]]) -> None:
    for path, lines in refs.items():
        if len(lines) != len(hyps):
            short, long_, n = (path, hyp_path, len(lines)) if len(lines) < len(hyps) else (hyp_path, path, len(hyps))
            raise UsageError(f"{hyp_path} has {len(hyps)} lines but {path} has {len(lines)}: "
                             f"line {n + 1} of {long_} has no partner in {short}")


def score_generation(hyps: Sequence[str], refs: Sequence[Sequence[str]], metrics: Sequence[str], lang: str = "en",
                     ) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Any]]:
    """Score parallel lines. ``refs`` is a list of reference streams, each as long as ``hyps``.

    Returns ``(summary, items, config)``: corpus/mean scores, per-line scores and sufficient
    statistics, and the metric settings (sacrebleu signatures, ROUGE tokenisation).
    """
    from lingxi.evaluate import answers

    lang = lang.split("-")[0].lower()
    items: list[dict[str, Any]] = [{"id": str(i), "scores": {}, "stats": {}} for i in range(1, len(hyps) + 1)]
    summary: dict[str, float] = {}
    config: dict[str, Any] = {"metrics": list(metrics), "lang": lang, "references": len(refs)}
    for name, metric in sacrebleu_metrics(metrics, lang).items():
        stats = metric._extract_corpus_statistics(list(hyps), [list(r) for r in refs])
        summary[name] = metric._aggregate_and_compute(stats).score
        for item, s in zip(items, stats, strict=True):
            item["stats"][name] = [float(x) if isinstance(x, float) and not x.is_integer() else int(x) for x in s]
        config.setdefault("signatures", {})[name] = str(metric.get_signature())
    per_line = list(zip(hyps, zip(*refs, strict=True), strict=True))
    if "rouge" in metrics:
        for item, (hyp, line_refs) in zip(items, per_line, strict=True):
            tokens = rouge_tokens(hyp, lang)
            best = [rouge(tokens, rouge_tokens(r, lang)) for r in line_refs]
            item["scores"].update({k: 100 * max(b[k] for b in best) for k in ("rouge1", "rouge2", "rougeL")})
        for key in ("rouge1", "rouge2", "rougeL"):
            summary[key] = sum(i["scores"][key] for i in items) / len(items)
        config["rouge_tokenizer"] = ("rouge-score default (lowercase, [a-z0-9]+)" if lang == "en" else
                                     "CJK characters one by one, other words whole, lowercased"
                                     if lang in CJK_LANGS else "Unicode \\w+ words, lowercased")
    for name, fn in (("exact", answers.exact_match), ("f1", answers.f1)):
        if name in metrics:
            for item, (hyp, line_refs) in zip(items, per_line, strict=True):
                item["scores"][name] = 100 * fn(hyp, list(line_refs), lang)
            summary[name] = sum(i["scores"][name] for i in items) / len(items)
    if "exact" in metrics or "f1" in metrics:
        config["answer_normalisation"] = "CMRC 2018" if lang == "zh" else "SQuAD v1.1"
    return summary, items, config


def evaluate_generation(hyp: str | Path, refs: Sequence[str | Path], *, metrics: str | Sequence[str] | None = None,
                        lang: str = "en") -> EvalRun:
    """Score a hypothesis file against one or more reference files (one segment per line).

    Raises:
        UsageError: a missing, empty or non-UTF-8 file, differing line counts (naming the
            first line without a partner), an unknown metric, or no reference.
    """
    names = parse_metrics(metrics)
    if not refs:
        raise UsageError("give at least one reference file (--ref)")
    hyps = read_lines(hyp, "hypothesis")
    ref_lines = {str(r): read_lines(r, "reference") for r in refs}
    _check_lengths(str(hyp), hyps, ref_lines)
    summary, items, config = score_generation(hyps, [ref_lines[str(r)] for r in refs], names, lang)
    files: dict[str, str | Path | None] = {"hyp": hyp, **{f"ref{i}": r for i, r in enumerate(refs, 1)}}
    return EvalRun(kind="generation", config=config, summary=summary, items=items, data=data_record(files),
                   versions=package_versions("sacrebleu"))
