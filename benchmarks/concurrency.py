"""Many users at once: Lingxi (`lingxi serve`, continuous batching) vs llama.cpp's own
`llama-server -np 8` (the same vendored llama.cpp), side by side in one run. Both serve the
bundled SmolLM2 GGUF with the same threads; the client is the OpenAI SDK, streamed, greedy, the
gateway's answer cache off; every request's prompt is new to both servers (numbered), so no
level is helped by the prompt cache of an earlier one. Levels alternate between the two servers so that drift in the
machine's load hits both alike. Prints JSON: aggregate tokens/s and TTFT p50/p95 per level, the
CPU time each server spent per generated token, and multi-turn chats (growing history; ``--chats``
of them per server, taking turns) with each turn's median TTFT.
``--in-process`` adds Lingxi's engine called in this process (no HTTP, no gateway) and raw
llama-cpp-python at 1 stream, to tell the engine's cost from the gateway's.

Targets (issue 13): at 8 streams aggregate tok/s >= llama-server's and TTFT p95 <= 1.2x its;
at 1 stream >= raw llama-cpp-python; the 10th turn's TTFT within 1.5x the first's.

    make llama-server   # builds build/llama.cpp/bin/llama-server (the reference; skipped if absent)
    python benchmarks/concurrency.py [--levels 1,2,4,8,16] [--max-tokens 128] [--turns 10] [--chats 5] [--threads N]
        [--in-process] [--kv-layout auto|split|shared] [--rounds R]
    python benchmarks/concurrency.py --layouts-ab ROUNDS [--parallel 8] [--max-tokens 128]

Lingxi's KV layout: ``auto`` is its default (a stream of ``context_length`` cells per slot when
that fits an eighth of memory, else one shared pool), ``split`` gives each slot llama-server's own
size (8,192 / ``--parallel`` cells), ``shared`` forces the one pool. The report says which ran.
``--layouts-ab`` compares the two layouts alone: both in this process at the default context,
``--parallel`` streams at a time, rounds alternating between them (so a machine whose speed drifts
between runs, as a shared host's does, hits both alike); no server is started.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def layout_options(layout: str, parallel: int) -> dict:
    """Lingxi's model options for ``--kv-layout``; ``split`` is llama-server's size: it splits the
    model's 8,192-token context over -np."""
    return {"auto": {}, "shared": {"kv_per_slot": False},
            "split": {"kv_per_slot": True, "context_length": 8192 // parallel}}[layout]


def start_lingxi(threads: int, parallel: int, tmp: Path, kv_layout: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cfg = tmp / "lingxi.toml"
    layout = "".join(f"{key} = {str(value).lower()}\n" for key, value in layout_options(kv_layout, parallel).items())
    cfg.write_text(f"""default_model = "smollm2"
[models.smollm2]
engine = "llamacpp"
n_threads = {threads}
parallel = {parallel}
{layout}[gateway]
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


def _kv_cells(url: str) -> str:
    """The server's ``lingxi_batch_kv_cells`` line from /metrics: its KV layout and size."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return next((line for line in lines if line.startswith("lingxi_batch_kv_cells{")), "not reported")


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


async def engine_stream(engine, messages: list[dict], max_tokens: int) -> dict:
    """The same request to Lingxi's engine in this process: no HTTP, no gateway."""
    from lingxi.engines import GenerationParams

    start = time.perf_counter()
    first, text, usage = None, [], None
    async for chunk in engine.astream(messages, GenerationParams(max_tokens=max_tokens, temperature=0)):
        if chunk.text:
            first = first or time.perf_counter()
            text.append(chunk.text)
        usage = chunk.usage or usage
    end = time.perf_counter()
    return {"ttft": (first or end) - start, "tokens": usage.completion_tokens if usage else len(text), "end": end,
            "text": "".join(text)}


async def raw_stream(llm, messages: list[dict], max_tokens: int) -> dict:
    """The same request to raw llama-cpp-python in this process, on the thread Lingxi's engine uses
    for llama.cpp (two threads calling llama.cpp slow each other down; see engines/llamacpp.py)."""
    from lingxi.engines.llamacpp import llama_thread

    def run() -> dict:
        start = time.perf_counter()
        first, text = None, []
        for chunk in llm.create_chat_completion(messages, stream=True, temperature=0, max_tokens=max_tokens):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                first = first or time.perf_counter()
                text.append(piece)  # llama-cpp-python streams one token per chunk
        end = time.perf_counter()
        return {"ttft": (first or end) - start, "tokens": len(text), "end": end, "text": "".join(text)}

    return await asyncio.wrap_future(llama_thread().submit(run))


class Target:
    """One thing to measure: an OpenAI-compatible server (its process id for CPU accounting) or
    Lingxi's engine in this process (``engine``; its CPU then includes this client's)."""

    def __init__(self, url: str | None = None, pid: int | None = None, engine=None, raw=None, max_c: int = 0):
        self.pid = pid or os.getpid()
        self.engine, self.raw = engine, raw
        self.max_c = max_c  # measured up to this concurrency (0: every level)
        self.client = None
        if url is not None:
            from openai import AsyncOpenAI

            self.client = AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

    async def stream(self, messages: list[dict], max_tokens: int) -> dict:
        if self.engine is not None:
            return await engine_stream(self.engine, messages, max_tokens)
        if self.raw is not None:
            return await raw_stream(self.raw, messages, max_tokens)
        return await one_stream(self.client, "smollm2", messages, max_tokens)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


_served = itertools.count()


def _fresh_prompt() -> str:
    """A prompt no earlier request of the run has sent: a server's prompt cache cannot skip its
    prefill (only the chat template's opening is shared, as between real users)."""
    n = next(_served)
    return f"Story number {n}: write a long story about {TOPICS[n % len(TOPICS)]}."


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def level(target: Target, c: int, max_tokens: int, waves: int) -> dict:
    ttfts, tokens, wall = [], 0, 0.0
    cpu_before = process_cpu(target.pid)
    for w in range(waves):
        start = time.perf_counter()
        msgs = [[{"role": "user", "content": _fresh_prompt()}] for _ in range(c)]
        results = await asyncio.gather(*(target.stream(m, max_tokens) for m in msgs))
        wall += max(r["end"] for r in results) - start
        tokens += sum(r["tokens"] for r in results)
        ttfts += [r["ttft"] for r in results]
    return {"requests": len(ttfts), "completion_tokens": tokens, "aggregate_tok_s": round(tokens / wall, 1),
            "ttft_p50_s": round(statistics.median(ttfts), 3), "ttft_p95_s": round(_pct(ttfts, 0.95), 3),
            # CPU per token: what a token costs, however the machine's other load shares the cores
            # out (OpenMP threads that wait for a descheduled partner spin, so it rises with load)
            "cpu_ms_per_token": round((process_cpu(target.pid) - cpu_before) * 1000 / max(tokens, 1), 1)}


async def multi_turn(target: Target, turns: int, max_tokens: int, chat: int = 0) -> dict:
    """One chat of ``turns`` turns, each answer appended to the history; the system prompt is
    numbered so that no chat reuses another's cached prefix."""
    messages: list[dict] = [{"role": "system", "content": f"Chat {chat}. You are a helpful astronomy tutor."}]
    ttfts, prompt_chars = [], []
    for q in QUESTIONS[:turns]:
        messages.append({"role": "user", "content": q})
        r = await target.stream(messages, max_tokens)
        ttfts.append(r["ttft"])
        messages.append({"role": "assistant", "content": r["text"]})
        prompt_chars.append(sum(len(m["content"]) for m in messages))
    return {"ttft_per_turn_s": ttfts, "history_chars": prompt_chars}


async def multi_turn_chats(targets: dict[str, Target], args) -> dict:
    """``args.chats`` chats per target, the targets taking turns to go first, so that a host whose
    speed drifts hits all alike; each turn's TTFT is the median over the chats (one chat's single
    samples swing with the host), and the tenth over the first is taken from those medians."""
    names = [name for name in targets if targets[name].raw is None]  # raw calls keep no prompt cache
    chats: dict[str, list[dict]] = {name: [] for name in names}
    for k in range(args.chats):
        for name in names if k % 2 == 0 else names[::-1]:
            chats[name].append(await multi_turn(targets[name], args.turns, args.turn_tokens, k))
    out = {}
    for name, runs in chats.items():
        per_turn = [round(statistics.median(turn), 3) for turn in zip(*(r["ttft_per_turn_s"] for r in runs))]
        out[name] = {"chats": len(runs), "ttft_per_turn_s": per_turn,
                     "history_chars": runs[0]["history_chars"],
                     "last_over_first": round(per_turn[-1] / per_turn[0], 2) if per_turn[0] > 0 else None,
                     "last_over_first_per_chat": [round(r["ttft_per_turn_s"][-1] / r["ttft_per_turn_s"][0], 2)
                                                  for r in runs]}
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) that process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def run(targets: dict[str, Target], args) -> dict:
    names = list(targets)
    for name in names:  # warm-up: page-in and graph build
        await targets[name].stream([{"role": "user", "content": "Hi"}], 8)
    levels: dict[str, dict] = {}
    for i, c in enumerate(args.levels):
        order = names if i % 2 == 0 else names[::-1]
        levels[str(c)] = {name: {**await level(targets[name], c, args.max_tokens, max(1, args.min_requests // c)),
                                 "load_avg": _load()}
                          for name in order if not targets[name].max_c or c <= targets[name].max_c}
    rounds = await paired_rounds(targets, args) if args.rounds and len(targets) > 1 else {}
    turns = await multi_turn_chats(targets, args) if args.turns else {}
    for target in targets.values():
        await target.close()
    return {"levels": levels, "multi_turn": turns, **({"paired_rounds": rounds} if rounds else {})}


async def paired_rounds(targets: dict[str, Target], args) -> dict:
    """Each level again ``args.rounds`` times, every target measured at that level back to back, in
    alternating order; Lingxi's ratio to each of the others per round: a host whose speed drifts
    moves all sides of a round alike (at 1 stream this pairs Lingxi with raw llama-cpp-python too)."""
    out = {}
    for c in args.levels:
        names = [name for name in targets if not targets[name].max_c or c <= targets[name].max_c]
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                runs[name].append(await level(targets[name], c, args.max_tokens, max(1, args.min_requests // c)))
        vs = {}
        for ref in names[1:]:
            tok = [round(a["aggregate_tok_s"] / b["aggregate_tok_s"], 2) for a, b in zip(runs["lingxi"], runs[ref])]
            ttft = [round(a["ttft_p95_s"] / b["ttft_p95_s"], 2)
                    for a, b in zip(runs["lingxi"], runs[ref]) if b["ttft_p95_s"]]
            vs[ref] = {"tok_s_ratio": tok, "tok_s_ratio_median": statistics.median(tok),
                       "ttft_p95_ratio": ttft, "ttft_p95_ratio_median": statistics.median(ttft) if ttft else None}
        out[str(c)] = {"tok_s": {name: [x["aggregate_tok_s"] for x in r] for name, r in runs.items()},
                       "lingxi_over": vs}
    return out


async def layouts_ab(rounds: int, parallel: int, threads: int, max_tokens: int) -> dict:
    """Aggregate tok/s of ``parallel`` streams on a KV stream per slot vs one shared pool, in
    alternating rounds, both engines in this process."""
    from lingxi.config import LlamaCppModel, Settings
    from lingxi.engines import load_engine

    load_start = _load()
    engines = {layout: load_engine("smollm2", Settings(models={"smollm2": LlamaCppModel(
        engine="llamacpp", n_threads=threads, parallel=parallel, kv_per_slot=layout == "per_slot")}))
        for layout in ("per_slot", "shared")}
    try:
        targets = {layout: Target(engine=e) for layout, e in engines.items()}
        for target in targets.values():
            await target.stream([{"role": "user", "content": "Hi"}], 8)
        tok_s: dict[str, list[float]] = {layout: [] for layout in engines}
        for i in range(rounds):
            for layout in (list(targets) if i % 2 == 0 else list(targets)[::-1]):
                tok_s[layout].append((await level(targets[layout], parallel, max_tokens, 1))["aggregate_tok_s"])
    finally:
        for e in engines.values():
            e.close()
    ratios = [round(a / b, 2) for a, b in zip(tok_s["per_slot"], tok_s["shared"])]
    return {"streams": parallel, "threads": threads, "max_tokens": max_tokens, "tok_s": tok_s,
            "per_slot_over_shared": ratios, "median_ratio": statistics.median(ratios),
            "load_avg_start": load_start, "load_avg_end": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-server", default="build/llama.cpp/bin/llama-server")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2, 4, 8, 16],
                    help="concurrency levels; empty (--levels '') runs only the multi-turn chats")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--min-requests", type=int, default=4, help="requests per level at least (waves of c)")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--turn-tokens", type=int, default=64, help="max tokens per multi-turn answer")
    ap.add_argument("--chats", type=int, default=5, help="multi-turn chats per server (the median per turn is reported)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--parallel", type=int, default=8, help="slots: Lingxi's parallel and llama-server's -np")
    ap.add_argument("--kv-layout", choices=["auto", "split", "shared"], default="auto",
                    help="Lingxi's KV cache: its default (auto), a stream per slot at llama-server's size "
                         "(split), or one shared pool")
    ap.add_argument("--in-process", action="store_true",
                    help="also Lingxi's engine and raw llama-cpp-python (1 stream) in this process, without HTTP")
    ap.add_argument("--rounds", type=int, default=0,
                    help="after the levels, run each level this many more times, every target back to back, "
                         "and report Lingxi's ratio to each per round and its median")
    ap.add_argument("--layouts-ab", type=int, default=0, metavar="ROUNDS",
                    help="only compare the two KV layouts in this process, ROUNDS alternating rounds")
    args = ap.parse_args()
    if args.layouts_ab:
        print(json.dumps(asyncio.run(layouts_ab(args.layouts_ab, args.parallel, args.threads, args.max_tokens)),
                         indent=1))
        return

    from lingxi.engines.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    binary = shutil.which(args.llama_server) or (args.llama_server if os.access(args.llama_server, os.X_OK) else None)
    procs = []
    engine = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            targets: dict[str, Target] = {}
            proc, lingxi_url = start_lingxi(args.threads, args.parallel, tmp, args.kv_layout)
            procs.append(proc)
            targets["lingxi"] = Target(lingxi_url, proc.pid)
            if binary:
                proc, url = start_llama_server(binary, gguf, args.threads, args.parallel, tmp)
                procs.append(proc)
                targets["llama-server"] = Target(url, proc.pid)
            else:
                print(f"note: {args.llama_server} not found; run `make llama-server` to measure the reference. "
                      "Measuring Lingxi alone.", file=sys.stderr)
            if args.in_process:
                import llama_cpp

                from lingxi.config import LlamaCppModel, Settings
                from lingxi.engines import load_engine
                from lingxi.engines.llamacpp import llama_thread

                engine = load_engine("smollm2", Settings(models={"smollm2": LlamaCppModel(
                    engine="llamacpp", n_threads=args.threads, parallel=args.parallel,
                    **layout_options(args.kv_layout, args.parallel))}))
                targets["lingxi engine, in process"] = Target(engine=engine)
                raw = llama_thread().submit(lambda: llama_cpp.Llama(
                    model_path=str(gguf), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads,
                    n_batch=512, verbose=False)).result()
                targets["llama-cpp-python, in process"] = Target(raw=raw, max_c=1)
            load_start = _load()
            try:
                result = asyncio.run(run(targets, args))
            except Exception:
                for log in sorted(tmp.glob("*.log")):  # why a server went away, before tmp is removed
                    print(f"--- {log.name}, last lines:\n" + "\n".join(
                        log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
                raise
            kv_cells = _kv_cells(lingxi_url)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if engine is not None:
                engine.close()
    report = {"model": gguf.name, "threads": args.threads, "kv_layout": args.kv_layout, "lingxi_kv_cells": kv_cells,
              "parallel": args.parallel, "max_tokens": args.max_tokens,
              "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(), **result}
    if "llama-server" in targets and "8" in result["levels"]:
        ours, ref = result["levels"]["8"]["lingxi"], result["levels"]["8"]["llama-server"]
        report["targets"] = {
            "tok_s_ratio_at_8": round(ours["aggregate_tok_s"] / ref["aggregate_tok_s"], 2),
            "tok_s_ratio_target": ">= 1.0",
            "ttft_p95_ratio_at_8": round(ours["ttft_p95_s"] / ref["ttft_p95_s"], 2) if ref["ttft_p95_s"] else None,
            "ttft_p95_ratio_target": "<= 1.2",
            "lingxi_turn_last_over_first": (result["multi_turn"].get("lingxi") or {}).get("last_over_first"),
            "turn_target": "<= 1.5",
        }
    one = result["levels"].get("1", {})
    if "lingxi" in one and "llama-cpp-python, in process" in one:
        report.setdefault("targets", {})["tok_s_ratio_at_1_vs_raw"] = round(
            one["lingxi"]["aggregate_tok_s"] / one["llama-cpp-python, in process"]["aggregate_tok_s"], 2)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
