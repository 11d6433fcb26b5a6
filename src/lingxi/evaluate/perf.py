"""Serving performance: TTFT, inter-token latency, tokens/s, requests/s and error rate under load.

A closed loop at each concurrency level: ``c`` workers send streaming chat requests back to back
for ``duration`` seconds (a request still running at the end is awaited and counted). The target
is either an engine in this process (``model``: any configured or bundled model, called through
:meth:`ChatEngine.astream` as the gateway calls it) or any OpenAI-compatible endpoint (``url``:
Lingxi's gateway, a vLLM or llama.cpp server), read as server-sent events with
``stream_options.include_usage`` so completion tokens are the server's count.

- TTFT: request sent -> first non-empty text piece.
- ITL: gaps between text pieces after the first. A piece is usually one token, but not always:
  a token that ends inside a multi-byte character (most Chinese characters for an English-centric
  vocabulary such as SmolLM2's) sends no text, and its bytes go out with the next piece; an engine
  that sends words gives per-word gaps.
- decode tokens/s, per request: ``(completion tokens - 1) / (end - first piece)``, the tokens
  after the first over the time they took; vLLM's ``benchmark_serving`` TPOT is its inverse, and
  :func:`lingxi.engines.base.collect` and ``benchmarks/gateway.py`` count it the same way. It is
  counted in tokens (the server's usage), not pieces, so a Chinese answer is not undercounted.
- tokens/s: completion tokens of the requests finished in the window / wall time; req/s likewise.

The prompts go round in order, so a short prompt file soon repeats itself, and a server with a
prefix cache (Lingxi's llama.cpp engine, llama-server, vLLM with prefix caching) answers a repeated
prompt from its cache: TTFT is then a cache hit's. ``seed`` is sent with every request (OpenAI's
``seed``); Lingxi's llama.cpp engine serves a seeded request from an empty cache (so the same seed
gives the same answer), which makes TTFT the whole prompt's prefill.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lingxi.errors import LingxiError, UpstreamError, UsageError
from lingxi.evaluate.result import EvalRun, data_record, package_versions

DEFAULT_PROMPTS = (
    "Explain in two sentences why the sky is blue.",
    "用两句话解释为什么天空是蓝色的。",
    "Write a haiku about autumn rain.",
    "列出三种常见的排序算法并简单说明。",
)


def read_prompts(path: str | Path | None) -> list[str]:
    """One prompt per line, or JSONL with a "prompt" field; None = a small built-in zh/en set."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"prompts file not found: {path}") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                prompts.append(str(json.loads(line)["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UsageError(f"prompts {path}: line {n} is not JSON with a \"prompt\" field") from None
        else:
            prompts.append(line)
    if not prompts:
        raise UsageError(f"prompts {path} is empty")
    return prompts


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class EngineTarget:
    """An in-process chat engine."""

    def __init__(self, engine: Any, seed: int | None = None):
        self.engine = engine
        self.seed = seed
        self.label = f"engine:{engine.name}"

    async def request(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        from lingxi.engines.base import GenerationParams

        params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=self.seed)
        start = time.perf_counter()
        stamps, tokens = [], None
        async for chunk in self.engine.astream([{"role": "user", "content": prompt}], params):
            if chunk.text:
                stamps.append(time.perf_counter())
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return {"start": start, "stamps": stamps, "tokens": tokens if tokens is not None else len(stamps)}

    async def close(self) -> None:
        return None


