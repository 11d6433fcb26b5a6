"""``lingxi compress bnb``: bitsandbytes 8-bit (LLM.int8) or 4-bit (NF4/FP4) weights, with the same
before/after report as the GGUF path (:mod:`lingxi.compress.report`).

The quantised model is saved as a Hugging Face folder whose ``config.json`` carries the
``quantization_config``: transformers, and so Lingxi's transformers engine (``engine =
"transformers"``, ``path`` = the folder), load it back quantised with no further setting.
bitsandbytes quantises every linear layer of the decoder; the embeddings, norms and the output
head stay in the baseline's dtype (transformers' default), so on a small model whose tied
embedding is a fifth of its weights the file shrinks less than the bit width says.

The baseline is the source as a Hugging Face folder: a folder as it is (the layers bitsandbytes
leaves alone keep its dtype), a GGUF dequantised by transformers to float32 and saved beside the
output (``OUT.f32``), as :func:`lingxi.compress.quantize` widens a quantised GGUF to F16.

bitsandbytes (0.45+) has CPU kernels for both widths. 4-bit layers compute in float32 on a CPU
(about float32's speed) and in bfloat16 on CUDA; LLM.int8 casts activations to float16 and splits
out outlier columns, about half float32's speed on a CPU (it was written for GPUs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.errors import EngineError, UsageError, missing_extra

QUANT_TYPES = ("nf4", "fp4")


def bnb_config(bits: int, quant_type: str = "nf4", double_quant: bool = False, device: str = "cpu") -> Any:
    """The transformers ``BitsAndBytesConfig`` for ``bits`` (8 or 4) on ``device``.

    Raises:
        UsageError: bits other than 8/4, an unknown 4-bit type.
        MissingExtraError: bitsandbytes is not installed.
    """
    if bits not in (8, 4):
        raise UsageError(f"--bits {bits}: bitsandbytes quantises to 8 or 4 bits")
    if quant_type not in QUANT_TYPES:
        raise UsageError(f"--quant-type {quant_type}: known 4-bit types are {', '.join(QUANT_TYPES)}")
    from lingxi.engines.transformers import quiet_bitsandbytes

    quiet_bitsandbytes()
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise missing_extra("bitsandbytes quantisation", "bnb", exc) from exc
    import torch
    import transformers as tf

    if bits == 8:
        return tf.BitsAndBytesConfig(load_in_8bit=True)
    return tf.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                 bnb_4bit_use_double_quant=double_quant,
                                 bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32)


def quantized_share(model: Any) -> dict[str, Any]:
    """How much of ``model`` bitsandbytes holds: layers, parameters and their bytes."""
    import bitsandbytes as bnb
    import torch

    layers = [m for m in model.modules() if isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit))]
    # a 4-bit layer's weight is a packed uint8 tensor holding two values a byte
    packed = sum(m.weight.numel() * (2 if isinstance(m, bnb.nn.Linear4bit) else 1) for m in layers)
    total = sum(p.numel() for p in model.parameters()) - sum(m.weight.numel() for m in layers) + packed
    # the weight's own tensors in the state dict: int8 values plus a scale per row (SCB), or packed
    # 4-bit values plus a scale per block of 64 (absmax) and the 16-value code book
    quant_bytes = sum(t.numel() * t.element_size() for m in layers for k, t in m.state_dict().items()
                      if k.startswith(("weight", "SCB")) and isinstance(t, torch.Tensor))
    return {"quantized_layers": len(layers), "quantized_params": packed, "params": total,
            "quantized_fraction": packed / total if total else 0.0,
            "quantized_bits_per_weight": 8 * quant_bytes / packed if packed else None}


def _hf_baseline(model: str, out: Path, settings: Any) -> Path:
    """The source as a Hugging Face folder: itself when it is one, else float32 saved beside ``out``."""
    from lingxi.evaluate.perplexity import resolve_model

    ref = resolve_model(model, settings, backend="transformers")
    if ref.gguf_file is None and ref.path.is_dir():
        return ref.path
    from lingxi.compress.prune import load_hf, save_hf

    baseline = out.with_name(f"{out.name}.f32")
    if not (baseline / "config.json").is_file():  # kept from an earlier run: the widening is deterministic
        save_hf(*load_hf(model, settings), baseline)
    return baseline


def quantize_bnb(model: str, out: str | Path, *, bits: int, quant_type: str = "nf4", double_quant: bool = False,
                 settings: Any = None, data: str | Path | None = None, report_dir: str | Path | None = None,
                 max_tokens: int | None = 2048, threads: int | None = None) -> dict[str, Any]:
    """Quantise ``model`` (HF folder, .gguf or configured name) with bitsandbytes into the folder ``out``.

    Args:
        bits: 8 (LLM.int8) or 4 (``quant_type`` nf4 or fp4; ``double_quant`` also quantises the
            4-bit blocks' scales).
        data: held-out text for perplexity; the report has no perplexity without it.
        report_dir: write before.json, after.json and report.html here; None = no report.
        max_tokens: perplexity on at most this many tokens of ``data``.
        threads: torch CPU threads for quantising and profiling (default: torch's).

    Returns:
        ``{"source", "baseline", "output", "method", ...}`` with :func:`quantized_share`'s counts
        plus, with a report, the before/after numbers, ``size_ratio``, ``speedup``,
        ``perplexity_change_pct`` and ``nll_p_value``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; bitsandbytes writes a model folder")
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("bitsandbytes quantisation", "bnb", exc) from exc
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = bnb_config(bits, quant_type, double_quant, device)
    import transformers as tf

    from lingxi.compress.prune import save_hf

    if threads:
        torch.set_num_threads(threads)
    baseline = _hf_baseline(model, out, settings)
    if out.resolve() == baseline.resolve():
        raise UsageError(f"output {out} is the source; choose another folder")
    tf.utils.logging.disable_progress_bar()
    try:
        quantised = tf.AutoModelForCausalLM.from_pretrained(str(baseline), local_files_only=True, dtype="auto",
                                                            quantization_config=config, device_map={"": device})
    except (OSError, ValueError, RuntimeError) as exc:
        raise EngineError(f"bitsandbytes could not quantise {baseline} on {device}: {exc}") from exc
    tokenizer = tf.AutoTokenizer.from_pretrained(str(baseline), local_files_only=True)
    share = quantized_share(quantised)
    save_hf(quantised, tokenizer, out)
    del quantised
    method = "int8" if bits == 8 else quant_type + ("-dq" if double_quant else "")
    result: dict[str, Any] = {"source": model, "baseline": str(baseline), "output": str(out),
                              "method": f"bitsandbytes {method}", "device": device, **share}
    if report_dir is not None or data is not None:
        from lingxi.compress.report import before_after, profile

        source_config = tf.AutoConfig.from_pretrained(str(baseline))
        dtype = getattr(source_config, "dtype", None) or getattr(source_config, "torch_dtype", None) or "float32"
        before = profile(baseline, label=str(dtype).removeprefix("torch."), backend="transformers", data=data,
                         max_tokens=max_tokens, threads=threads)
        after = profile(out, label=f"bnb {method}", backend="transformers", data=data, max_tokens=max_tokens,
                        threads=threads)
        result.update(before_after(before, after, report_dir))
    return result
