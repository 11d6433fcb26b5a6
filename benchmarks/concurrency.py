"""Many users at once: Lingxi (`lingxi serve`, continuous batching) vs llama.cpp's own
`llama-server -np 8` (the same vendored llama.cpp), side by side in one run. Both serve the
bundled SmolLM2 GGUF with the same threads; the client is the OpenAI SDK, streamed, greedy, the
gateway's answer cache off. Levels alternate between the two servers so that drift in the
machine's load hits both alike. Prints JSON: aggregate tokens/s and TTFT p50/p95 per level, and a
multi-turn chat (growing history) with each turn's TTFT.

Targets (issue 13): at 8 streams aggregate tok/s >= llama-server's and TTFT p95 <= 1.2x its;
the 10th turn's TTFT within 1.5x the first's.

    make llama-server   # builds build/llama.cpp/bin/llama-server (the reference; skipped if absent)
    python benchmarks/concurrency.py [--levels 1,2,4,8,16] [--max-tokens 128] [--turns 10] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["a lighthouse keeper", "a lost dragon", "the first train to the coast", "a robot learning to paint",
          "a city under the sea", "a tea merchant in Hangzhou", "a clockmaker's apprentice", "a winter market",
          "an old map", "a desert caravan", "a violin that plays itself", "a village of kites",
          "a library at night", "a ship in the ice", "a garden on the moon", "a letter never sent"]
QUESTIONS = ["Tell me about the planet Mars.", "How far is it from the Sun?", "Does it have moons?",
             "What are they called?", "Could people live there?", "What would they need?",
             "How long does the trip take?", "Which missions went there?", "What did they find?",
             "Summarise our conversation in one sentence."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode}): {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout:.0f} s: {url}")


def start_lingxi(threads: int, parallel: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cfg = tmp / "lingxi.toml"
    cfg.write_text(f"""default_model = "smollm2"