class HttpTarget:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed."""

    def __init__(self, url: str, model: str | None, api_key: str | None, timeout_s: float = 120.0,
                 seed: int | None = None):
        import httpx

        self.base = url.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout_s,
                                        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024))
        self.model = model
        self.seed = seed
        self.label = f"url:{self.base}"

    async def resolve_model(self) -> None:
        if self.model:
            return
        import httpx

        try:
            r = await self.client.get(f"{self.base}/models")
            r.raise_for_status()
            self.model = r.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"{self.base}/models gave no model to use ({exc}); pass --model") from None

    async def request(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        if self.seed is not None:
            body["seed"] = self.seed
        import httpx

        start = time.perf_counter()
        stamps, tokens = [], None
        url = f"{self.base}/chat/completions"
        try:
            async with self.client.stream("POST", url, json=body) as r:
                if r.status_code != 200:
                    text = (await r.aread()).decode("utf-8", "replace")[:200]
                    raise UpstreamError(url, text, status=r.status_code)
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("error"):
                        raise UpstreamError(url, str(event["error"])[:200])
                    for choice in event.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            stamps.append(time.perf_counter())
                    if event.get("usage"):
                        tokens = event["usage"].get("completion_tokens")
        except httpx.HTTPError as exc:
            raise UpstreamError(url, f"{type(exc).__name__}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(url, f"an event that is not JSON ({exc.msg})") from exc
        return {"start": start, "stamps": stamps, "tokens": tokens if tokens is not None else len(stamps)}

    async def close(self) -> None:
        await self.client.aclose()


async def _level(target: Any, prompts: list[str], concurrency: int, duration: float, max_tokens: int,
                 counter: list[int]) -> tuple[list[dict[str, Any]], float]:
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    deadline = t0 + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            n = counter[0]
            counter[0] += 1
            prompt = prompts[n % len(prompts)]
            sent = time.perf_counter()
            try:
                r = await target.request(prompt, max_tokens)
            except LingxiError as exc:
                records.append({"c": concurrency, "error": str(exc).splitlines()[0][:200],
                                "latency_s": time.perf_counter() - sent})
                continue
            end = time.perf_counter()
            stamps, tokens = r["stamps"], r["tokens"]
            gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
            decode = (tokens - 1) / (end - stamps[0]) if stamps and tokens and tokens > 1 and end > stamps[0] else None
            records.append({"c": concurrency, "ttft_s": stamps[0] - r["start"] if stamps else None,
                            "latency_s": end - r["start"], "tokens": tokens, "gaps": gaps,
                            "decode_tokens_per_s": decode})

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return records, time.perf_counter() - t0


def _summarise(records: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    gaps = [g for r in ok for g in r["gaps"]]
    lat = [r["latency_s"] for r in ok]
    tokens = sum(r["tokens"] or 0 for r in ok)
    # per request, tokens (not pieces) after the first over the time they took: see the module docstring
    decode = [r["decode_tokens_per_s"] for r in ok if r["decode_tokens_per_s"] is not None]
    out = {
        "requests": len(records), "errors": len(records) - len(ok),
        "error_rate": (len(records) - len(ok)) / len(records) if records else None,
        "requests_per_s": len(ok) / wall, "tokens_per_s": tokens / wall,
        "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
        "itl_p50_s": percentile(gaps, 50), "itl_p95_s": percentile(gaps, 95),
        "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
        "decode_tokens_per_s_p50": percentile(decode, 50),
        "wall_s": wall,
    }
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}


async def _run(target: Any, prompts: list[str], levels: Sequence[int], duration: float, max_tokens: int,
               warmup: bool) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    try:
        if isinstance(target, HttpTarget):
            await target.resolve_model()
        if warmup:  # loads caches; a target that cannot answer at all stops here with its error
            await target.request(prompts[0], 4)
        per_level, items, counter = {}, [], [0]
        for c in levels:
            records, wall = await _level(target, prompts, c, duration, max_tokens, counter)
            per_level[str(c)] = _summarise(records, wall)
            for r in records:
                scores = {k: r[k] for k in ("ttft_s", "latency_s", "tokens", "decode_tokens_per_s")
                          if r.get(k) is not None}
                if r.get("gaps"):
                    scores["itl_mean_s"] = statistics.fmean(r["gaps"])
                items.append({"id": f"c{c}-{len(items)}", "scores": scores,
                              **({"error": r["error"]} if "error" in r else {})})
        return per_level, items
    finally:
        await target.close()


def evaluate_perf(*, model: str | None = None, url: str | None = None, settings: Any = None,
                  concurrency: Sequence[int] = (1, 4, 16), duration: float = 10.0, max_tokens: int = 64,
                  prompts: str | Path | None = None, api_key: str | None = None, engine: Any = None,
                  warmup: bool = True, seed: int | None = None) -> EvalRun:
    """Load-test an in-process engine (``model``) or an endpoint (``url``); see the module docstring.

    The summary has one block per concurrency level (``summary["levels"]["4"]["ttft_p95_s"]``)
    and the first level's numbers flat at the top, so ``eval compare`` lines them up.
    """
    if url is None and model is None and engine is None:
        raise UsageError("give --model (an engine in this process) or --url (an endpoint)")
    if url is not None and engine is not None:
        raise UsageError("give an engine or a --url, not both")
    levels = [int(c) for c in concurrency]
    if not levels or min(levels) < 1:
        raise UsageError("--concurrency must be positive integers, e.g. 1,4,16")
    if duration <= 0 or max_tokens < 1:
        raise UsageError("--duration and --max-tokens must be positive")
    texts = read_prompts(prompts)
    if url is not None:
        target: Any = HttpTarget(url, model, api_key, seed=seed)
    else:
        if engine is None:
            from lingxi.engines import load_engine

            engine = load_engine(model, settings)
        target = EngineTarget(engine, seed)
    per_level, items = asyncio.run(_run(target, texts, levels, duration, max_tokens, warmup))
    first = per_level[str(levels[0])]
    summary = {**{k: v for k, v in first.items() if k != "wall_s"}, "concurrency": levels[0],
               "target": target.label, "levels": per_level}
    return EvalRun(kind="perf", summary=summary, items=items,
                   config={"target": target.label, "model": getattr(target, "model", None) or model,
                           "concurrency": levels, "duration_s": duration, "max_tokens": max_tokens,
                           "temperature": 0.0, "seed": seed, "prompts": len(texts)},
                   data=data_record({"prompts": prompts}) if prompts else {"builtin_prompts": len(texts)},
                   versions=package_versions("httpx", "llama_cpp_python"))


def format_perf(run: EvalRun) -> str:
    head = f"{'conc':>5}{'req':>7}{'err%':>7}{'req/s':>10}{'tok/s':>10}{'TTFT p50':>10}{'p95':>9}{'ITL p50':>9}{'p95':>9}"
    lines = [f"target: {run.summary['target']}", head]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.1f}ms"

    for c, s in run.summary["levels"].items():
        lines.append(f"{c:>5}{s['requests']:>7}{100 * (s['error_rate'] or 0):>7.1f}{s['requests_per_s']:>10.2f}"
                     f"{s['tokens_per_s']:>10.1f}{ms(s['ttft_p50_s']):>10}{ms(s['ttft_p95_s']):>9}"
                     f"{ms(s['itl_p50_s']):>9}{ms(s['itl_p95_s']):>9}")
    return "\n".join(lines)
