"""Train and measure the prompt-injection classifier (Chinese and English).

Builds a training set and a held-out set from public data plus the examples written for Lingxi
(``benchmarks/data/guard/injection_{train,heldout}.jsonl``):

- deepset/prompt-injections: ``train.jsonl`` -> training, ``test.jsonl`` -> held out;
- ordinary Chinese instructions (BELLE seed tasks), Chinese questions (CMRC 2018 queries),
  English chat openings (hh-rlhf first human turns) -> negatives, split by a hash of the text;
- DBpedia entity queries -> held-out negatives only;
- document windows (400 characters, stride 200, as ``scan_document`` cuts them) of DBpedia
  abstracts, CMRC 2018 paragraphs and the PRC Civil Code, and for the English document model also
  of Python's own documentation (:func:`python_docs`) and of the ``--technical`` documents (the
  shipped model: the Debian Policy Manual and companions, the licences of
  ``/usr/share/common-licenses``; see docs/guard.md) -> negatives, and windows of such a document
  with a training injection inserted -> positives; documents split into training, calibration (each
  document model's ``document_threshold``) and held-out evaluation, disjoint.

Three models are trained: one for prompts (prompts only), and one per language for document
windows (prompts and windows; see ``lingxi.guard.injection``).

Document-level evaluation: held-out ordinary documents (English DBpedia, Chinese CMRC, pieces of
Python's documentation) scanned whole by ``scan_document`` (FPR), and the same documents with a
held-out injection (deepset test, the Chinese held-out examples written for Lingxi) inserted at a
random point (TPR).

Prints JSON: the held-out TPR/FPR at the shipped threshold, TPR at FPR <= 5 % and <= 1 %, AUC,
per-language numbers, the anchor (Meta Prompt Guard) and the classifier's latency per prompt.
``--write-model PATH`` saves the trained model (the package ships
``src/lingxi/guard/injection_model.json`` made this way)::

    python benchmarks/guard_injection.py --data-dir ../shared/data \
        --write-model src/lingxi/guard/injection_model.json \
        --technical /usr/share/doc/debian-policy/*.txt.gz /usr/share/doc/debian-policy/fhs/*.txt.gz \
        $(find /usr/share/common-licenses -maxdepth 1 -type f ! -type l | sort)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lingxi.guard.injection import (
    calibrate_document_threshold,
    document_windows,
    injection_metrics,
    load_model,
    read_labelled,
    scan_document,
    train_injection,
)

HERE = Path(__file__).parent / "data" / "guard"
ANCHOR = {"meta_prompt_guard_ood": {"tpr": 0.975, "fpr": 0.039}, "meta_prompt_guard_multilingual": {"tpr": 0.915, "fpr": 0.053}}


def _bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_sets(data_dir: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    train = read_labelled([data_dir / "prompt-injections-deepset" / "train.jsonl", HERE / "injection_train.jsonl"])
    held = read_labelled([data_dir / "prompt-injections-deepset" / "test.jsonl", HERE / "injection_heldout.jsonl"])

    def split(texts: list[str], train_share: float, limit: int | None = None) -> None:
        texts = [t.strip() for t in texts if t.strip()][:limit]
        for t in texts:
            (train if _bucket(t) < train_share else held).append((t, 0))

    belle = _jsonl(data_dir / "belle-zh-seed-tasks.json")
    split([r["instruction"] + ("\n" + r["instances"][0]["input"] if r["instances"][0].get("input") else "")
           for r in belle], 0.7)
    split([r["text"] for r in _jsonl(data_dir / "cmrc2018-trial-zh" / "queries.jsonl")], 0.5)
    firsts = []
    for r in _jsonl(data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl"):
        m = re.search(r"Human: (.*?)\n\nAssistant:", r["chosen"], re.S)
        if m:
            firsts.append(m.group(1))
    split(sorted(set(firsts)), 0.6, limit=1000)
    held.extend((r["text"], 0) for r in _jsonl(data_dir / "dbpedia-5k-en" / "queries.jsonl"))
    return train, held


def insert_injection(doc: str, injection: str, rng: random.Random) -> tuple[str, int]:
    """``doc`` with ``injection`` put in at a random sentence or word boundary (or anywhere), and where."""
    lo, hi = len(doc) // 4, max(len(doc) // 4 + 1, 3 * len(doc) // 4)
    cuts = [i + 1 for i in range(lo, hi) if doc[i] in ".。!?！？ \n"] or [rng.randint(0, len(doc))]
    at = rng.choice(cuts)
    sep = "" if re.search(r"[\u4e00-\u9fff]", injection) else " "
    return doc[:at] + sep + injection + sep + doc[at:], at + len(sep)


def python_docs(piece: int = 3000, technical: Sequence[Path] = ()) -> dict[str, list[str]]:
    """English technical prose: the docstrings of the standard library's modules, classes and
    functions (its tests left out), its text files (the licence, IDLE's README, NEWS and help) and
    the language reference's ``help()`` topics (the running Python's own files, so the same for
    every machine on one Python version), one document per module or topic cut into
    ``piece``-character documents, split by a hash of their name: 60 % training, 20 %
    calibration, 20 % held out.

    Ordinary documents an organisation indexes are not all encyclopedia abstracts: manuals,
    READMEs, licences and policies say "must", "ignore", "do not" and "instead" in every
    paragraph, and a model that had seen only DBpedia as English documents flagged most of them.

    ``technical`` adds English documents of that kind (plain text, or gzipped): each
    ``piece``-character piece split by a hash of its file name and number, so a long standard
    lends pieces to all three parts.
    """
    import ast
    import sysconfig

    from pydoc_data.topics import topics  # the language reference's help() topics

    root = Path(sysconfig.get_paths()["stdlib"])
    texts: list[tuple[str, str]] = sorted((f"topic:{name}", text) for name, text in topics.items())
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if set(rel.parts) & {"test", "tests", "idle_test", "site-packages", "dist-packages"}:
            continue
        if path.suffix == ".txt" and "Grammar" not in path.name:  # LICENSE, IDLE's README, NEWS, help
            texts.append((str(rel), path.read_text(encoding="utf-8", errors="replace")))
        elif path.suffix == ".py":
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            texts.append((str(rel), "\n\n".join(doc for node in ast.walk(tree)
                                                 if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                                      ast.AsyncFunctionDef))
                                                 and (doc := ast.get_docstring(node)))))
    out: dict[str, list[str]] = {"train": [], "calibration": [], "held": []}

    def part(name: str) -> str:
        b = _bucket(name)
        return "train" if b < 0.6 else "calibration" if b < 0.8 else "held"

    for name, text in texts:
        if len(text) < 400:
            continue
        out[part(name)].extend(text[i:i + piece] for i in range(0, len(text), piece) if len(text[i:i + piece]) >= 400)
    for path in sorted(technical, key=lambda p: p.name):  # the same model whatever order the shell gave
        data = path.read_bytes()
        text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8", errors="replace")
        for i in range(0, len(text), piece):
            if len(text[i:i + piece]) >= 400:
                out[part(f"{path.name}:{i}")].append(text[i:i + piece])
    return out


def build_documents(data_dir: Path, seed: int = 0, technical: Sequence[Path] = ()) -> dict[str, list]:
    """Training windows (negatives and injected positives), calibration and held-out documents.

    DBpedia abstracts by index: [0, 2000) training, [2000, 3000) calibration, [3000, 5000) held out;
    CMRC paragraphs: [0, 160) training, [160, 208) calibration, [208, 256) held out; the PRC Civil
    Code: training; the standard library's docstrings (:func:`python_docs`) by a hash. Windows of
    technical prose (and the injections put into it) are in ``tech_windows``: only the English
    document model learns from them.
    """
    rng = random.Random(seed)
    tech_rng = random.Random(seed + 1)  # its own, so adding technical text leaves every other window as it was
    en = [r["text"] for r in _jsonl(data_dir / "dbpedia-5k-en" / "corpus.jsonl")]
    zh = [r["text"] for r in _jsonl(data_dir / "cmrc2018-trial-zh" / "corpus.jsonl")]
    tech = python_docs(technical=technical)
    calib = en[2000:3000] + zh[160:208]
    held = [(d, "en") for d in en[3000:]] + [(d, "zh") for d in zh[208:]] + [(d, "tech") for d in tech["held"]]
    windows: list[tuple[str, int]] = []
    for d in en[:2000]:  # two windows of each English abstract
        spans = document_windows(d)
        windows.extend((d[a:b], 0) for a, b in rng.sample(spans, min(2, len(spans))))
    tech_windows = [(d[a:b], 0) for d in tech["train"] for a, b in document_windows(d)]
    # every window of the few Chinese paragraphs and of the PRC Civil Code (imperative "shall" prose)
    law = [f.read_text(encoding="utf-8") for f in sorted((data_dir / "prc-civil-code-zh").glob("*.md"))]
    zh_docs = zh[:160] + [d[a:b + 200] for d in law for a, b in document_windows(d, 800, 800)]
    for d in zh_docs:
        windows.extend((d[a:b], 0) for a, b in document_windows(d))
    inj_train = [t for t, y in read_labelled([data_dir / "prompt-injections-deepset" / "train.jsonl",
                                              HERE / "injection_train.jsonl"]) if y == 1]
    for inj in inj_train:  # each training injection inside a training document, as a scanned window sees it
        chinese = bool(re.search(r"[\u4e00-\u9fff]", inj))
        for n in range(1 if chinese else 3):  # an English one in two abstracts and in technical prose
            r = rng if n < 2 else tech_rng
            doc = r.choice(zh_docs if chinese else en[:2000] if n < 2 else tech["train"])
            text, at = insert_injection(doc, inj, r)
            start = max(0, min(at - r.randint(0, max(0, 400 - len(inj))), len(text) - 400))
            (windows if n < 2 else tech_windows).append((text[start:start + 400], 1))
    inj_held = [t for t, y in read_labelled([data_dir / "prompt-injections-deepset" / "test.jsonl",
                                             HERE / "injection_heldout.jsonl"]) if y == 1]
    injected = []
    for inj in inj_held:
        langs = ["zh"] * 3 if re.search(r"[\u4e00-\u9fff]", inj) else ["en", "en", "en", "tech"]
        for lang in langs:
            pool = [d for d, lg in held if lg == lang]
            r = tech_rng if lang == "tech" else rng
            injected.append((insert_injection(r.choice(pool), inj, r)[0], lang))
    return {"train_windows": windows, "tech_windows": tech_windows, "calibration": calib,
            "tech_calibration": tech["calibration"], "held_ordinary": held, "held_injected": injected}


def document_eval(model, docs: dict[str, list]) -> dict:
    """FPR on held-out ordinary documents and TPR on injected ones, by ``scan_document``, per language.
    A document's score is its worst window's margin over that window's language threshold, so
    the ROC numbers (AUC, TPR at 5 % FPR) read the same decision the scan makes."""
    out: dict = {"document_threshold": {lang: round(m.meta["document_threshold"], 4)
                                        for lang, m in model.documents.items()} or round(model.document_threshold, 4)}

    def margin(d: str) -> float:
        found = scan_document(d, model)
        return found.score - model.window_threshold(d[found.start:found.end])

    ordinary = [(margin(d), lg) for d, lg in docs["held_ordinary"]]
    injected = [(margin(d), lg) for d, lg in docs["held_injected"]]
    thr = 0.0
    for lang in ("en", "zh", "tech", "all"):
        neg = [s for s, lg in ordinary if lang in ("all", lg)]
        pos = [s for s, lg in injected if lang in ("all", lg)]
        m = injection_metrics([0] * len(neg) + [1] * len(pos), neg + pos, thr)
        out[lang] = {"fpr": round(m["fpr"], 4), "tpr": round(m["tpr"], 4), "tpr_at_fpr_05": round(m["tpr_at_fpr_05"], 4),
                     "auc": round(m["auc"], 4), "ordinary_docs": len(neg), "injected_docs": len(pos)}
    return out


def _lang(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en/de"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, type=Path, help="the shared public data folder")
    ap.add_argument("--write-model", type=Path, default=None, help="save the trained model here")
    ap.add_argument("--model", type=Path, default=None, help="evaluate this model instead of training one")
    ap.add_argument("--technical", type=Path, nargs="*", default=[],
                    help="more English technical documents (text or .gz) for the English document model")
    ap.add_argument("--document-fpr", type=float, default=0.02,
                    help="ordinary-document false-positive rate the document threshold is calibrated to")
    args = ap.parse_args()

    train, held = build_sets(args.data_dir)
    docs = build_documents(args.data_dir, technical=args.technical)
    t0 = time.perf_counter()
    if args.model:
        model = load_model(args.model)
    else:  # one model for prompts, one per language for document windows (see lingxi.guard.injection)
        meta = {"trained_by": "benchmarks/guard_injection.py"}
        model = train_injection(train, meta=meta | {"for": "prompts"})
        model.documents = {
            "zh": train_injection(train, extra=docs["train_windows"], meta=meta | {"for": "Chinese document windows"}),
            "en": train_injection(train, extra=docs["train_windows"] + docs["tech_windows"],
                                  meta=meta | {"for": "English document windows"})}
        # each on ordinary documents of the kinds it learnt from
        calibrate_document_threshold(model.documents["zh"], docs["calibration"], target_fpr=args.document_fpr)
        calibrate_document_threshold(model.documents["en"], docs["calibration"] + docs["tech_calibration"],
                                     target_fpr=args.document_fpr)
        if args.write_model:
            model.save(args.write_model)
    train_s = time.perf_counter() - t0
    texts = [t for t, _y in held]
    labels = [y for _t, y in held]
    t0 = time.perf_counter()
    scores = [model.score(t) for t in texts]
    per_prompt_ms = (time.perf_counter() - t0) / len(texts) * 1000
    result = {
        "train": {"prompts": len(train), "injections": sum(y for _t, y in train),
                  "document_windows": len(docs["train_windows"]), "technical_windows": len(docs["tech_windows"]),
                  "injected_windows": sum(y for _t, y in docs["train_windows"] + docs["tech_windows"]),
                  "seconds": round(train_s, 1)},
        "heldout": {k: round(v, 4) if isinstance(v, float) else v
                    for k, v in injection_metrics(labels, scores, model.threshold).items()},
        "by_language": {},
        "latency_ms_per_prompt": round(per_prompt_ms, 3),
        "anchor": ANCHOR,
        "target": "tpr >= 0.90 at fpr <= 0.05",
        "features": model.meta.get("features"),
    }
    for lang in ("zh", "en/de"):
        sel = [(y, s) for t, y, s in zip(texts, labels, scores) if _lang(t) == lang]
        if {y for y, _s in sel} == {0, 1}:
            m = injection_metrics([y for y, _s in sel], [s for _y, s in sel], model.threshold)
            result["by_language"][lang] = {k: round(m[k], 4) for k in ("tpr", "fpr", "tpr_at_fpr_05", "tpr_at_fpr_01", "auc")} | {
                "positives": m["positives"], "negatives": m["negatives"]}
    result["documents"] = document_eval(model, docs)
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    print()


if __name__ == "__main__":
    main()