[models.smollm2]
engine = "llamacpp"
n_threads = {threads}
parallel = {parallel}
[gateway]
max_concurrency = 256
[gateway.cache]
enabled = false
""", encoding="utf-8")
    env = {**os.environ, "LINGXI_HOME": str(tmp / "home")}
    lingxi = Path(sys.executable).parent / "lingxi"
    proc = subprocess.Popen([str(lingxi), "--config", str(cfg), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "lingxi.log", "wb"))
    _wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_llama_server(binary: str, gguf: Path, threads: int, parallel: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([binary, "-m", str(gguf), "-np", str(parallel), "-t", str(threads), "-tb", str(threads),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "llama-server.log", "wb"))
    _wait_ready(f"http://127.0.0.1:{port}/health", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


async def one_stream(client, model: str, messages: list[dict], max_tokens: int) -> dict:
    start = time.perf_counter()
    first = None
    text, chunks, usage = [], 0, None
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True, temperature=0,
                                                  max_tokens=max_tokens, stream_options={"include_usage": True})
    async for event in stream:
        if event.usage is not None:
            usage = event.usage
        if event.choices and event.choices[0].delta.content:
            first = first or time.perf_counter()
            chunks += 1
            text.append(event.choices[0].delta.content)
    end = time.perf_counter()
    tokens = usage.completion_tokens if usage is not None else chunks
    return {"ttft": (first or end) - start, "tokens": tokens, "end": end, "text": "".join(text)}


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def level(client, model: str, c: int, max_tokens: int, waves: int) -> dict:
    ttfts, tokens, wall = [], 0, 0.0
    for w in range(waves):
        start = time.perf_counter()
        msgs = [[{"role": "user", "content": f"Write a long story about {TOPICS[(w * c + i) % len(TOPICS)]}."}]
                for i in range(c)]
        results = await asyncio.gather(*(one_stream(client, model, m, max_tokens) for m in msgs))
        wall += max(r["end"] for r in results) - start
        tokens += sum(r["tokens"] for r in results)
        ttfts += [r["ttft"] for r in results]
    return {"requests": len(ttfts), "completion_tokens": tokens, "aggregate_tok_s": round(tokens / wall, 1),
            "ttft_p50_s": round(statistics.median(ttfts), 3), "ttft_p95_s": round(_pct(ttfts, 0.95), 3)}


async def multi_turn(client, model: str, turns: int, max_tokens: int) -> dict:
    messages: list[dict] = [{"role": "system", "content": "You are a helpful astronomy tutor."}]
    ttfts, prompt_chars = [], []
    for q in QUESTIONS[:turns]:
        messages.append({"role": "user", "content": q})
        r = await one_stream(client, model, messages, max_tokens)
        ttfts.append(round(r["ttft"], 3))
        messages.append({"role": "assistant", "content": r["text"]})
        prompt_chars.append(sum(len(m["content"]) for m in messages))
    return {"ttft_per_turn_s": ttfts, "history_chars": prompt_chars,
            "last_over_first": round(ttfts[-1] / ttfts[0], 2) if ttfts[0] > 0 else None}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def run(servers: dict, args) -> dict:
    from openai import AsyncOpenAI

    clients = {name: AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
               for name, url in servers.items()}
    names = list(clients)
    for name in names:  # warm-up: page-in and graph build
        await one_stream(clients[name], "smollm2", [{"role": "user", "content": "Hi"}], 8)
    levels: dict[str, dict] = {}
    for i, c in enumerate(args.levels):
        order = names if i % 2 == 0 else names[::-1]
        levels[str(c)] = {name: {**await level(clients[name], "smollm2", c, args.max_tokens,
                                               max(1, args.min_requests // c)), "load_avg": _load()}
                          for name in order}
    turns = {}
    for name in names:
        turns[name] = await multi_turn(clients[name], "smollm2", args.turns, args.turn_tokens)
    for client in clients.values():
        await client.close()
    return {"levels": levels, "multi_turn": turns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-server", default="build/llama.cpp/bin/llama-server")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--min-requests", type=int, default=4, help="requests per level at least (waves of c)")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--turn-tokens", type=int, default=64, help="max tokens per multi-turn answer")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--parallel", type=int, default=8, help="slots: Lingxi's parallel and llama-server's -np")
    args = ap.parse_args()

    from lingxi.engines.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    binary = shutil.which(args.llama_server) or (args.llama_server if os.access(args.llama_server, os.X_OK) else None)
    procs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            servers = {}
            proc, servers["lingxi"] = start_lingxi(args.threads, args.parallel, tmp)
            procs.append(proc)
            if binary:
                proc, servers["llama-server"] = start_llama_server(binary, gguf, args.threads, args.parallel, tmp)
                procs.append(proc)
            else:
                print(f"note: {args.llama_server} not found; run `make llama-server` to measure the reference. "
                      "Measuring Lingxi alone.", file=sys.stderr)
            load_start = _load()
            result = asyncio.run(run(servers, args))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    report = {"model": gguf.name, "threads": args.threads, "parallel": args.parallel, "max_tokens": args.max_tokens,
              "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(), **result}
    if "llama-server" in servers and "8" in result["levels"]:
        ours, ref = result["levels"]["8"]["lingxi"], result["levels"]["8"]["llama-server"]
        report["targets"] = {
            "tok_s_ratio_at_8": round(ours["aggregate_tok_s"] / ref["aggregate_tok_s"], 2),
            "tok_s_ratio_target": ">= 1.0",
            "ttft_p95_ratio_at_8": round(ours["ttft_p95_s"] / ref["ttft_p95_s"], 2) if ref["ttft_p95_s"] else None,
            "ttft_p95_ratio_target": "<= 1.2",
            "lingxi_turn_last_over_first": result["multi_turn"]["lingxi"]["last_over_first"],
            "turn_target": "<= 1.5",
        }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
