"""``lingxi eval perf`` against the bundled SmolLM2 twice: the engine in-process, and the same
engine behind Lingxi's gateway (a real uvicorn server on loopback in this process, streaming
chat completions over HTTP). Same prompts, greedy, same max_tokens, closed loop per level.

Usage::

    python benchmarks/eval_perf.py [--concurrency 1,4] [--duration 20] [--max-tokens 64] [--threads N]

Prints one JSON object: per target and level TTFT p50/p95, ITL p50/p95, tokens/s, req/s and
error rate, and the gateway/engine ratios. The gateway's own overhead is measured precisely by
benchmarks/gateway.py (added p50 about 2 ms); here it should be within noise of the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from lingxi.config import parse_config
    from lingxi.evaluate.perf import evaluate_perf
    from lingxi.gateway.app import create_app
    from lingxi.gateway.server import ServerThread

    home = tempfile.mkdtemp(prefix="lingxi-perf-")
    model = {"engine": "llamacpp", **({"n_threads": args.threads} if args.threads else {})}
    settings = parse_config({"home": home, "models": {"smollm2": model},
                             "gateway": {"cache": {"enabled": False}, "access_log": False}})
    levels = [int(c) for c in args.concurrency.split(",")]
    common = {"concurrency": levels, "duration": args.duration, "max_tokens": args.max_tokens}
    results = {}
    with ServerThread(create_app(settings)) as server:
        results["gateway"] = evaluate_perf(url=server.url, model="smollm2", **common).summary["levels"]
    results["engine"] = evaluate_perf(model="smollm2", settings=settings, **common).summary["levels"]
    ratios = {}
    for level in map(str, levels):
        g, e = results["gateway"][level], results["engine"][level]
        ratios[level] = {k: round(g[k] / e[k], 3) if g.get(k) and e.get(k) else None
                         for k in ("ttft_p50_s", "itl_p50_s", "decode_tokens_per_s_p50", "tokens_per_s", "requests_per_s")}
    print(json.dumps({"model": "smollm2 (bundled Q4_1)", "threads": args.threads, "cpus": len(os.sched_getaffinity(0)),
                      "load_avg_1m": os.getloadavg()[0], **common, "results": results,
                      "gateway_over_engine": ratios}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
