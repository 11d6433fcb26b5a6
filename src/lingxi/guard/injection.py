"""Prompt-injection and jailbreak detection, Chinese and English, with a model trained here.

The classifier is a logistic regression on TF-IDF weighted character n-grams (2-4) and word
uni/bigrams of the normalised text (NFKC, lower case, traditional -> simplified Chinese). It is
small (a JSON file of a few hundred kB shipped in the package, ``injection_model.json``), fast
(pure Python at inference, well under a millisecond per short prompt) and reproducible:
:func:`train_injection` (``lingxi guard train-injection``) rebuilds it from JSONL files of
``{"text", "label"}`` lines (1 = injection or jailbreak).

What it does not do: understand meaning. It learns the wording of attacks in its training data
(English and German from deepset/prompt-injections, Chinese written for Lingxi) and misses
attacks phrased unlike any of them, or hidden in encodings it has not seen.

Indirect injection: :func:`scan_document` scores a retrieved or ingested document window by
window, so one poisoned paragraph inside a long page is not diluted by the rest. It compares the
worst window with the model's ``document_threshold`` (in ``meta``, set by
:func:`calibrate_document_threshold` on ordinary documents apart from the training ones), as the
maximum over many windows of an ordinary page runs higher than one prompt's score. The shipped
file holds three models: one for prompts, and one per language for document windows
(``InjectionModel.documents``), trained on the same prompts plus windows of ordinary documents
with and without an injection inserted — encyclopedia abstracts, Chinese paragraphs and a civil
code for both, Python's own documentation, the Debian Policy Manual and free-software licences
for English. One model for everything had to trade
one for another: ordinary manuals and READMEs say "you must", "ignore" and "do not" in every
paragraph, and learning that cost prompt recall and moved Chinese windows' scores.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.text import language_of

MODEL_FILE = "injection_model.json"
_WORD = re.compile(r"[a-z0-9äöüß']+|[\u3400-\u9fff]")


@lru_cache(maxsize=1)
def _t2s():
    try:
        from zhconv import convert
    except ImportError:  # traditional characters then count as their own n-grams
        return None
    return convert


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, simplified Chinese, one space between words."""
    text = unicodedata.normalize("NFKC", text).lower()
    if re.search(r"[\u3400-\u9fff]", text) and (convert := _t2s()) is not None:
        text = convert(text, "zh-cn")
    return " ".join(text.split())


def featurize(text: str, max_chars: int = 4000) -> Counter[str]:
    """Character 2-4-grams and word uni/bigrams (a Chinese character counts as a word)."""
    t = normalize(text[:max_chars])
    feats: Counter[str] = Counter()
    padded = f" {t} "
    for n in (2, 3, 4):
        for i in range(len(padded) - n + 1):
            feats["c" + padded[i:i + n]] += 1
    words = _WORD.findall(t)
    for w in words:
        feats["w" + w] += 1
    for a, b in zip(words, words[1:]):
        feats["b" + a + " " + b] += 1
    return feats


