"""Tree navigation against hybrid top-k on a long structured document: does it cite the right section?

    python benchmarks/navigation.py DATA_DIR [--k 5] [--model smollm2] [--home DIR] [--limit N]
        [--english RUST_REFERENCE_PRINT_HTML] [--policy DEBIAN_POLICY_PDF] [--questions FILE]
        [--questions-en FILE] [--unanswerable FILE] [--embedder NAME] [--trust-model]

DATA_DIR is the project's shared public data folder; the document is ``prc-civil-code-zh/`` (the
PRC Civil Code, 8 markdown files, 1,260 articles), the questions
``benchmarks/data/navigation/civil_code_zh.jsonl`` (45 everyday-worded questions, each with its gold
第X条 article(s), written before anything was measured).

Both retrievers run over one knowledge base, in one process, question by question:

- ``hybrid``: ``kb.search(mode="hybrid", k)``; a hit cites the right section when its chunk holds
  (part of) a gold article (a chunk may pack several articles: a generous reading for hybrid);
- ``navigate``: ``kb.navigate(k=k)`` with ``--model`` as the chooser; with the bundled SmolLM2
  (too small to be trusted) the prefilter scorer chooses at every level (the scorer fallback). A
  leaf is one article.

``--english`` adds The Rust Reference (``share/doc/rust/html/reference/print.html`` of a rustup
toolchain; MIT/Apache-2.0) with ``benchmarks/data/navigation/rust_reference_en.jsonl`` (25
questions, each with the title of the section that answers it): a result cites the right section
when that heading is on its heading path.

``--policy`` adds the Debian Policy Manual, a standard (``policy.pdf``, unzipped from Debian's
``debian-policy`` package's ``/usr/share/doc/debian-policy/policy.pdf.gz``; GPL-2+; 193 pages), read
as the PDF it is, with ``benchmarks/data/navigation/debian_policy_en.jsonl`` (30 questions, each
with the number of the section that answers it): a result cites the right section when a heading
on its path starts with that number.

``--trust-model`` lets ``--model`` choose at every level even when it is too small to be trusted
(the bundled SmolLM2 is): the model-chosen path, measured with the model there is.

``--sweep`` also reports, per document, hybrid's first result with BM25's fusion weight fixed at
0, 0.25, 0.5, 0.75 and 1 (``sweep_top1``), and the corroboration statistics the hybrid learnt
from the questions (``fusion``: t, effect size d, the weight it chose; see
:mod:`lingxi.knowledge.fusion`).

Reported per retriever: ``top1`` (the first result cites a gold article), ``any`` (one of the k
results does), ``latency_ms`` p50/p95 of the retrieval call, ``articles_in_top1`` (how many articles
the first citation spans: a hybrid chunk packs several, a navigation leaf is one); for answers (``kb.answer``, answer
mode auto with the model) the share answered with ``supported: true`` and, of those, the share whose
citations include a gold article, and the share of ``--unanswerable`` questions refused
(``unknown_on_unanswerable``: 20 legal questions the Civil Code does not answer, on criminal,
tax, traffic and labour law, written before measuring). Also the ingest seconds (chunks, embeddings and trees) and the
machine load at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from lingxi.config import parse_config
from lingxi.engines import load_engine
from lingxi.knowledge.kb import scratch_kb
from lingxi.knowledge.tree import chinese_number

QUESTIONS = Path(__file__).parent / "data" / "navigation" / "civil_code_zh.jsonl"
QUESTIONS_EN = Path(__file__).parent / "data" / "navigation" / "rust_reference_en.jsonl"
QUESTIONS_POLICY = Path(__file__).parent / "data" / "navigation" / "debian_policy_en.jsonl"
UNANSWERABLE = Path(__file__).parent / "data" / "navigation" / "civil_code_zh_unanswerable.txt"
_ARTICLE = re.compile(r"(?m)^第([零〇一二两三四五六七八九十百千]+)条")


def articles(text: str) -> set[int]:
    """Article numbers whose text starts in ``text`` (第X条 at the start of a line)."""
    return {n for m in _ARTICLE.finditer(text) if (n := chinese_number(m.group(1))) is not None}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default="smollm2", help="chat model that chooses (navigate) and answers")
    ap.add_argument("--home", type=Path, default=None, help="Lingxi home (its embedding cache makes reruns fast)")
    ap.add_argument("--questions", type=Path, default=QUESTIONS)
    ap.add_argument("--questions-en", type=Path, default=QUESTIONS_EN,
                    help="English questions (rust_reference_en_dev.jsonl: the development set)")
    ap.add_argument("--unanswerable", type=Path, default=UNANSWERABLE,
                    help="questions the Civil Code does not answer, one per line")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--no-answers", action="store_true", help="retrieval only, no kb.answer calls")
    ap.add_argument("--english", type=Path, default=None, help="The Rust Reference's print.html")
    ap.add_argument("--policy", type=Path, default=None, help="the Debian Policy Manual's policy.pdf")
    ap.add_argument("--questions-policy", type=Path, default=QUESTIONS_POLICY)
    ap.add_argument("--only-english", action="store_true", help="skip the Civil Code")
    ap.add_argument("--trust-model", action="store_true",
                    help="let --model choose at every level even when it is too small to be trusted (the "
                         "model-chosen path measured with whatever model there is; answers are unchanged)")
    ap.add_argument("--sweep", action="store_true", help="hybrid's first result at fixed BM25 fusion weights")
    ap.add_argument("--embedder", default=None,
                    help="the knowledge bases' embedder (default: what a new one chooses: e5-small for the "
                         "Civil Code, MiniLM for the Rust Reference); e.g. minilm+e5")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="lingxi-nav-"))
    # The injection scan of ingested chunks is not what is measured here (it doubles ingest time).
    settings = parse_config({"home": str(home), "knowledge": {"scan_injection": False}})
    engine = load_engine(args.model, settings)
    chooser = _Trusted(engine) if args.trust_model else engine
    out: dict = {"k": args.k, "model": args.model, "load_start": os.getloadavg()[0]}
    if not args.only_english:
        questions = _read(args.questions, args.limit)
        unanswerable = [line.strip() for line in args.unanswerable.read_text(encoding="utf-8").splitlines() if line.strip()]
        out["zh"] = run(settings, engine, chooser, args.data / "prc-civil-code-zh", questions, args,
                        "prc-civil-code-zh", unanswerable)
    if args.english:
        questions = _read(args.questions_en, args.limit)
        out["en"] = run(settings, engine, chooser, args.english, questions, args, "rust-reference")
    if args.policy:
        questions = _read(args.questions_policy, args.limit)
        out["policy"] = run(settings, engine, chooser, args.policy, questions, args, "debian-policy")
    out["load_end"] = os.getloadavg()[0]
    print(json.dumps(out, ensure_ascii=False, indent=1))


def _read(path: Path, limit: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[: limit or None]


class _Trusted:
    """``engine`` with its parameter count hidden, so navigation lets it choose whatever its size."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    @property
    def info(self):
        info = self._engine.info
        return replace(info, details={k: v for k, v in info.details.items() if k != "n_params"})


