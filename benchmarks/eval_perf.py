"""``lingxi eval perf`` against the bundled SmolLM2 twice — the engine in-process and the same
model behind Lingxi's gateway (``lingxi serve`` in its own process, streamed over HTTP) — next to
``benchmarks/gateway.py``'s bundled-model measurement of the same two paths, in one process.

Both tools get the same prompts (gateway.py's four), greedy decoding, ``max_tokens`` and seed 0
(gateway.py sends it, and a seeded request starts from an empty prompt cache, so each TTFT is a
full prefill; unseeded, eval perf's repeated prompts were answered from the cache: 17 ms against
gateway.py's 280 ms), and the same gateway configuration (gateway.py's: access log on, answer cache off). ``--rounds`` repeats
the pair; each round gives every tool and path one median TTFT and one median decode tokens/s,
and the spread of those round medians is the noise the two tools are compared against. eval perf
runs its concurrency-1 level for ``--duration`` seconds per path (a closed loop: about as many
requests as gateway.py's ``--repeats`` × 4 when the duration fits them).

Usage::

    python benchmarks/eval_perf.py [--rounds 3] [--duration 24] [--max-tokens 64] [--repeats 3]
                                   [--concurrency 1,4]

Prints one JSON object: per round and tool the four numbers, their means and round-to-round
ranges, and for each number whether eval perf and gateway.py agree (the difference of their
means within the larger of the two ranges). Levels above 1 in ``--concurrency`` are eval perf
only (gateway.py measures one request at a time).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

KEYS = ("engine_ttft_ms", "gateway_ttft_ms", "engine_decode_tps", "gateway_decode_tps")


def gateway_benchmark():
    """benchmarks/gateway.py as a module (its bundled-model measurement and gateway launcher)."""
    spec = importlib.util.spec_from_file_location("benchmark_gateway", Path(__file__).with_name("gateway.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=24.0, help="eval perf seconds per path and level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="gateway.py: rounds of its 4 prompts per path")
    parser.add_argument("--concurrency", default="1", help="eval perf levels; the first must be 1")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if levels[0] != 1:
        parser.error("the first --concurrency level must be 1 (the one gateway.py measures)")

    from lingxi.config import load_config
    from lingxi.evaluate.perf import evaluate_perf

    bench = gateway_benchmark()
    home = Path(tempfile.mkdtemp(prefix="lingxi-perf-"))
    prompts = home / "prompts.txt"
    prompts.write_text("\n".join(bench.PROMPTS) + "\n", encoding="utf-8")
    config = {"gateway": {"access_log": True, "cache": {"enabled": False}}}  # bundled_model()'s
    common = {"concurrency": levels, "duration": args.duration, "max_tokens": args.max_tokens, "prompts": prompts,
              "seed": 0}
    loads, rounds = [os.getloadavg()[0]], []

    def eval_perf() -> dict:
        gw, port = bench.start_gateway(config, home, None)
        try:
            out = {"gateway": evaluate_perf(url=f"http://127.0.0.1:{port}", model="smollm2", **common).summary}
        finally:
            gw.terminate()
            gw.wait(timeout=15)
        out["engine"] = evaluate_perf(model="smollm2", settings=load_config(), **common).summary
        loads.append(os.getloadavg()[0])
        return out

    def gateway_py() -> dict:
        out = bench.bundled_model(argparse.Namespace(model="smollm2", max_tokens=args.max_tokens,
                                                     repeats=args.repeats, gateway_cpus=None), home)
        loads.append(os.getloadavg()[0])
        return out

    for r in range(args.rounds):
        # a fresh gateway and engine each round, as gateway.py's bundled_model() starts its own:
        # both tools then meet the same prompt caches (cold for the first pass over the prompts).
        # The tools take turns going first, so what the first one leaves behind (warm pages, a
        # busier machine) does not favour one of them every round.
        if r % 2 == 0:
            ours, theirs = eval_perf(), gateway_py()
        else:
            theirs = gateway_py()
            ours = eval_perf()
        one = {path: ours[path]["levels"]["1"] for path in ("engine", "gateway")}
        rounds.append({
            "first": "eval_perf" if r % 2 == 0 else "gateway_py",
            "eval_perf": {"engine_ttft_ms": 1000 * one["engine"]["ttft_p50_s"],
                          "gateway_ttft_ms": 1000 * one["gateway"]["ttft_p50_s"],
                          "engine_decode_tps": one["engine"]["decode_tokens_per_s_p50"],
                          "gateway_decode_tps": one["gateway"]["decode_tokens_per_s_p50"],
                          "requests": {p: one[p]["requests"] for p in one},
                          "levels": {p: ours[p]["levels"] for p in ours}},
            "gateway_py": {"engine_ttft_ms": theirs["engine"]["ttft_ms_median"],
                           "gateway_ttft_ms": theirs["gateway"]["ttft_ms_median"],
                           "engine_decode_tps": theirs["engine"]["decode_tokens_per_s_median"],
                           "gateway_decode_tps": theirs["gateway"]["decode_tokens_per_s_median"],
                           "requests": {"engine": theirs["runs"], "gateway": theirs["runs"]}},
        })

    summary = {}
    for key in KEYS:
        row = {}
        for tool in ("eval_perf", "gateway_py"):
            values = [r[tool][key] for r in rounds]
            row[tool] = {"mean": round(statistics.fmean(values), 2), "min": round(min(values), 2),
                         "max": round(max(values), 2)}
        noise = max(row[t]["max"] - row[t]["min"] for t in row)
        diff = row["eval_perf"]["mean"] - row["gateway_py"]["mean"]
        row["difference"] = round(diff, 2)
        row["difference_pct"] = round(100 * diff / row["gateway_py"]["mean"], 1)
        row["noise_range"] = round(noise, 2)
        row["agree_within_noise"] = abs(diff) <= noise
        summary[key] = row
    print(json.dumps({"model": "smollm2 (bundled Q4_1)", "max_tokens": args.max_tokens, "rounds": args.rounds,
                      "eval_perf_duration_s": args.duration, "gateway_py_repeats": args.repeats,
                      "cpus": len(os.sched_getaffinity(0)), "load_avg_1m": [round(x, 2) for x in loads],
                      "summary": summary, "per_round": rounds}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