@dataclass
class InjectionModel:
    """A trained classifier: per-feature idf and weight, a bias and the decision threshold."""

    idf: dict[str, float]
    weights: dict[str, float]
    bias: float
    threshold: float
    meta: dict[str, Any]
    documents: dict[str, InjectionModel] = field(default_factory=dict)
    """The models document windows are scored with, by the window's language (``zh``, ``en``);
    a language without one: this model."""

    def score(self, text: str) -> float:
        """Probability-like score in [0, 1]; higher = more likely an injection or jailbreak."""
        if not isinstance(text, str):
            raise UsageError(f"injection scoring needs text, got {type(text).__name__}")
        feats = featurize(text)
        vec = {f: (1.0 + math.log(c)) * self.idf[f] for f, c in feats.items() if f in self.idf}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        z = self.bias + sum(v * self.weights.get(f, 0.0) for f, v in vec.items()) / norm
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def is_injection(self, text: str) -> bool:
        return self.score(text) >= self.threshold

    def for_window(self, window: str) -> InjectionModel:
        """The model that scores a document window in ``window``'s language."""
        return self.documents.get(_window_language(window), self)

    def window_threshold(self, window: str) -> float:
        """The threshold for a document window: its model's calibrated document threshold (the
        prompt threshold if not calibrated)."""
        model = self.for_window(window)
        return float(model.meta.get("document_threshold", model.threshold))

    @property
    def document_threshold(self) -> float:
        """The document threshold for English windows (every window, for a model of one language)."""
        return self.window_threshold("")

    def to_json(self) -> dict[str, Any]:
        feats = sorted(self.idf)
        out = {"format": "lingxi-injection-v1", "meta": self.meta, "bias": self.bias, "threshold": self.threshold,
               "features": feats, "idf": [round(self.idf[f], 4) for f in feats],
               "weights": [round(self.weights.get(f, 0.0), 5) for f in feats]}
        if self.documents:
            out["documents"] = {lang: m.to_json() for lang, m in sorted(self.documents.items())}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InjectionModel:
        if data.get("format") != "lingxi-injection-v1":
            raise UsageError("not a Lingxi injection model file (format lingxi-injection-v1)")
        feats = data["features"]
        documents = {lang: cls.from_json(m) for lang, m in (data.get("documents") or {}).items()}
        return cls(dict(zip(feats, data["idf"])), {f: w for f, w in zip(feats, data["weights"]) if w},
                   float(data["bias"]), float(data["threshold"]), data.get("meta", {}), documents)

    def save(self, path: str | Path) -> None:
        from lingxi.guard._io import write_atomic

        write_atomic(Path(path), json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")))


def load_model(path: str | Path | None = None) -> InjectionModel:
    """The model at ``path``, or the one shipped in the package."""
    if path is None:
        return _bundled_model()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"injection model not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read injection model {path}: {exc}") from None
    return InjectionModel.from_json(data)


@lru_cache(maxsize=1)
def _bundled_model() -> InjectionModel:
    text = resources.files("lingxi.guard").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return InjectionModel.from_json(json.loads(text))


def score_injection(text: str, model: InjectionModel | None = None) -> float:
    """Score of ``text`` under ``model`` (default: the bundled one)."""
    return (model or _bundled_model()).score(text)


@dataclass(frozen=True)
class DocumentFinding:
    """The most suspicious window of a document."""

    score: float
    start: int
    end: int
    flagged: bool


def document_windows(text: str, window: int = 400, stride: int = 200) -> list[tuple[int, int]]:
    """The ``(start, end)`` windows :func:`scan_document` scores (one when ``text`` fits in a window)."""
    if len(text) <= window:
        return [(0, len(text))]
    return [(s, min(len(text), s + window)) for s in range(0, max(1, len(text) - window + stride), stride)]


def scan_document(text: str, model: InjectionModel | None = None, window: int = 400,
                  stride: int = 200, threshold: float | None = None) -> DocumentFinding:
    """Indirect injection check for a document (at ingest and again at retrieval time): the window
    of ``window`` characters, sliding by ``stride``, scored by the model for its language, that
    stands highest above its threshold (:meth:`InjectionModel.window_threshold`, or ``threshold``
    for every window), flagged when it reaches it."""
    model = model or _bundled_model()
    best, margin = DocumentFinding(-1.0, 0, 0, False), -2.0
    for start, end in document_windows(text, window, stride):
        piece = text[start:end]
        s = model.for_window(piece).score(piece)
        bar = threshold if threshold is not None else model.window_threshold(piece)
        if s - bar > margin:
            best, margin = DocumentFinding(s, start, end, s >= bar), s - bar
    return best


def _window_language(text: str) -> str:
    return "zh" if language_of(text) == "zh" else "en"