def run(settings, engine, chooser, source: Path, questions: list[dict], args, label: str,
        unanswerable: list[str] | None = None) -> dict:
    """Both retrievers over one knowledge base of ``source``, question by question; ``chooser``
    chooses during navigation (``engine`` itself, or it trusted whatever its size)."""
    out: dict = {"document": label, "questions": len(questions)}
    with tempfile.TemporaryDirectory() as tmp:
        kb = scratch_kb(settings, Path(tmp) / "doc", embedder=args.embedder)
        start = time.perf_counter()
        report = kb.ingest([source], progress=False)
        out["ingest"] = {"seconds": round(time.perf_counter() - start, 1), "chunks": kb.stats()["chunks"],
                         "tree_nodes": len(kb.store.tree(None)), "summaries_made": report.summaries_made,
                         "embedder": kb.embedder_name, "errors": report.errors}
        # Which articles each chunk holds part of (through the tree's leaf -> chunk links), so a chunk
        # that starts in the middle of an article still counts for it.
        in_chunk: dict[str, set[int]] = {}
        for node in kb.store.tree(None):
            for cid in node.chunks:
                in_chunk.setdefault(cid, set()).update(articles(node.text))

        def cites(hit, q) -> bool:
            if "gold_section" in q:
                return q["gold_section"] in hit.headings
            if "gold_number" in q:
                return any(h.startswith(q["gold_number"] + " ") for h in hit.headings)
            return bool((in_chunk.get(hit.id) or articles(hit.text)) & set(q["gold"]))

        kb.navigate(questions[0]["question"])  # warm: the tree index and the embedder are loaded once
        runs: dict[str, dict] = {name: {"top1": 0, "any": 0, "t": [], "width": []} for name in ("hybrid", "navigate")}
        per_question = []
        for q in questions:
            row: dict = {"id": q["id"]}
            t0 = time.perf_counter()
            hybrid = kb.search(q["question"], mode="hybrid", k=args.k)
            runs["hybrid"]["t"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            nav = kb.navigate(q["question"], engine=chooser, k=args.k)
            runs["navigate"]["t"].append(time.perf_counter() - t0)
            lists = {"hybrid": hybrid, "navigate": kb.navigation_hits(nav)}
            for name, hits in lists.items():
                found = [cites(h, q) for h in hits]
                runs[name]["top1"] += bool(found and found[0])
                runs[name]["any"] += any(found)
                if hits and "gold" in q:  # how many articles the first citation spans
                    runs[name]["width"].append(len(in_chunk.get(hits[0].id) or articles(hits[0].text)))
                row[name] = {"top1": bool(found and found[0]), "any": any(found), "first": hits[0].id if hits else None}
            row["navigate"]["by"] = sorted({s["by"] for s in nav.scratchpad})
            runs["navigate"].setdefault("model_levels", []).append(sum(s["by"] == "model" for s in nav.scratchpad))
            runs["navigate"].setdefault("levels", []).append(len(nav.scratchpad))
            per_question.append(row)
            print(f"{label} {q['id']}: hybrid {row['hybrid']['any']} navigate {row['navigate']['any']}", file=sys.stderr)
        for name, r in runs.items():
            out[name] = {"top1": round(r["top1"] / len(questions), 3), "any": round(r["any"] / len(questions), 3),
                         "latency_ms_p50": pct(r["t"], 0.5), "latency_ms_p95": pct(r["t"], 0.95),
                         "articles_in_top1": round(sum(r["width"]) / len(r["width"]), 2) if r["width"] else None}
            if "levels" in r:  # how many of navigation's choices the model made (the rest: the scorer)
                out[name]["levels_chosen_by_model"] = f"{sum(r['model_levels'])} of {sum(r['levels'])}"
        if not args.no_answers:
            for name in ("hybrid", "navigate"):
                answered = correct = 0
                for q in questions:
                    a = kb.answer(q["question"], engine, k=args.k, retrieval=name)
                    if a.supported:
                        answered += 1
                        correct += any(cites(h, q) for h in a.hits if h.id in {c.id for c in a.citations})
                out[name]["answered"] = round(answered / len(questions), 3)
                out[name]["answered_cite_gold"] = round(correct / answered, 3) if answered else None
                if unanswerable:
                    refused = sum(not kb.answer(u, engine, k=args.k, retrieval=name).supported for u in unanswerable)
                    out[name]["unknown_on_unanswerable"] = round(refused / len(unanswerable), 3)
        if args.sweep:
            out["fusion"] = kb.fusion.to_dict()
            out["sweep_top1"] = _sweep(kb, questions, cites)
        out["per_question"] = per_question
        kb.close()
    return out


def _sweep(kb, questions: list[dict], cites) -> dict[str, int]:
    """How many questions hybrid's first result cites the right section for, with BM25's fusion
    weight fixed (hybrid's own fusion, only the weights given). With a concatenated embedder the
    hybrid fuses BM25 with each member's ranking; those share the rest of the weight equally."""
    from lingxi.knowledge.retrievers import HybridRetriever, Query

    hybrid = HybridRetriever()
    dense = max(len(kb.embedder_members()), 1)
    right = {w: 0 for w in (0.0, 0.25, 0.5, 0.75, 1.0)}
    for q in questions:
        query = Query(q["question"], kb)
        for w in right:
            first = hybrid.search(kb, query, 1, None, None, learn=False, weights=[w] + [(1.0 - w) / dense] * dense)
            right[w] += bool(first and cites(kb.store.hits(first)[0], q))
    return {f"w_bm25={w}": n for w, n in right.items()}


if __name__ == "__main__":
    main()
