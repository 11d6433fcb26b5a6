"""Gateway overhead: latency the gateway adds over calling the upstream directly, and a soak.

Three processes on loopback: a fake OpenAI-compatible upstream (answers at once), the gateway
(``lingxi serve``, a real subprocess with metrics and the JSON access log on), and an open-loop
load generator with a raw HTTP/1.1 keep-alive client (so client overhead is tiny and the same on
both paths). Requests are sent at a fixed rate whatever the answers do (open loop), first
straight to the upstream, then through the gateway; added latency = gateway - direct, at p50
and p95.

With ``--model smollm2`` it also measures the bundled model: TTFT and decode tokens/s streamed
through the gateway vs the engine called in-process, same prompts, greedy, same max_tokens.

Usage::

    python benchmarks/gateway.py                       # 200 req/s, 20 s per path
    python benchmarks/gateway.py --rate 200 --seconds 30 --gateway-cpus 0,1
    python benchmarks/gateway.py --soak 600            # 10-minute soak: RSS growth, errors
    python benchmarks/gateway.py --model smollm2       # TTFT / tokens/s, gateway vs engine
    python benchmarks/gateway.py --empty-stage         # with a third-party pipeline stage that does nothing
    python benchmarks/gateway.py --stages policy,injection,pii   # with the guard's stages on every request

Prints one JSON object. Targets (issue 5): added p50 <= 2 ms, p95 <= 5 ms at 200 req/s;
soak: RSS growth <= 10 %, no errors; bundled model: <= 5 % loss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPLY = "Paris is the capital of France."


# ---------------------------------------------------------------- fake upstream


def _upstream_main(port: int, cpus: list[int] | None) -> None:
    """A minimal, fast OpenAI-compatible server (asyncio protocol, keep-alive)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    words = REPLY.split(" ")
    full = json.dumps({
        "id": "up-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)},
    }).encode()
    events = []
    for i, w in enumerate(words):
        delta = {"content": w if i == 0 else " " + w}
        events.append({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}})
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"

    def response(body: bytes, ctype: bytes) -> bytes:
        return (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body)

    answers = {False: response(full, b"application/json"), True: response(sse, b"text/event-stream")}
    models = response(b'{"object":"list","data":[{"id":"m","object":"model"}]}', b"application/json")

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while True:
                head_end = self.buf.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                head = self.buf[:head_end].lower()
                length = 0
                i = head.find(b"content-length:")
                if i >= 0:
                    length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
                if len(self.buf) < head_end + 4 + length:
                    return
                body = self.buf[head_end + 4:head_end + 4 + length]
                self.buf = self.buf[head_end + 4 + length:]
                if head.startswith(b"get"):
                    self.transport.write(models)
                else:
                    self.transport.write(answers[b'"stream":true' in body.replace(b" ", b"")])

    async def main():
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------- load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.used = time.perf_counter()

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
            return status, body
        i = lower.find(b"content-length:")
        length = int(lower[i + 15:lower.find(b"\r\n", i)]) if i >= 0 else 0
        return status, await self.reader.readexactly(length)


