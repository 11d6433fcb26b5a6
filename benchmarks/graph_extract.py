"""Facts extracted from text by a model, against the facts the text was written from.

    python benchmarks/graph_extract.py [--model NAME] [--diseases 20] [--lang en|zh] [--open-labels]
        [--measure-untrusted]

The synthetic pharmacology world of ``benchmarks/graph.py`` (each disease treated by one drug,
each drug metabolized by one enzyme, each disease with a symptom) is written as one short
document per disease, three sentences each, ingested into a scratch knowledge base, and read
back with ``lingxi graph extract``'s code (:func:`lingxi.graph.extract.extract`). By default the
model may use only the world's relations and types (``--relations``/``--types``, enums in the
JSON Schema a llama.cpp engine decodes under); ``--open-labels`` lets it name its own.

Reported: chunks read, triples proposed, rejected by the checks (the quote rule and the
labels), kept; precision and recall of the kept facts against the gold ``(head, relation,
tail)`` facts; then the 2- and 3-hop questions of ``benchmarks/graph.py`` asked of the extracted
graph (exact match), so the numbers say what a user of the graph would get.

The bundled SmolLM2-135M is refused by extraction (too small to be trusted to write);
``--measure-untrusted`` hides its size for this run only, to measure what the gate keeps out
and how much of it the quote rule alone would catch. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from graph import labels, world  # noqa: E402  (the world and label words of the graph benchmark)

from lingxi.config import load_config  # noqa: E402
from lingxi.engines import load_engine  # noqa: E402
from lingxi.engines.base import ModelInfo  # noqa: E402
from lingxi.graph.answer import GraphIndex, ask  # noqa: E402
from lingxi.graph.extract import extract  # noqa: E402
from lingxi.knowledge.kb import scratch_kb  # noqa: E402
from lingxi.knowledge.types import Block, Document  # noqa: E402

RELATIONS = ["TREATS", "METABOLIZED_BY", "HAS_SYMPTOM"]
TYPES = ["Drug", "Disease", "Enzyme", "Symptom"]


class Unsized:
    """An engine seen without its parameter count (``--measure-untrusted`` only)."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    @property
    def info(self) -> ModelInfo:
        info = self._engine.info
        return ModelInfo(name=info.name, engine=info.engine, context_length=info.context_length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--diseases", type=int, default=20)
    ap.add_argument("--lang", choices=["en", "zh"], default="en")
    ap.add_argument("--open-labels", action="store_true", help="let the model name its own relations and types")
    ap.add_argument("--measure-untrusted", action="store_true",
                    help="hide the model's size so a model too small to be trusted runs (measurement only)")
    args = ap.parse_args()
    zh = args.lang == "zh"
    triples, sentences, questions = world(args.diseases, zh)
    answerable = [q for q in questions if q["gold"] is not None]
    gold = {(t.head, t.relation, t.tail) for t in triples[:3 * args.diseases]}  # not the unanswerable set's
    settings = load_config(None)
    engine = load_engine(args.model, settings)
    if args.measure_untrusted:
        engine = Unsized(engine)
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    out: dict = {"model": args.model, "lang": args.lang, "diseases": args.diseases,
                 "labels": "open" if args.open_labels else "the world's", "untrusted_measured": args.measure_untrusted}
    with tempfile.TemporaryDirectory() as tmp:
        kb = scratch_kb(settings, Path(tmp) / "kb", embedder="e5-small" if zh else "minilm")
        # one document per disease: its three sentences (the world writes them in that order)
        docs = [Document(key=f"d{i}", source=f"d{i}.txt", title="",
                         blocks=[Block(("" if zh else " ").join(sentences[3 * i:3 * i + 3]))])
                for i in range(args.diseases)]
        kb.ingest_documents(docs, whole=True, progress=False)
        graph = KuzuGraphStore(Path(tmp) / "graph")
        graph.write([], labels())
        start = time.perf_counter()
        report = extract(kb, graph, engine, graph_name="bench", model_name=args.model,
                         relations=() if args.open_labels else RELATIONS, types=() if args.open_labels else TYPES,
                         progress=False)
        out["extract_seconds"] = round(time.perf_counter() - start, 1)
        graph.close()
        reader = KuzuGraphStore(Path(tmp) / "graph", read_only=True)
        keys = [n.key for n in reader.nodes() if n.type != "LingxiLabel"]
        kept = {(e.head, e.relation, e.tail) for e in reader.neighbors(keys, None)}
        index = GraphIndex(reader.nodes())
        right = {2: [], 3: []}
        for q in answerable:
            right[q["hops"]].append(ask(reader, q["q"], index=index).answers == [q["gold"]])
        reader.close()
        kb.close()
    out["extraction"] = {"chunks_read": report.read, "proposed": report.proposed, "rejected": report.rejected,
                         "kept": report.kept, "first_reasons": report.reasons[:5]}
    out["facts"] = {"gold": len(gold), "in_graph": len(kept), "correct": len(kept & gold),
                    "precision": round(len(kept & gold) / len(kept), 3) if kept else None,
                    "recall": round(len(kept & gold) / len(gold), 3)}
    out["questions_on_extracted_graph"] = {f"{h}hop": round(sum(v) / len(v), 3) if v else None
                                           for h, v in right.items()} | {"n": len(answerable)}
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
