"""bitsandbytes 8/4-bit on the bundled SmolLM2-135M, on the CPU, before/after.

The bundled GGUF is dequantised to a float32 Hugging Face folder once (the baseline, as
``lingxi compress bnb`` does), and bitsandbytes quantises that to each method: LLM.int8, NF4,
FP4 and NF4 with double quantisation. Every folder is profiled in its own child process through
Lingxi's transformers engine, as ``benchmarks/compress.py`` profiles the GGUF files: size on disk,
peak RSS, greedy decode tokens/s, perplexity on the same held-out DBpedia text, and fidelity
(chrF of the answers to 4 prompts against the float32 model's answers).

Usage::

    python benchmarks/compress_bnb.py DATA_DIR [--methods int8,nf4,fp4,nf4-dq] [--max-tokens 512]
                                               [--out DIR] [--threads N]

DATA_DIR holds ``dbpedia-5k-en/corpus.jsonl``. Prints one JSON object. Issue 16 asks for
bitsandbytes 8/4-bit with its cost reported; its size target (4-bit: 75 % smaller than 16-bit
weights) is checked on the quantised layers, since the tied embedding stays float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from compress import held_out_text

#: method -> quantize_bnb keyword arguments
METHODS = {"int8": {"bits": 8}, "nf4": {"bits": 4, "quant_type": "nf4"}, "fp4": {"bits": 4, "quant_type": "fp4"},
           "nf4-dq": {"bits": 4, "quant_type": "nf4", "double_quant": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--methods", default="int8,nf4,fp4,nf4-dq")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="Keep the folders and reports here.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    args = parser.parse_args()
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")

    from lingxi.compress.bnb import quantize_bnb
    from lingxi.compress.report import before_after, profile
    from lingxi.config import parse_config

    work = args.out or Path(tempfile.mkdtemp(prefix="lingxi-bnb-"))
    work.mkdir(parents=True, exist_ok=True)
    text = held_out_text(args.data_dir, work / "held_out_en.txt")
    common = {"backend": "transformers", "data": text, "max_tokens": args.max_tokens, "threads": args.threads}
    base, source = None, "smollm2"
    table: dict[str, dict] = {}
    for method in args.methods.split(","):
        q = quantize_bnb(source, work / f"smollm2.bnb-{method}", settings=parse_config({}), threads=args.threads,
                         **METHODS[method])
        source = q["baseline"]  # the float32 folder, dequantised once
        if base is None:
            base = profile(q["baseline"], label="float32", **common)
            table["float32"] = {"size_mib": round(base.summary["size_mib"], 1), "x_smaller": 1.0,
                                "perplexity": round(base.summary["perplexity"], 3),
                                "decode_tokens_per_s": round(base.summary["decode_tokens_per_s"], 1),
                                "peak_rss_mib": round(base.summary["peak_rss_mib"], 1)}
        r = before_after(base, profile(q["output"], label=method, **common), work / f"report-{method}")
        a = r["after"]
        table[method] = {"size_mib": round(a["size_mib"], 1), "x_smaller": round(r["size_ratio"], 2),
                         "perplexity": round(a["perplexity"], 3),
                         "perplexity_change_pct": round(r["perplexity_change_pct"], 2), "nll_p_value": r["nll_p_value"],
                         "decode_tokens_per_s": round(a["decode_tokens_per_s"], 1), "speedup": round(r["speedup"], 2),
                         "peak_rss_mib": round(a["peak_rss_mib"], 1), "fidelity_chrf": round(a["fidelity_chrf"], 1),
                         "quantized_fraction": round(q["quantized_fraction"], 3),
                         "quantized_bits_per_weight": round(q["quantized_bits_per_weight"], 3),
                         # the quantised layers against the same layers in 16 bits
                         "quantized_layers_smaller_than_16bit_pct": round(100 * (1 - q["quantized_bits_per_weight"] / 16), 1)}
    print(json.dumps({"model": "SmolLM2-135M-Instruct", "held_out_tokens": args.max_tokens,
                      "cpus": len(os.sched_getaffinity(0)), "threads": args.threads, "load_avg_1m": os.getloadavg()[0],
                      "table": table, "work_dir": str(work)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