def calibrate_document_threshold(model: InjectionModel, documents: Sequence[str], target_fpr: float = 0.02,
                                 window: int = 400, stride: int = 200) -> float:
    """Set each document model's ``meta["document_threshold"]`` (``model``'s own for a model of one
    language) to the lowest worst-window score, that model scoring every window, at which at most
    ``target_fpr`` of ``documents`` (ordinary ones, not used in training) would be flagged.
    Returns the English (or only) threshold. Calibrate a language's model alone (pass it as
    ``model``) on documents of the kinds it learnt from: a model that never saw technical prose
    scores it high and would set its bar above every injection.

    Raises:
        UsageError: fewer than 20 documents.
    """
    if len(documents) < 20:
        raise UsageError(f"document calibration needs at least 20 ordinary documents (got {len(documents)})")
    for scorer in list(model.documents.values()) or [model]:
        worst = sorted((max(scorer.score(d[a:b]) for a, b in document_windows(d, window, stride))
                        for d in documents), reverse=True)
        threshold = min(0.99, max(0.05, worst[int(target_fpr * len(worst))] + 1e-6))
        scorer.meta.update({"document_threshold": threshold, "document_target_fpr": target_fpr,
                            "document_calibration_docs": len(documents)})
    return model.document_threshold


# ---------------------------------------------------------------- metrics


def roc_points(labels: Sequence[int], scores: Sequence[float]) -> list[tuple[float, float, float]]:
    """(threshold, fpr, tpr) for every distinct score, highest threshold first."""
    pos = sum(1 for y in labels if y == 1)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        raise UsageError("evaluation data needs both injections (label 1) and ordinary texts (label 0)")
    order = sorted(zip(scores, labels), key=lambda p: -p[0])
    points, tp, fp, i = [], 0, 0, 0
    while i < len(order):
        thr = order[i][0]
        while i < len(order) and order[i][0] == thr:
            tp += order[i][1] == 1
            fp += order[i][1] != 1
            i += 1
        points.append((thr, fp / neg, tp / pos))
    return points


def injection_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """TPR and FPR at ``threshold``, ROC AUC, and the best TPR with FPR <= 5 % and <= 1 %."""
    pts = roc_points(labels, scores)
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y != 1]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))

    def tpr_at(max_fpr: float) -> tuple[float, float]:
        ok = [(tpr, thr) for thr, fpr, tpr in pts if fpr <= max_fpr]
        return max(ok) if ok else (0.0, 1.0)

    t05, thr05 = tpr_at(0.05)
    t01, _ = tpr_at(0.01)
    return {"tpr": sum(s >= threshold for s in pos) / len(pos), "fpr": sum(s >= threshold for s in neg) / len(neg),
            "auc": auc, "threshold": threshold, "tpr_at_fpr_05": t05, "threshold_at_fpr_05": thr05,
            "tpr_at_fpr_01": t01, "positives": len(pos), "negatives": len(neg)}


# ---------------------------------------------------------------- training


def read_labelled(paths: Iterable[str | Path]) -> list[tuple[str, int]]:
    """``{"text", "label"}`` lines from JSONL files; bad lines are a UsageError naming the line."""
    from lingxi.guard._io import iter_jsonl

    rows = []
    for path in paths:
        for n, row in iter_jsonl(path):
            ok = isinstance(row, dict) and isinstance(row.get("text"), str) and row.get("label") in (0, 1)
            if not ok or isinstance(row["label"], bool):
                raise UsageError(f"{path}:{n}: expected a JSON object with a string 'text' and 'label' 0 or 1")
            rows.append((row["text"], int(row["label"])))
    return rows