def raw_post(host: str, port: int, path: str, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def open_loop(port: int, path: str, payload: dict, rate: float, seconds: float) -> dict:
    """Send ``rate`` requests/s for ``seconds``; latency of each, measured from its scheduled start."""
    raw = raw_post("127.0.0.1", port, path, payload)
    idle: list[Conn] = []
    latencies: list[float] = []
    errors = 0
    late = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = None
        while idle and conn is None:
            conn = idle.pop()
            if time.perf_counter() - conn.used > 3.0:  # the server may close idle keep-alives (5 s)
                conn.writer.close()
                conn = None
        conn = conn or Conn(*await asyncio.open_connection("127.0.0.1", port))
        start = time.perf_counter()
        try:
            status, _ = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        conn.used = time.perf_counter()
        latencies.append(conn.used - start)
        if status != 200:
            errors += 1
        idle.append(conn)

    tasks = []
    t0 = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late += 1
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    for c in idle:
        c.writer.close()
    latencies.sort()
    return {
        "requests": n, "errors": errors, "achieved_rps": round(n / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 3) if latencies else None,
        "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 3) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
        "mean_ms": round(1000 * statistics.fmean(latencies), 3) if latencies else None,
    }


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def start_gateway(config: dict, home: Path, cpus: list[int] | None,
                  python_path: Path | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    path = home / "lingxi.toml"
    path.write_text(_toml(config), encoding="utf-8")
    env = {**os.environ, "LINGXI_CONFIG": str(path), "LINGXI_HOME": str(home)}
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(python_path), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "lingxi", "serve", "--port", str(port)]
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def _toml(data: dict, prefix: str = "") -> str:
    """Just enough TOML for the benchmark's config."""
    scalars, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            scalars.append(f"{k} = {json.dumps(v)}")
    out = ("\n".join(scalars) + "\n") if scalars else ""
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        out += f"\n[{name}]\n" + _toml(v, name)
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gateway_config(upstream_port: int, stages: list[str] | None = None) -> dict:
    gateway: dict = {"access_log": True, "health_interval_s": 0, "max_concurrency": 256, "cache": {"enabled": False}}
    if stages:
        gateway["stages"] = stages
    return {
        "default_model": "up",
        "models": {"up": {"engine": "openai", "base_url": f"http://127.0.0.1:{upstream_port}/v1", "model": "m",
                          "max_retries": 0, "timeout_s": 30}},
        "gateway": gateway,
    }


EMPTY_STAGE = """
from lingxi.gateway.pipeline import Stage


class EmptyStage(Stage):
    \"\"\"Does nothing: measures what running the pipeline's stage hooks costs.\"\"\"

    name = "bench-empty"

    async def before(self, req):
        pass

    async def wrap(self, req, text):
        async for piece in text:
            yield piece

    async def after(self, req, outcome):
        pass
"""


def install_empty_stage(folder: Path) -> Path:
    """A third-party package with one stage, as pip would install it: a module and a .dist-info
    whose entry point registers it in ``lingxi.stages``. Returns the folder to put on the path."""
    site = folder / "site"
    info = site / "bench_empty_stage-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "bench_empty_stage.py").write_text(EMPTY_STAGE, encoding="utf-8")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-empty-stage\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[lingxi.stages]\nbench-empty = bench_empty_stage:EmptyStage\n",
                                           encoding="utf-8")
    return site


# ---------------------------------------------------------------- scenarios


def overhead(args: argparse.Namespace, home: Path) -> dict:
    import multiprocessing as mp

    up_port = free_port()
    up = mp.get_context("spawn").Process(target=_upstream_main, args=(up_port, args.upstream_cpus), daemon=True)
    up.start()
    wait_port(up_port)
    site = install_empty_stage(home) if args.empty_stage else None
    config = gateway_config(up_port, (["bench-empty"] if args.empty_stage else []) + args.stages)
    gw, gw_port = start_gateway(config, home, args.gateway_cpus, site)
    try:
        if args.client_cpus:
            os.sched_setaffinity(0, args.client_cpus)
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        body = {"model": "m", "messages": msgs, "max_tokens": 16}
        gw_body = {**body, "model": "up"}
        result: dict = {}
        for stream in (False, True):
            key = "stream" if stream else "non_stream"
            # warm up both paths (connections, first-call imports)
            asyncio.run(open_loop(up_port, "/v1/chat/completions", {**body, "stream": stream}, 50, 1))
            asyncio.run(open_loop(gw_port, "/v1/chat/completions", {**gw_body, "stream": stream}, 50, 2))
            direct = asyncio.run(open_loop(up_port, "/v1/chat/completions", {**body, "stream": stream},
                                           args.rate, args.seconds))
            cpu_before = cpu_s(gw.pid)
            through = asyncio.run(open_loop(gw_port, "/v1/chat/completions", {**gw_body, "stream": stream},
                                            args.rate, args.seconds))
            cpu_ms = 1000 * (cpu_s(gw.pid) - cpu_before) / through["requests"]
            result[key] = {
                "direct": direct, "gateway": through,
                # CPU the gateway process spent per request: steadier than latency on a shared machine
                "gateway_cpu_ms_per_request": round(cpu_ms, 3),
                "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
                "added_p95_ms": round(through["p95_ms"] - direct["p95_ms"], 3),
            }
            if stream and args.soak:
                continue
        if args.soak:
            result["soak"] = soak(gw.pid, gw_port, gw_body, args)
        return result
    finally:
        gw.terminate()
        gw.wait(timeout=15)
        up.terminate()


def soak(pid: int, port: int, body: dict, args: argparse.Namespace) -> dict:
    """Steady load for ``args.soak`` seconds in 10 s windows; RSS after each window."""
    windows, samples = [], []
    end = time.time() + args.soak
    while time.time() < end:
        window = asyncio.run(open_loop(port, "/v1/chat/completions", body, args.rate, min(10, end - time.time())))
        windows.append(window)
        samples.append(round(rss_mb(pid), 1))
        print(json.dumps({"soak_window": len(windows), "rss_mb": samples[-1], "p50_ms": window["p50_ms"],
                          "errors": window["errors"]}), file=sys.stderr)
    base = samples[min(2, len(samples) - 1)]  # after warm-up (allocator and caches settle)
    return {
        "seconds": args.soak, "rate": args.rate, "requests": sum(w["requests"] for w in windows),
        "errors": sum(w["errors"] for w in windows), "rss_mb_after_warmup": base, "rss_mb_end": samples[-1],
        "rss_growth_pct": round(100 * (samples[-1] - base) / base, 2), "rss_mb_samples": samples,
        "p50_ms_first_window": windows[0]["p50_ms"], "p50_ms_last_window": windows[-1]["p50_ms"],
    }


PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "Write a short poem about the sea.",
    "Explain what a large language model is in two sentences.",
    "用一句话介绍北京。",
]


def bundled_model(args: argparse.Namespace, home: Path) -> dict:
    """TTFT and decode tokens/s: the engine in-process vs streamed through the gateway."""
    import httpx

    from lingxi.config import load_config
    from lingxi.engines import load_engine
    from lingxi.engines.base import GenerationParams

    params = GenerationParams(max_tokens=args.max_tokens, temperature=0.0, seed=0)
    engine = load_engine(args.model, load_config())
    engine.generate([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, temperature=0))

    def direct(prompt: str) -> tuple[float, float, int]:
        c = engine.generate([{"role": "user", "content": prompt}], params)
        return c.timing.ttft_s, c.timing.decode_tokens_per_s, c.usage.completion_tokens

    config = {"gateway": {"access_log": True, "cache": {"enabled": False}}}
    gw, port = start_gateway(config, home, args.gateway_cpus)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=300)
        client.post("/chat/completions", json={"model": args.model, "max_tokens": 4, "temperature": 0,
                                               "messages": [{"role": "user", "content": "hi"}]})

        def through(prompt: str) -> tuple[float, float, int]:
            body = {"model": args.model, "stream": True, "max_tokens": args.max_tokens, "temperature": 0.0,
                    "seed": 0, "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": prompt}]}
            start = time.perf_counter()
            first = None
            usage = None
            with client.stream("POST", "/chat/completions", json=body) as resp:
                for line in resp.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line[6:])
                    if event["choices"] and event["choices"][0]["delta"].get("content") and first is None:
                        first = time.perf_counter()
                    if event.get("usage"):
                        usage = event["usage"]
            end = time.perf_counter()
            n = usage["completion_tokens"]
            first = first or end
            return first - start, (n - 1) / (end - first) if n > 1 and end > first else 0.0, n

        rows = {"engine": [], "gateway": []}
        for _ in range(args.repeats):
            for p in PROMPTS:  # interleaved, so drift in machine load hits both alike
                rows["engine"].append(direct(p))
                rows["gateway"].append(through(p))
    finally:
        gw.terminate()
        gw.wait(timeout=15)

    def summary(r: list[tuple[float, float, int]]) -> dict:
        return {"ttft_ms_median": round(1000 * statistics.median(x[0] for x in r), 2),
                "decode_tokens_per_s_median": round(statistics.median(x[1] for x in r), 2),
                "completion_tokens": sum(x[2] for x in r)}

    e, g = summary(rows["engine"]), summary(rows["gateway"])
    return {"model": args.model, "max_tokens": args.max_tokens, "runs": len(rows["engine"]), "engine": e,
            "gateway": g,
            "ttft_added_pct": round(100 * (g["ttft_ms_median"] / e["ttft_ms_median"] - 1), 2),
            "tokens_per_s_loss_pct": round(100 * (1 - g["decode_tokens_per_s_median"]
                                                  / e["decode_tokens_per_s_median"]), 2)}


def _cpus(text: str | None) -> list[int] | None:
    return [int(c) for c in text.split(",")] if text else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per measured path")
    ap.add_argument("--soak", type=float, default=0.0, help="also run a soak of this many seconds")
    ap.add_argument("--model", default=None, help="also measure this bundled/configured model (e.g. smollm2)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gateway-cpus", type=_cpus, default=None, help="pin the gateway, e.g. 0,1")
    ap.add_argument("--upstream-cpus", type=_cpus, default=None, help="pin the fake upstream")
    ap.add_argument("--client-cpus", type=_cpus, default=None, help="pin the load generator")
    ap.add_argument("--skip-overhead", action="store_true", help="only the --model measurement")
    ap.add_argument("--empty-stage", action="store_true",
                    help="install a third-party pipeline stage that does nothing (before, wrap, after) and enable it")
    ap.add_argument("--stages", type=lambda v: [s.strip() for s in v.split(",") if s.strip()], default=[],
                    help="also enable these registered stages, e.g. policy,injection,pii (the guard's)")
    args = ap.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "rate": args.rate, "seconds": args.seconds, "empty_stage": args.empty_stage, "stages": args.stages}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if not args.skip_overhead:
            result["overhead"] = overhead(args, home)
        if args.model:
            result["bundled_model"] = bundled_model(args, home)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
