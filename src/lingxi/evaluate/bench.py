"""Run a configured model on this machine and put the measurements next to the estimate.

The model runs through :func:`lingxi.engines.load_engine`, like every other caller. Timing is the
engines' own (:class:`lingxi.engines.Timing`): time to first token and decode tokens/s after it.
With no ``--gpu`` the roofline uses this machine, measured here: memory bandwidth from copying a
256 MiB array, compute from a float32 matrix product (numpy's BLAS), so the estimate and the
measurement describe the same hardware.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

from lingxi.catalog.estimate import estimate
from lingxi.catalog.registry import Catalog, CatalogModelNotFoundError
from lingxi.catalog.schema import GPU
from lingxi.errors import EngineError, UsageError

DEFAULT_PROMPT = "Explain in three sentences why the sky is blue."


def measure_host(copy_mib: int = 256, matmul_n: int = 1024, repeats: int = 5) -> GPU:
    """This machine as a :class:`GPU`: measured bandwidth (GB/s) and float32 matmul TFLOPS."""
    src = np.ones(copy_mib * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    bandwidth = 2 * src.nbytes / best / 1e9  # one read and one write per element
    a = np.random.default_rng(0).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = a.T.copy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    tflops = 2 * matmul_n**3 / best / 1e12
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return GPU(
        id="this-host", name=f"this machine ({os.cpu_count()} CPUs, measured)", vendor="local",
        memory_gib=round(memory, 1) or 1.0, bandwidth_gbs=round(bandwidth, 1), fp16_tflops=round(tflops, 4),
        notes=f"measured: {copy_mib} MiB array copy (best of {repeats}); float32 {matmul_n}² matmul "
              f"(best of {repeats}), used in place of FP16 throughput",
    )


def _precision_of(config: Any) -> str | None:
    """The precision a configured model runs at, when its config says so."""
    engine = getattr(config, "engine", None)
    if engine == "llamacpp":
        name = (getattr(config, "path", None) or "q4_1").lower()  # None = the bundled Q4_1 SmolLM2
        for tag, precision in (("q2", "int4"), ("q3", "int4"), ("q4", "int4"), ("q5", "int4"), ("q6", "int8"),
                               ("q8", "int8"), ("bf16", "bf16"), ("f16", "fp16"), ("f32", "fp32")):
            if tag in name:
                return precision
        return None
    if engine in ("transformers", "vllm"):
        return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(getattr(config, "dtype", ""), None)
    return None


def bench(
    name: str,
    settings: Any,
    catalog: Catalog,
    *,
    catalog_id: str | None = None,
    precision: str | None = None,
    gpu: GPU | None = None,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 64,
    runs: int = 3,
) -> dict[str, Any]:
    """Generate ``runs`` times with the configured model ``name`` and compare with the estimate.

    Args:
        catalog_id: the catalog entry describing the model (default: ``name`` or its alias).
        precision: the precision to estimate at (default: read from the model's config).
        gpu: hardware for the roofline (default: this machine, measured).

    Returns:
        ``{"model", "catalog_id", "engine", "measured": {...}, "estimate": {...} | None,
        "hardware": {...}, "measured_vs_estimate": {...}}``.

    Raises:
        ModelNotFoundError: ``name`` is not a configured or bundled model.
        UsageError: ``runs`` or ``max_tokens`` below 1.
        EngineError: the model answered with no tokens, so there is nothing to time.
    """
    from lingxi.engines import GenerationParams, load_engine

    if runs < 1 or max_tokens < 1:
        raise UsageError("--runs and --max-tokens must be >= 1")
    config = settings.model(name)
    entry, note = None, None
    try:
        entry = catalog.model(catalog_id or name)
    except CatalogModelNotFoundError as exc:
        if catalog_id:
            raise
        note = f"no catalog entry for '{name}' ({exc}); pass --catalog-id to compare with an estimate"
    engine = load_engine(name, settings)
    messages = [{"role": "user", "content": prompt}]
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    engine.generate(messages, GenerationParams(max_tokens=4, temperature=0.0, seed=0))  # warm-up: load, caches
    results = [engine.generate(messages, params) for _ in range(runs)]
    if not any(r.usage.completion_tokens > 1 for r in results):
        raise EngineError(f"{name} produced no tokens to time (finish reason '{results[-1].finish_reason}')")
    prompt_tokens = results[-1].usage.prompt_tokens
    completion = [r.usage.completion_tokens for r in results]
    measured = {
        "runs": runs,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "ttft_s": round(statistics.median(r.timing.ttft_s for r in results), 4),
        "decode_tokens_per_s": round(statistics.median(r.timing.decode_tokens_per_s for r in results), 1),
        "prefill_tokens_per_s": round(prompt_tokens / statistics.median(r.timing.ttft_s for r in results), 1)
        if prompt_tokens else None,
    }
    hardware = gpu or measure_host()
    out: dict[str, Any] = {
        "model": name, "catalog_id": entry.id if entry else None, "engine": config.engine,
        "measured": measured, "estimate": None, "hardware": hardware.model_dump(exclude_none=True),
        "measured_vs_estimate": None,
    }
    if note:
        out["note"] = note
    if entry is not None and entry.open_weights:
        precision = precision or _precision_of(config) or "bf16"
        context = max(1, prompt_tokens + max(completion))
        est = estimate(entry, precision=precision, context=context, gpu=hardware)
        if est.prefill_tokens_per_s and prompt_tokens:
            est.ttft_s = prompt_tokens / est.prefill_tokens_per_s
        out["estimate"] = est.to_dict()
        out["measured_vs_estimate"] = {
            "decode": round(measured["decode_tokens_per_s"] / est.decode_tokens_per_s, 3)
            if est.decode_tokens_per_s else None,
            "prefill": round(measured["prefill_tokens_per_s"] / est.prefill_tokens_per_s, 3)
            if est.prefill_tokens_per_s and measured["prefill_tokens_per_s"] else None,
        }
    return out
