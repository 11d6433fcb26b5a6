"""``kb ask`` latency before and after the answer rewrite (issue 12), side by side in one process.

    python benchmarks/kb_answers_latency.py DATA_DIR --old-src OLD_CHECKOUT/src [--n 30]

``OLD_CHECKOUT`` is a checkout of the code before the rewrite (for example
``git worktree add ../old f5d4da9^``): its ``kb.answer`` always generated with the bundled model,
then ran the old word-overlap check. Both versions are imported into this one process (their
modules are swapped in before each call), each builds its own scratch knowledge base over the
same documents with the same embedder, loads the bundled SmolLM2 and answers the same questions,
alternating which version goes first, so machine load falls on both alike.

Questions: Chinese, CMRC 2018 trial questions ``i % 10 == 5`` (the held-out part) over their
paragraphs; English, ``benchmarks/data/answers/qa_en_dbpedia.jsonl`` over its DBpedia abstracts.
Prints one JSON object: per language and version, ``kb.answer`` p50/p95 in seconds, and the
ratio new/old at p50 (issue 12's target: at most 1.2 for the default mode).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent / "data" / "answers"
NEW_SRC = Path(__file__).resolve().parent.parent / "src"


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _purge() -> None:
    for name in [m for m in sys.modules if m == "lingxi" or m.startswith("lingxi.")]:
        del sys.modules[name]


def _import(src: Path) -> dict:
    """Import ``lingxi`` from ``src`` (ahead of the installed one) and return its modules."""
    _purge()
    finders = [f for f in sys.meta_path if "editable" in type(f).__name__.lower() or "editable" in repr(f).lower()]
    for f in finders:
        sys.meta_path.remove(f)
    sys.path.insert(0, str(src))
    try:
        for name in ("lingxi", "lingxi.config", "lingxi.engines", "lingxi.knowledge.kb",
                     "lingxi.knowledge.types", "lingxi.engines.base"):
            importlib.import_module(name)
    finally:
        sys.path.remove(str(src))
        sys.meta_path[0:0] = finders
    loaded = {m: mod for m, mod in sys.modules.items() if m == "lingxi" or m.startswith("lingxi.")}
    where = Path(loaded["lingxi"].__file__).resolve()
    if src.resolve() not in where.parents:
        sys.exit(f"lingxi was imported from {where}, not from {src}")
    return loaded


def _activate(mods: dict) -> None:
    _purge()
    sys.modules.update(mods)


def _docs(mods: dict, rows: list[dict]) -> list:
    t = mods["lingxi.knowledge.types"]
    return [t.Document(key=r["_id"], source=r["_id"], title=r.get("title", ""),
                       blocks=[t.Block(r["text"].split(" @en <http")[0])]) for r in rows]


def corpus(data: Path, lang: str, n: int) -> tuple[list[dict], list[str]]:
    if lang == "zh":
        qa = _read(data / "cmrc2018-trial-zh" / "qa.jsonl")
        picked = [q for i, q in enumerate(qa) if i % 10 == 5][:n]
        wanted = {q["context_id"] for q in picked}
        rows = [r for r in _read(data / "cmrc2018-trial-zh" / "corpus.jsonl") if r["_id"] in wanted]
        return rows, [q["question"] for q in picked]
    qa = _read(HERE / "qa_en_dbpedia.jsonl")[:n]
    wanted = {q["doc"] for q in qa}
    rows = [r for r in _read(data / "dbpedia-5k-en" / "corpus.jsonl") if r["_id"] in wanted]
    return rows, [q["question"] for q in qa]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--old-src", type=Path, required=True, help="src/ of a checkout from before the rewrite")
    ap.add_argument("--n", type=int, default=30, help="questions per language")
    ap.add_argument("--langs", default="zh,en")
    ap.add_argument("--modes", default="auto,generate", help="new-code answer modes to time")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    sides = {"old": _import(args.old_src), "new": _import(NEW_SRC)}
    tmp = Path(tempfile.mkdtemp(prefix="lingxi-kb-latency-"))
    result: dict = {"load": os.getloadavg()[0], "n": args.n}
    engines = {}
    for side, mods in sides.items():
        _activate(mods)
        settings = mods["lingxi.config"].parse_config({"home": str(tmp / side / "home")})
        engines[side] = (settings, mods["lingxi.engines"].load_engine("smollm2", settings))
    for lang in args.langs.split(","):
        rows, questions = corpus(args.data, lang, args.n)
        kbs = {}
        for side, mods in sides.items():
            _activate(mods)
            settings, _ = engines[side]
            kb = mods["lingxi.knowledge.kb"].scratch_kb(settings, tmp / side / lang, embedder="e5-small")
            kb.ingest_documents(_docs(mods, rows), progress=False)
            kbs[side] = kb
        runs = [("old", None)] + [("new", m) for m in modes]
        times: dict[str, list[float]] = {f"{s}" if m is None else f"{s}:{m}": [] for s, m in runs}

        def ask(side: str, mode: str | None, question: str) -> float:
            _activate(sides[side])
            kwargs = {} if mode is None else {"mode": mode}
            start = time.perf_counter()
            kbs[side].answer(question, engines[side][1], **kwargs)
            return time.perf_counter() - start

        for side, mode in runs:  # warm: model, indexes, jieba
            ask(side, mode, questions[0])
        for i, q in enumerate(questions):
            order = runs if i % 2 == 0 else runs[::-1]
            for side, mode in order:
                times[side if mode is None else f"{side}:{mode}"].append(ask(side, mode, q))
        out = {name: {"p50_s": round(statistics.median(t), 3),
                      "p95_s": round(sorted(t)[int(0.95 * (len(t) - 1))], 3)} for name, t in times.items()}
        old = out["old"]["p50_s"]
        for name in out:
            if name != "old":
                out[name]["p50_vs_old"] = round(out[name]["p50_s"] / old, 3) if old else None
        result[lang] = {"documents": len(rows), "questions": len(questions), **out}
        for kb in kbs.values():
            kb.close()
        print(json.dumps({lang: out}), file=sys.stderr)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
