"""Estimate vs measurement on this machine, and how fast the advisor answers. Prints JSON.

1. ``bench``: the bundled SmolLM2 (llama.cpp) generates here; measured TTFT and decode tokens/s
   are printed next to the roofline estimate for this machine (bandwidth and matmul throughput
   measured on the spot), with the measured/estimate ratio. The estimate is an upper bound, so
   the ratio is below 1; how far below says how much an engine (and a busy machine) leaves on
   the table.
2. ``advisor``: wall time of ``load_catalog`` + ``select`` over the whole catalog (the work behind
   one ``lingxi models select`` call), median of several rounds.

    python benchmarks/catalog.py [--max-tokens 64] [--runs 3] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def bench_model(max_tokens: int, runs: int) -> dict:
    from lingxi.catalog import load_catalog
    from lingxi.evaluate.bench import bench
    from lingxi.config import load_config

    settings = load_config()
    return bench("smollm2", settings, load_catalog(settings), max_tokens=max_tokens, runs=runs)


def bench_advisor(rounds: int) -> dict:
    from lingxi.catalog import Requirements, load_catalog, select

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = select(load_catalog(), Requirements(lang="zh", deploy="local", max_gpu_mem=24))
        times.append(time.perf_counter() - start)
    return {"rounds": rounds, "models": len(result.candidates) + len(result.rejected),
            "median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = {"cpus": os.cpu_count(), "load_average_1m": load,
           "bench": bench_model(args.max_tokens, args.runs), "advisor": bench_advisor(args.rounds)}
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
