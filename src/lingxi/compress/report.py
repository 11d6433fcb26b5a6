"""Before/after reports for compression, through the evaluation harness.

Each model is profiled in a fresh child process (so its peak memory is its own): size on disk,
peak resident memory while loading and generating, greedy decode tokens/s through Lingxi's engine, perplexity on held-out
text (:mod:`lingxi.evaluate.perplexity`) and the greedy answers to a few prompts. The task score
is *fidelity*: chrF (sacrebleu) of the compressed model's answers against the original's, 100
meaning it answers word for word as before. Each profile is an :class:`EvalRun` (``kind =
"profile"``) whose items are the perplexity windows, so ``lingxi eval compare`` tests the
perplexity change by paired bootstrap.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
from pathlib import Path
from typing import Any

from lingxi.evaluate.result import EvalRun, data_record, package_versions

FIDELITY_PROMPTS = (
    "What is the capital of France?",
    "Give three tips for staying healthy.",
    "用一句话介绍长城。",
    "Explain what a neural network is in one sentence.",
)


def _size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _peak_rss_mib() -> float:
    """This process's high-water RSS. ``VmHWM`` belongs to the address space, which exec makes new;
    ``getrusage``'s ``ru_maxrss`` survives exec, so a spawned child would report its parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def _profile_child(model: str, backend: str, data: str | None, prompts: list[str], gen_tokens: int,
                   ppl: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Runs in a child process: load, generate, score; report peak RSS of this process."""
    from lingxi.engines import GenerationParams

    if threads and backend == "transformers":
        import torch

        torch.set_num_threads(threads)

    from lingxi.config import LlamaCppModel, TransformersModel
    from lingxi.engines import create_engine

    out: dict[str, Any] = {"answers": []}
    config = (LlamaCppModel(engine="llamacpp", path=model, n_threads=threads) if backend == "llamacpp" else
              TransformersModel(engine="transformers", path=model, dtype="float32"))
    engine = create_engine("profiled", config)
    rates = []
    params = GenerationParams(max_tokens=gen_tokens, temperature=0.0, seed=0)
    engine.generate([{"role": "user", "content": prompts[0]}], GenerationParams(max_tokens=4, temperature=0.0))
    for prompt in prompts:
        result = engine.generate([{"role": "user", "content": prompt}], params)
        out["answers"].append(result.text)
        if result.usage.completion_tokens > 1:
            rates.append(result.timing.decode_tokens_per_s)
    out["decode_tokens_per_s"] = sorted(rates)[len(rates) // 2] if rates else None
    # peak memory of serving: load + generate (the perplexity pass below holds a float64 copy
    # of a window's logits, 0.2 GB at 512 x 49k, which says nothing about the model)
    out["peak_rss_mib"] = _peak_rss_mib()
    engine.close()
    if data:
        from lingxi.evaluate.perplexity import evaluate_perplexity

        out["perplexity"] = evaluate_perplexity(model, data, backend=backend, progress=False, threads=threads,
                                                **ppl).to_dict()
    return out


def profile(model: str | Path, *, label: str, backend: str = "llamacpp", data: str | Path | None = None,
            prompts: list[str] | None = None, gen_tokens: int = 48, context: int = 512, stride: int = 256,
            max_tokens: int | None = None, threads: int | None = None) -> EvalRun:
    """Profile one model file or folder in a child process -> an :class:`EvalRun` of kind ``profile``.

    ``threads``: CPU threads for the engine (default: all). On a machine shared with other work,
    1 avoids OpenMP workers spinning while they wait for a descheduled partner.
    """
    model = Path(model)
    prompts = list(prompts or FIDELITY_PROMPTS)
    ppl = {"context": context, "stride": stride, "max_tokens": max_tokens}
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        child = pool.submit(_profile_child, str(model), backend, str(data) if data else None, prompts, gen_tokens,
                            ppl, threads).result()
    summary: dict[str, Any] = {"size_mib": _size_bytes(model) / 2**20, "peak_rss_mib": child["peak_rss_mib"],
                               "decode_tokens_per_s": child["decode_tokens_per_s"]}
    items: list[dict[str, Any]] = []
    if "perplexity" in child:
        p = child["perplexity"]
        summary.update(perplexity=p["summary"]["perplexity"], nll=p["summary"]["nll"],
                       bits_per_byte=p["summary"]["bits_per_byte"])
        items = p["items"]
    if backend == "llamacpp" and model.suffix == ".gguf":
        from lingxi.compress.gguf import file_type

        summary["file_type"] = file_type(model)
    return EvalRun(kind="profile", summary=summary, items=items,
                   config={"label": label, "model": str(model), "backend": backend, "prompts": prompts,
                           "answers": child["answers"], "gen_tokens": gen_tokens, "threads": threads, **ppl},
                   data=data_record({"data": data}) if data else {},
                   versions=package_versions("llama_cpp_python", "torch", "transformers", "gguf"))


def before_after(before: EvalRun, after: EvalRun, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Fidelity, ratios and the comparison of two profiles; writes before.json, after.json and
    report.html into ``out_dir`` when given."""
    from lingxi.evaluate.compare import compare_runs

    if before.config.get("answers") and after.config.get("answers"):
        from lingxi.evaluate.generation import score_generation

        summary, _, _ = score_generation(after.config["answers"], [before.config["answers"]], ["chrf"])
        after.summary["fidelity_chrf"] = summary["chrf"]
        before.summary["fidelity_chrf"] = 100.0
    b, a = before.summary, after.summary
    result: dict[str, Any] = {
        "before": {k: v for k, v in b.items()}, "after": {k: v for k, v in a.items()},
        "size_ratio": b["size_mib"] / a["size_mib"] if a.get("size_mib") else None,
        "speedup": a["decode_tokens_per_s"] / b["decode_tokens_per_s"]
        if a.get("decode_tokens_per_s") and b.get("decode_tokens_per_s") else None,
        "perplexity_change_pct": 100 * (a["perplexity"] / b["perplexity"] - 1)
        if a.get("perplexity") and b.get("perplexity") else None,
    }
    comparison = compare_runs(before, after)
    # per-window mean NLL, paired by window: is the perplexity change more than noise?
    result["nll_p_value"] = next((r["p_value"] for r in comparison["rows"] if r["metric"] == "nll"), None)
    if out_dir:
        from lingxi.evaluate.report import render_html, write_html

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        before.save(out / "before.json")
        after.save(out / "after.json")
        write_html(out / "report.html", render_html(before, after, names=(before.config["label"], after.config["label"]),
                                                     comparison=comparison))
        result["report"] = str(out / "report.html")
    return result
