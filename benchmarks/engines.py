"""Engine speed, side by side in one process: raw llama-cpp-python vs Lingxi's LlamaCppEngine vs
TransformersEngine on the same GGUF. Same prompts, greedy, same max_tokens. Prints JSON.

Targets (issue 3): Lingxi's llama.cpp engine >= 95% of raw decode tokens/s and TTFT within 10%;
``import lingxi`` < 0.3 s; ``lingxi --version`` < 0.5 s.

    python benchmarks/engines.py [--max-tokens 64] [--rounds 3] [--no-transformers]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "Write three sentences about the history of the printing press.",
    "Explain in a short paragraph why the sky is blue.",
    "用两句话介绍一下长城。",
]


def _median(xs):
    return round(statistics.median(xs), 4) if xs else None


def bench_raw(path: str, n_threads: int, max_tokens: int, rounds: int):
    """Raw llama-cpp-python, called on the same single thread Lingxi uses for llama.cpp.

    Two threads calling llama.cpp in one process slow each other down about threefold (OpenMP
    teams belong to the calling thread; see lingxi/engines/llamacpp.py), so raw calls made from
    the main thread would measure that, not llama-cpp-python.
    """
    import llama_cpp

    from lingxi.engines.llamacpp import llama_thread

    thread = llama_thread()
    llm = thread.submit(lambda: llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=n_threads,
                                                n_threads_batch=n_threads, n_batch=512, verbose=False)).result()

    def run(prompt):
        start = time.perf_counter()
        first, tokens = None, 0
        for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], stream=True,
                                                temperature=0, max_tokens=max_tokens):
            if chunk["choices"][0]["delta"].get("content"):
                tokens += 1  # llama-cpp-python streams one token per chunk
                first = first or time.perf_counter()
        end = time.perf_counter()
        return first - start, (tokens - 1) / (end - first) if tokens > 1 else 0.0

    return lambda prompt: thread.submit(run, prompt).result()


def bench_engine(engine, max_tokens: int):
    from lingxi.engines import GenerationParams

    params = GenerationParams(max_tokens=max_tokens, temperature=0)

    def run(prompt):
        result = engine.generate([{"role": "user", "content": prompt}], params)
        return result.timing.ttft_s, result.timing.decode_tokens_per_s

    return run


def measure(runners: dict, rounds: int):
    samples = {name: {"ttft_s": [], "decode_tokens_per_s": []} for name in runners}
    for name, run in runners.items():  # warm-up: first call pays for page-in and graph build
        run(PROMPTS[0])
    for _ in range(rounds):
        for prompt in PROMPTS:
            for name, run in runners.items():  # interleaved so drift hits every engine alike
                ttft, tps = run(prompt)
                samples[name]["ttft_s"].append(ttft)
                samples[name]["decode_tokens_per_s"].append(tps)
    return {name: {k: _median(v) for k, v in s.items()} for name, s in samples.items()}


def startup_times(repeats: int = 5):
    def timed(cmd):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return _median(times)

    py = sys.executable
    return {"import_lingxi_s": timed([py, "-c", "import lingxi"]),
            "python_startup_s": timed([py, "-c", "pass"]),
            "lingxi_version_s": timed([os.path.join(os.path.dirname(py), "lingxi"), "--version"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--no-transformers", action="store_true")
    args = ap.parse_args()

    from lingxi.config import LlamaCppModel, TransformersModel
    from lingxi.engines.bundled import smollm2_gguf
    from lingxi.engines.llamacpp import LlamaCppEngine

    gguf = smollm2_gguf()
    runners = {
        "llama-cpp-python (raw)": bench_raw(str(gguf), args.threads, args.max_tokens, args.rounds),
        "lingxi LlamaCppEngine": bench_engine(
            LlamaCppEngine("smollm2", LlamaCppModel(engine="llamacpp", n_threads=args.threads)), args.max_tokens),
    }
    if not args.no_transformers:
        from lingxi.engines.transformers import TransformersEngine

        import torch
        torch.set_num_threads(args.threads)
        cfg = TransformersModel(engine="transformers", path=str(gguf.parent), gguf_file=gguf.name, device="cpu")
        runners["lingxi TransformersEngine (same GGUF, dequantised)"] = bench_engine(
            TransformersEngine("smollm2-hf", cfg), args.max_tokens)
    table = measure(runners, args.rounds)
    raw, ours = table["llama-cpp-python (raw)"], table["lingxi LlamaCppEngine"]
    startup = startup_times()
    report = {
        "model": gguf.name,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "prompts": len(PROMPTS),
        "rounds": args.rounds,
        "engines": table,
        "startup": startup,
        "targets": {
            "decode_ratio_vs_raw": round(ours["decode_tokens_per_s"] / raw["decode_tokens_per_s"], 3),
            "decode_ratio_target": ">= 0.95",
            "ttft_ratio_vs_raw": round(ours["ttft_s"] / raw["ttft_s"], 3),
            "ttft_ratio_target": "<= 1.10",
            "import_lingxi_target_s": 0.3,
            "lingxi_version_target_s": 0.5,
        },
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