def _fit_logistic(rows: list[dict[int, float]], y: list[int], dim: int, l2: float, epochs: int) -> tuple[list[float], float]:
    """Class-balanced L2 logistic regression by full-batch Adam on sparse rows (numpy)."""
    import numpy as np

    indptr = np.cumsum([0] + [len(r) for r in rows])
    idx = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=int(indptr[-1]))
    val = np.fromiter((v for r in rows for v in r.values()), dtype=np.float64, count=int(indptr[-1]))
    row_of = np.repeat(np.arange(len(rows)), np.diff(indptr))
    yv = np.asarray(y, dtype=np.float64)
    pos = yv.sum()
    sw = np.where(yv == 1, len(yv) / (2 * pos), len(yv) / (2 * (len(yv) - pos)))
    w, b = np.zeros(dim), 0.0
    m, v, mb, vb = np.zeros(dim), np.zeros(dim), 0.0, 0.0
    lr, beta1, beta2 = 0.05, 0.9, 0.999
    for t in range(1, epochs + 1):
        z = np.bincount(row_of, weights=val * w[idx], minlength=len(rows)) + b
        p = 1 / (1 + np.exp(-np.clip(z, -60, 60)))
        g_row = sw * (p - yv) / len(rows)
        gw = np.bincount(idx, weights=val * g_row[row_of], minlength=dim) + l2 * w
        gb = g_row.sum()
        m = beta1 * m + (1 - beta1) * gw
        v = beta2 * v + (1 - beta2) * gw * gw
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        w -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + 1e-8)
        b -= lr * (mb / (1 - beta1**t)) / (math.sqrt(vb / (1 - beta2**t)) + 1e-8)
    return w.tolist(), float(b)


def train_injection(data: Sequence[tuple[str, int]], *, min_df: int = 2, max_features: int = 30000,
                    l2: float = 1e-4, epochs: int = 300, target_fpr: float = 0.03, dev_fraction: float = 0.2,
                    seed: int = 0, meta: dict[str, Any] | None = None,
                    extra: Sequence[tuple[str, int]] = ()) -> InjectionModel:
    """Train the classifier on ``(text, label)`` pairs.

    The decision threshold is the lowest score whose false-positive rate on a held-back
    ``dev_fraction`` of the data is at most ``target_fpr``; then the model is refit on all of it.
    ``extra`` pairs (e.g. document windows) are fitted on but never in that held-back part, so
    they do not move the prompt threshold (documents get theirs from
    :func:`calibrate_document_threshold`).

    Raises:
        UsageError: fewer than 10 examples of either class.
    """
    import random

    pos = sum(1 for _t, y in data if y == 1)
    if pos < 10 or len(data) - pos < 10:
        raise UsageError(f"training needs at least 10 injections and 10 ordinary texts (got {pos} and {len(data) - pos})")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_dev = int(len(data) * dev_fraction)
    dev = [data[i] for i in order[:n_dev]]
    fit = [data[i] for i in order[n_dev:]] + list(extra)
    threshold = 0.5
    if n_dev >= 20 and any(y == 1 for _t, y in dev) and any(y == 0 for _t, y in dev):
        model = _train(fit, min_df, max_features, l2, epochs, 0.5, {})
        negs = sorted((model.score(t) for t, y in dev if y == 0), reverse=True)
        k = int(target_fpr * len(negs))  # this many negatives may score at or above the threshold
        threshold = min(0.99, max(0.05, (negs[k] + 1e-6) if k < len(negs) else 0.5))
    return _train(list(data) + list(extra), min_df, max_features, l2, epochs, threshold,
                  {**(meta or {}), "examples": len(data) + len(extra),
                   "injections": pos + sum(1 for _t, y in extra if y == 1), "target_fpr": target_fpr})


def _train(data: Sequence[tuple[str, int]], min_df: int, max_features: int, l2: float, epochs: int,
           threshold: float, meta: dict[str, Any]) -> InjectionModel:
    feats = [featurize(t) for t, _y in data]
    df: Counter[str] = Counter()
    for f in feats:
        df.update(f.keys())
    vocab = [f for f, c in df.most_common(max_features) if c >= min_df]
    index = {f: i for i, f in enumerate(vocab)}
    n = len(data)
    idf = [math.log((1 + n) / (1 + df[f])) + 1.0 for f in vocab]
    rows = []
    for f in feats:
        r = {index[k]: (1.0 + math.log(c)) * idf[index[k]] for k, c in f.items() if k in index}
        norm = math.sqrt(sum(v * v for v in r.values())) or 1.0
        rows.append({k: v / norm for k, v in r.items()})
    w, b = _fit_logistic(rows, [y for _t, y in data], len(vocab), l2, epochs)
    return InjectionModel(dict(zip(vocab, idf)), dict(zip(vocab, w)), b, threshold, {**meta, "features": len(vocab)})
