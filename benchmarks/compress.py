"""Compression of the bundled SmolLM2-135M: GGUF types from one F16 source, before/after.

The bundled GGUF is Q4_1; it is widened to F16 once (``lingxi.compress.gguf.to_f16``: the Q4_1
values, uncompressed; the original BF16 weights are not installed anywhere), and llama.cpp
quantises that F16 to each type. Every file is profiled in its own child process: size on disk,
peak RSS, greedy decode tokens/s (Lingxi's llama.cpp engine), perplexity on held-out English
text (the first documents of the DBpedia-5k corpus in the shared data folder, never used to
tune anything) and fidelity (chrF of the answers to 4 prompts against the F16's answers).

Besides llama.cpp's stock types, two recipes for rows whose width (576) no K-quant block (256)
divides, where llama.cpp demotes Q4_K to Q5_0 and the tied embedding/output head to Q8_0:

- ``Q4_K_M-fit``: Q4_K_M, but the 576-wide tensors at IQ4_NL (4.5 bits, block 32, the fallback
  llama.cpp itself uses for IQ4_XS) instead of Q5_0, and the tied embedding/output head at Q5_0
  instead of Q8_0 (still above the body's 4.5 bits); ``ffn_down`` (1536 wide) keeps Q4_K_M's
  own Q4_K/Q6_K mix.
- ``Q4_0-pure``: every tensor Q4_0, the embedding/output head included (``--pure``).

Each quantised file's bytes per tensor type (``lingxi compress inspect``) are in ``tensor_types``.

Usage::

    python benchmarks/compress.py DATA_DIR [--types Q8_0,Q4_K_M,Q4_K_M-fit,IQ4_XS,Q4_0,Q4_0-pure]
                                           [--max-tokens 1024] [--out DIR] [--threads N]

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


#: name -> (llama.cpp file type, quantize() overrides)
RECIPES = {
    "Q4_K_M-fit": ("Q4_K_M", {"tensor_types": {r"(attn_(q|k|v|output)|ffn_(gate|up))\.weight": "IQ4_NL"},
                              "embedding_type": "Q5_0"}),
    "Q4_0-pure": ("Q4_0", {"pure": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--types", default="Q8_0,Q4_K_M,Q4_K_M-fit,IQ4_XS,Q4_0,Q4_0-pure")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None, help="Keep the files and reports here.")
    parser.add_argument("--threads", type=int, default=None, help="Engine threads (default: all CPUs).")
    args = parser.parse_args()

    from lingxi.compress.gguf import quantize, tensor_table, to_f16
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
    layouts = {}
    for name in args.types.split(","):
        ftype, overrides = RECIPES.get(name, (name, {}))
        out = work / f"smollm2.{name}.gguf"
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):
            quantize(f16, out, ftype, **overrides)
        layout = tensor_table(out)
        layouts[name] = {"bits_per_weight": layout["bits_per_weight"],
                         "by_type": {k: {"tensors": v["tensors"], "mib": round(v["bytes"] / 2**20, 2),
                                         "share_of_bytes": v["share_of_bytes"]} for k, v in layout["by_type"].items()},
                         "token_embd": next(t["type"] for t in layout["tensors"] if t["name"] == "token_embd.weight")}
        rows[name] = before_after(base, profile(out, label=name, **common), work / f"report-{name}")
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
        "Q4_K_M-fit": {"x_smaller_than_f16": ">= 3.0",
                       "met": table.get("Q4_K_M-fit", {}).get("x_smaller_than_f16", 0) >= 3.0},
    }
    print(json.dumps({"model": "SmolLM2-135M-Instruct", "held_out_tokens": args.max_tokens, "widen_to_f16_s":
                      round(widen_s, 1), "cpus": len(os.sched_getaffinity(0)), "threads": args.threads, "load_avg_1m": os.getloadavg()[0],
                      "table": table, "targets": targets, "tensor_types": layouts, "recipes": {k: [v[0], v[1]] for k, v in RECIPES.items()},
                      "work_dir": str(work)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
