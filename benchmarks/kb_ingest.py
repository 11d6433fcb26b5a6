"""Ingest overhead over the raw cost of embedding the same chunks, and the cost of re-ingesting
an unchanged folder.

Usage: python benchmarks/kb_ingest.py [--files 200] [--embedder minilm]

Writes a folder of Markdown/text files (English and Chinese paragraphs), then measures with a
warm embedder: (1) raw: chunk the files and call ``embedder.embed`` on every chunk in batches
of 64, nothing else; (2) ``kb.ingest`` of the folder into a new knowledge base with an empty
embedding cache (loading, chunking, tokenising, embedding, SQLite writes, BM25/vector index
build); (3) ``kb.ingest`` again on the unchanged folder. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EN = ("The committee reviewed the annual budget and approved new funding for the research program. "
      "Engineers replaced the pumps at the water station after the inspection found worn seals. "
      "Customers can return products within thirty days if the receipt is kept. ")
ZH = "委员会审议了年度预算，并批准了研究项目的新经费。检查发现密封件磨损后，工程师更换了水站的水泵。保留收据的顾客可在三十日内退货。"


def write_folder(root: Path, files: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(files):
        zh = i % 2 == 1
        parts = [f"# {'文档' if zh else 'Document'} {i}"]
        for s in range(4):
            parts.append(f"## {'章节' if zh else 'Section'} {s}")
            for _ in range(3):
                base = ZH if zh else EN
                cut = int(rng.integers(0, len(base) // 2))
                parts.append(f"{base[cut:]}{base[:cut]} {i}-{s}-{int(rng.integers(10**6))}")
        (root / f"doc{i:04d}.md").write_text("\n\n".join(parts), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--embedder", default="minilm")
    args = ap.parse_args()

    from lingxi.config import parse_config
    from lingxi.engines import load_embedder
    from lingxi.knowledge.chunking import chunk_document
    from lingxi.knowledge.kb import create_kb
    from lingxi.knowledge.loaders import iter_files, load_file

    with tempfile.TemporaryDirectory(prefix="lingxi-ingest-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        write_folder(folder, args.files)
        settings = parse_config({"home": str(Path(tmp) / "home"), "knowledge": {"embedder": args.embedder}})
        embedder = load_embedder(args.embedder, settings)
        embedder.embed(["warm up the model"], kind="passage")

        t = time.perf_counter()
        texts = []
        for n, (path, _) in enumerate(iter_files([folder]), 1):
            for doc in load_file(path, max_bytes=2**30):
                texts += [c.search_text for c in chunk_document(doc, n)]
        prep = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(0, len(texts), 64):
            embedder.embed(texts[i:i + 64], kind="passage")
        raw = time.perf_counter() - t

        kb = create_kb("bench", settings)
        t = time.perf_counter()
        first = kb.ingest([folder], progress=False)
        ingest = time.perf_counter() - t
        t = time.perf_counter()
        again = kb.ingest([folder], progress=False)
        reingest = time.perf_counter() - t
        kb.close()
    out = {
        "files": args.files, "chunks": len(texts), "embedder": args.embedder,
        "raw_embedding_s": round(raw, 2), "load_and_chunk_s": round(prep, 2),
        "ingest_s": round(ingest, 2), "overhead_vs_raw_embedding": round(ingest / raw - 1, 4),
        "chunks_embedded": first.chunks_embedded,
        "reingest_unchanged_s": round(reingest, 3), "reingest_chunks_embedded": again.chunks_embedded,
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
