"""Compression of the bundled SmolLM2-135M: GGUF types from one F16 source, before/after.

The bundled GGUF is Q4_1; it is widened to F16 once (``lingxi.compress.gguf.to_f16``: the Q4_1
values, uncompressed; the original BF16 weights are not installed anywhere), and llama.cpp
quantises that F16 to each type. Every file is profiled in its own child process: size on disk,
peak RSS, greedy decode tokens/s (Lingxi's llama.cpp engine), perplexity on held-out English
text (the first documents of the DBpedia-5k corpus in the shared data folder, never used to
tune anything) and fidelity (chrF of the answers to 4 prompts against the F16's answers).

Usage::

    python benchmarks/compress.py DATA_DIR [--types Q8_0,Q5_K_M,Q4_K_M,Q4_0] [--max-tokens 1024] [--out DIR]

DATA_DIR holds ``dbpedia-5k-en/corpus.jsonl``. Prints one JSON object; targets (issue 16):
Q8_0 >= 1.8x smaller than F16 with perplexity within 1 %; Q4_K_M >= 3x smaller, loss reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def held_out_text(data_dir: Path, out: Path, docs: int = 60) -> Path:
    rows = []
    with open(data_dir / "dbpedia-5k-en" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            rows.append(f"{d.get('title', '')}. {d['text']}")
            if len(rows) >= docs:
                break
    out.write_text("\n\n".join(rows), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--types", default="Q8_0,Q5_K_M,Q4_K_M,Q4_0")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None, help="Keep the files and reports here.")
    parser.add_argument("--threads", type=int, default=None, help="Engine threads (default: all CPUs).")
    args = parser.parse_args()

    from lingxi.compress.gguf import quantize, to_f16
    from lingxi.compress.report import before_after, profile
    from lingxi.engines.bundled import smollm2_gguf

    work = args.out or Path(tempfile.mkdtemp(prefix="lingxi-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    text = held_out_text(args.data_dir, work / "held_out_en.txt")
    start = time.perf_counter()
    f16 = to_f16(smollm2_gguf(), work / "smollm2.f16.gguf")
    widen_s = time.perf_counter() - start
    common = {"data": text, "max_tokens": args.max_tokens, "threads": args.threads}
    base = profile(f16, label="F16", **common)
    rows = {"F16": {**base.summary, "size_ratio": 1.0}}
    original = profile(smollm2_gguf(), label="Q4_1 (bundled)", **common)
    rows["Q4_1 (bundled)"] = before_after(base, original)
    for ftype in args.types.split(","):
        out = work / f"smollm2.{ftype}.gguf"
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):
            quantize(f16, out, ftype)
        rows[ftype] = before_after(base, profile(out, label=ftype, **common), work / f"report-{ftype}")
    table = {}
    for name, r in rows.items():
        after = r.get("after", r)
        table[name] = {
            "size_mib": round(after["size_mib"], 1),
            "x_smaller_than_f16": round(r.get("size_ratio") or 1.0, 2),
            "perplexity": round(after["perplexity"], 3),
            "perplexity_change_pct": round(r.get("perplexity_change_pct") or 0.0, 2),
            "nll_p_value": r.get("nll_p_value"),
            "decode_tokens_per_s": round(after["decode_tokens_per_s"], 1) if after.get("decode_tokens_per_s") else None,
            "peak_rss_mib": round(after["peak_rss_mib"], 1),
            "fidelity_chrf": round(after.get("fidelity_chrf", 100.0), 1),
        }
    targets = {
        "Q8_0": {"x_smaller_than_f16": ">= 1.8", "perplexity_change_pct": "<= 1.0",
                 "met": table.get("Q8_0", {}).get("x_smaller_than_f16", 0) >= 1.8
                 and abs(table.get("Q8_0", {}).get("perplexity_change_pct", 99)) <= 1.0},
        "Q4_K_M": {"x_smaller_than_f16": ">= 3.0", "met": table.get("Q4_K_M", {}).get("x_smaller_than_f16", 0) >= 3.0},
    }
    print(json.dumps({"model": "SmolLM2-135M-Instruct", "held_out_tokens": args.max_tokens, "widen_to_f16_s":
                      round(widen_s, 1), "cpus": len(os.sched_getaffinity(0)), "threads": args.threads, "load_avg_1m": os.getloadavg()[0],
                      "table": table, "targets": targets, "work_dir": str(work)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
