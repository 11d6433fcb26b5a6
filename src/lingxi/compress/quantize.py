"""``lingxi compress quantize``: a GGUF requantised by llama.cpp, with its before/after report.

When the source is itself quantised (the bundled SmolLM2 is Q4_1) it is first widened to F16
(:func:`lingxi.compress.gguf.to_f16`) and the F16 file is both what llama.cpp quantises and the
report's baseline. The F16 then holds the Q4_1 values exactly: the original BF16 weights are
not in any installed package, so "F16" here means "the source's own values, uncompressed".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.compress.gguf import file_type, quantize, tensor_table, to_f16
from lingxi.errors import UsageError

_UNQUANTISED = ("ALL_F32", "MOSTLY_F16", "MOSTLY_BF16")


def quantize_model(model: str, out: str | Path, ftype: str, *, settings: Any = None, via_f16: bool | None = None,
                   data: str | Path | None = None, report_dir: str | Path | None = None,
                   threads: int | None = None, max_tokens: int | None = 2048, output_type: str | None = None,
                   embedding_type: str | None = None, tensor_types: dict[str, str] | None = None,
                   pure: bool = False) -> dict[str, Any]:
    """Quantise ``model`` (a .gguf path or a configured llama.cpp model) to ``ftype`` at ``out``.

    Args:
        via_f16: widen a quantised source to F16 first (default: yes when the source is quantised).
        data: held-out text for perplexity; the report has no perplexity without it.
        report_dir: write before.json, after.json and report.html here; None = no report.
        max_tokens: perplexity on at most this many tokens of ``data``.
        threads: CPU threads for quantising and profiling (default: all).
        output_type, embedding_type, tensor_types, pure: llama-quantize's own overrides, see
            :func:`lingxi.compress.gguf.quantize`.

    Returns:
        ``{"source", "baseline", "output", "ftype", ...}`` plus, with a report, the before/after
        numbers, ``size_ratio``, ``speedup``, ``perplexity_change_pct`` and ``nll_p_value``.
    """
    from lingxi.evaluate.perplexity import resolve_model

    ref = resolve_model(model, settings, backend="llamacpp")
    out = Path(out)
    if out.suffix.lower() != ".gguf":
        raise UsageError(f"output {out} should end in .gguf")
    if out.resolve() == ref.path.resolve():
        raise UsageError(f"output {out} is the source; choose another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    source_type = file_type(ref.path)
    if via_f16 is None:
        via_f16 = source_type not in _UNQUANTISED
    baseline = ref.path
    if via_f16:
        baseline = out.with_name(f"{out.stem}.f16.gguf")
        to_f16(ref.path, baseline)
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
        quantize(baseline, out, ftype, threads=threads, output_type=output_type, embedding_type=embedding_type,
                 tensor_types=tensor_types, pure=pure)
    table = tensor_table(out)
    result: dict[str, Any] = {"source": str(ref.path), "source_type": source_type, "baseline": str(baseline),
                              "output": str(out), "ftype": ftype.upper(), "bits_per_weight": table["bits_per_weight"],
                              "tensor_types": {k: v["tensors"] for k, v in table["by_type"].items()}}
    if report_dir is not None or data is not None:
        from lingxi.compress.report import before_after, profile

        before = profile(baseline, label=file_type(baseline), data=data, max_tokens=max_tokens, threads=threads)
        after = profile(out, label=ftype.upper(), data=data, max_tokens=max_tokens, threads=threads)
        result.update(before_after(before, after, report_dir))
    return result
