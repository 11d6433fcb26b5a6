"""The same weights through both perplexity backends: llama.cpp logits vs transformers logits.

The bundled SmolLM2-135M GGUF (Q4_1) is read by llama.cpp directly and by transformers
dequantised to float32; with ``--f16 FILE`` an F16 widening of it (``lingxi.compress.gguf.to_f16``)
is compared too. Held-out text: the first documents of DBpedia-5k in the shared data folder.

Usage::

    python benchmarks/eval_perplexity.py DATA_DIR [--max-tokens 1024] [--context 512] [--stride 256] [--f16 FILE]

Prints one JSON object; target (issue 16): the two backends within 1 % of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from compress import held_out_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--f16", type=Path, default=None, help="An F16 GGUF of the same model to compare as well.")
    args = parser.parse_args()

    from lingxi.engines.bundled import smollm2_gguf
    from lingxi.evaluate.perplexity import evaluate_perplexity

    text = held_out_text(args.data_dir, Path(tempfile.mkdtemp()) / "held_out_en.txt")
    models = {"Q4_1 (bundled)": smollm2_gguf(), **({"F16": args.f16} if args.f16 else {})}
    out = {}
    for label, path in models.items():
        row = {}
        for backend in ("llamacpp", "transformers"):
            start = time.perf_counter()
            run = evaluate_perplexity(str(path), text, backend=backend, context=args.context, stride=args.stride,
                                      max_tokens=args.max_tokens, threads=args.threads, progress=False)
            row[backend] = {"perplexity": round(run.summary["perplexity"], 4), "tokens": run.summary["tokens"],
                            "seconds": round(time.perf_counter() - start, 1)}
        a, b = row["llamacpp"]["perplexity"], row["transformers"]["perplexity"]
        row["difference_pct"] = round(100 * abs(a - b) / b, 3)
        row["target"] = "<= 1 %"
        row["met"] = row["difference_pct"] <= 1.0
        out[label] = row
    print(json.dumps({"model": "SmolLM2-135M-Instruct", "context": args.context, "stride": args.stride,
                      "load_avg_1m": os.getloadavg()[0], "results": out}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
