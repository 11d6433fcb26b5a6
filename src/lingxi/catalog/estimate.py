"""Memory, hardware and cost estimates for running or fine-tuning one catalog model.

Memory is in GiB (2^30 bytes), split the way it is spent:

- ``weights``: parameters at the chosen precision. int8/int4 quantize the linear layers (with a
  16-bit scale per group of 64 weights for int4, i.e. 4.25 bits) and keep the embedding and output
  layer in 16 bits, as bitsandbytes, GPTQ and AWQ checkpoints do. LoRA/freeze add their fp32
  trainable copies here.
- ``kv_cache``: ``2 × layers × kv_heads × head_dim × context × batch × 2 bytes`` (GQA/MQA use
  ``kv_heads``; MLA caches ``layers × (kv_lora_rank + rope_dim)`` per token; windowed layers cache at most their
  window, so Mistral 7B stops growing at 4096 tokens and Gemma 3 grows only in its global
  layers). Inference only.
- ``activations``: inference: one chunk of prefill (≤2048 tokens) through one layer plus last-token
  logits. Training: gradient checkpointing (one hidden state per layer), one layer recomputed
  (34·s·b·h bytes, Korthikanti et al. 2022, arXiv:2205.05198, flash attention), fp32 logits and
  their gradient.
- ``gradients`` / ``optimizer``: AdamW (two states per trainable parameter).
- ``overhead``: 0.5 GiB (CUDA context, kernels) plus 8% of the rest (allocator fragmentation).

Bytes per trainable parameter follow the Hugging Face "model training anatomy" accounting: mixed
precision AdamW is 6 (fp32 master + 16-bit copy) + 4 (gradients) + 8 (optimizer) = 18;
pure 16-bit training (``pure_16bit``) is 2 + 2 + 4 = 8, matching LLaMA-Factory's ``18x``/``8x`` rows.

Speed is a roofline, an upper bound and labelled as such: decoding one token reads every active
weight and the sequence's KV cache once, so ``tokens/s ≤ bandwidth / bytes read``; prefill needs
``2 × active params`` FLOPs per token plus attention, so ``tokens/s ≤ FP16 FLOPS / FLOPs per token``.
Several GPUs are treated as ideal tensor parallelism (bandwidth and FLOPS add up).

This module does not measure anything (see :mod:`lingxi.evaluate.bench`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lingxi.catalog.schema import GPU, ModelEntry
from lingxi.errors import UsageError

Precision = Literal["fp32", "fp16", "bf16", "int8", "int4"]
Mode = Literal["inference", "full", "lora", "qlora", "freeze"]

PRECISIONS: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 4.25 / 8}
MODES = ("inference", "full", "lora", "qlora", "freeze")
GIB = 2**30

#: Defaults that shape an estimate (stated in every result's ``assumptions``).
TRAIN_CONTEXT = 2048          # LLaMA-Factory's example SFT configs use cutoff_len 2048
INFER_CONTEXT = 4096
LORA_RANK = 8                 # LLaMA-Factory and PEFT default rank; all linear layers targeted
FREEZE_LAYERS = 2             # LLaMA-Factory's freeze_trainable_layers default
PREFILL_CHUNK = 2048
FIXED_OVERHEAD_GIB = 0.5
FRAGMENTATION = 0.08


@dataclass
class Estimate:
    """What one model needs. Memory in GiB; ``None`` where it cannot be known (API models)."""

    model: str
    precision: str | None
    mode: str
    context: int
    batch: int
    memory_gib: dict[str, float] | None
    params_b: float | None
    trainable_params_b: float | None = None
    gpu: str | None = None
    gpu_memory_gib: float | None = None
    fits: bool | None = None
    gpus_needed: int | None = None
    decode_tokens_per_s: float | None = None
    """Per sequence, roofline upper bound."""
    decode_tokens_per_s_total: float | None = None
    """All ``batch`` sequences together, roofline upper bound."""
    prefill_tokens_per_s: float | None = None
    ttft_s: float | None = None
    """Time to prefill a ``context``-token prompt for one sequence (roofline)."""
    cost: dict[str, Any] | None = None
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("decode_tokens_per_s", "decode_tokens_per_s_total", "prefill_tokens_per_s"):
            if out[key] is not None:
                out[key] = round(out[key], 1)
        if out["ttft_s"] is not None:
            out["ttft_s"] = round(out["ttft_s"], 4)
        return out


def _linear_layer_params(entry: ModelEntry) -> list[tuple[int, int]]:
    """(in, out) of every linear layer in one transformer block (for LoRA), or [] if unknown."""
    a = entry.arch
    if a is None or not (a.hidden_size and a.attention_heads and a.intermediate_size):
        return []
    h, hd = a.hidden_size, a.resolved_head_dim
    kv = (a.kv_heads or a.attention_heads) * hd
    q = a.attention_heads * hd
    attn = [(h, q), (h, kv), (h, kv), (q, h)]
    experts = a.experts or 1
    mlp = [(h, a.intermediate_size)] * (2 if a.gated_mlp else 1) + [(a.intermediate_size, h)]
    return attn + mlp * experts


def lora_parameters(entry: ModelEntry, rank: int = LORA_RANK) -> float | None:
    """LoRA parameters when every linear layer of every block gets a rank-``rank`` adapter."""
    shapes = _linear_layer_params(entry)
    if not shapes or entry.arch is None or entry.arch.layers is None:
        return None
    return float(rank * sum(i + o for i, o in shapes) * entry.arch.layers)


def kv_cache_bytes(entry: ModelEntry, context: int, batch: int = 1, bytes_per_value: float = 2.0) -> float | None:
    """KV cache for ``batch`` sequences of ``context`` tokens (None if the shape is unknown)."""
    if entry.arch is None:
        return None
    per_layer = entry.arch.kv_values_per_layer()
    if per_layer is None:
        return None
    return per_layer * entry.arch.cached_token_layers(context) * batch * bytes_per_value


def total_parameters(entry: ModelEntry) -> float | None:
    """The card's parameter count, else the count implied by a dense architecture, else None."""
    if entry.params_b is not None:
        return entry.params_b * 1e9
    return entry.arch.dense_parameters() if entry.arch is not None else None


def weight_bytes(entry: ModelEntry, precision: str, params: float | None = None) -> float:
    """Bytes of ``params`` (default: all) parameters at ``precision``; quantized formats keep the
    embedding and output layer in 16 bits."""
    params = total_parameters(entry) if params is None else params
    per = PRECISIONS[precision]
    if precision in ("int8", "int4") and entry.arch is not None:
        emb = entry.arch.embedding_parameters() or 0.0
        emb = min(emb, params)
        return (params - emb) * per + emb * 2.0
    return params * per


def estimate(
    entry: ModelEntry,
    *,
    precision: str | None = None,
    mode: str = "inference",
    context: int | None = None,
    batch: int = 1,
    gpu: GPU | None = None,
    pure_16bit: bool = False,
    lora_rank: int = LORA_RANK,
    freeze_layers: int = FREEZE_LAYERS,
) -> Estimate:
    """Estimate memory, GPUs, roofline speed and API cost for ``entry``.

    Args:
        precision: weight precision; default bf16 (int4 for qlora).
        mode: inference, full (all weights trained), lora, qlora (quantized base + LoRA) or freeze
            (only the last ``freeze_layers`` blocks trained).
        context: tokens per sequence (prompt + answer); default 4096 for inference (capped at
            the model's window) and 2048 for training.
        batch: sequences at once.
        gpu: the accelerator to check fit and speed against; None skips both.
        pure_16bit: full fine-tuning with 16-bit weights, gradients and optimizer states
            (LLaMA-Factory ``pure_bf16``) instead of mixed precision.

    Raises:
        UsageError: an unknown precision or mode, a combination that does not exist (QLoRA in
            bf16, full fine-tuning of int4 weights), a context longer than the model's, or an
            open model whose size or shape the catalog does not know.
    """
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}'; expected one of {', '.join(MODES)}")
    if precision is None:
        precision = "int4" if mode == "qlora" else "bf16"
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; expected one of {', '.join(PRECISIONS)}")
    if mode == "qlora" and precision not in ("int4", "int8"):
        raise UsageError(f"qlora trains on a quantized base: use --precision int4 or int8, not {precision}")
    if mode in ("full", "lora", "freeze") and precision in ("int4", "int8"):
        raise UsageError(f"{mode} training needs fp32/bf16/fp16 weights; for a {precision} base use --mode qlora")
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    training = mode != "inference"
    if context is None:
        context = TRAIN_CONTEXT if training else INFER_CONTEXT
        if entry.context_length:
            context = min(context, entry.context_length)
    if context < 1:
        raise UsageError(f"context must be >= 1, got {context}")
    if entry.context_length and context > entry.context_length:
        raise UsageError(f"context {context} is longer than {entry.id}'s {entry.context_length} tokens")

    assumptions: list[str] = []
    cost = _cost(entry)
    if not entry.open_weights:
        if training:
            raise UsageError(f"{entry.id} is API-only: its weights cannot be fine-tuned locally")
        return Estimate(model=entry.id, precision=None, mode=mode, context=context, batch=batch,
                        memory_gib=None, params_b=entry.params_b, cost=cost,
                        assumptions=["API-only model: memory and speed depend on the vendor's servers"])
    a = entry.arch
    params = total_parameters(entry)
    if params is None:
        raise UsageError(f"the catalog does not know {entry.id}'s parameter count, so its memory cannot be estimated")
    if a is None or a.layers is None or a.hidden_size is None or a.kv_values_per_token() is None:
        raise UsageError(f"the catalog does not know {entry.id}'s architecture (layers, hidden size, heads), "
                         "so its KV cache and activations cannot be estimated")
    if entry.params_b is None:
        assumptions.append(f"parameter count {params / 1e9:.2f}B computed from the architecture (the card states none)")
    h, vocab = a.hidden_size, a.vocab_size or 0

    trainable = 0.0
    gradients = optimizer = 0.0
    if mode == "inference":
        weights = weight_bytes(entry, precision)
    elif mode == "full":
        trainable = params
        if pure_16bit or precision == "fp32":
            w = 4.0 if precision == "fp32" else 2.0
            weights, gradients, optimizer = params * w, params * w, params * 2 * w
            assumptions.append(f"{'fp32' if precision == 'fp32' else 'pure 16-bit'} AdamW: "
                               f"{int(w * 4)} bytes per parameter")
        else:
            weights, gradients, optimizer = params * 6, params * 4, params * 8
            assumptions.append("mixed-precision AdamW: 18 bytes per parameter (fp32 master + 16-bit copy, "
                               "fp32 gradients, two fp32 optimizer states)")
    elif mode in ("lora", "qlora"):
        lora = lora_parameters(entry, lora_rank)
        if lora is None:
            raise UsageError(f"the catalog does not know {entry.id}'s layer shapes, so LoRA cannot be sized")
        trainable = lora
        weights = weight_bytes(entry, precision) + lora * 4
        gradients, optimizer = lora * 4, lora * 8
        assumptions.append(f"LoRA rank {lora_rank} on every linear layer, adapters in fp32 with AdamW")
        if a.is_mla:
            assumptions.append("MLA projections sized as standard attention for LoRA (approximate)")
    else:  # freeze
        per_layer = (params - (a.embedding_parameters() or 0.0)) / a.layers
        n = min(freeze_layers, a.layers)
        trainable = per_layer * n
        weights = weight_bytes(entry, precision, params - trainable) + trainable * 4
        gradients, optimizer = trainable * 4, trainable * 8
        assumptions.append(f"last {n} blocks trained in fp32 with AdamW, the rest frozen at {precision}")

    if training:
        kv = 0.0
        ckpt = batch * context * h * 2 * a.layers
        layer = 34 * batch * context * h
        logits = batch * context * vocab * 4 * 2
        activations = ckpt + layer + logits
        assumptions.append(f"gradient checkpointing, flash attention, {context} tokens × batch {batch}")
    else:
        kv = kv_cache_bytes(entry, context, batch) or 0.0
        chunk = min(context, PREFILL_CHUNK)
        inter = a.intermediate_size or 4 * h
        activations = batch * chunk * (4 * h + 3 * inter) * 2 + batch * vocab * 4
        assumptions.append(f"KV cache in 16 bits for {context} tokens × batch {batch}; "
                           f"prefill in chunks of {PREFILL_CHUNK} tokens")
    if precision in ("int8", "int4"):
        assumptions.append(f"{precision}: linear layers quantized, embeddings and output layer kept in 16 bits")
    if a.experts:
        assumptions.append("MoE: every expert is resident; decoding reads only the active parameters")

    parts = {"weights": weights, "kv_cache": kv, "activations": activations,
             "gradients": gradients, "optimizer": optimizer}
    overhead = FIXED_OVERHEAD_GIB * GIB + FRAGMENTATION * sum(parts.values())
    memory = {k: v / GIB for k, v in parts.items()}
    memory["overhead"] = overhead / GIB
    memory["total"] = sum(memory.values())
    memory = {k: round(v, 3) for k, v in memory.items()}

    result = Estimate(model=entry.id, precision=precision, mode=mode, context=context, batch=batch,
                      memory_gib=memory, params_b=round(params / 1e9, 3),
                      trainable_params_b=round(trainable / 1e9, 4) if training else None,
                      cost=cost, assumptions=assumptions)
    if gpu is not None:
        _fit_and_speed(result, entry, gpu, precision, kv)
    return result


def _fit_and_speed(result: Estimate, entry: ModelEntry, gpu: GPU, precision: str, kv: float) -> None:
    total = result.memory_gib["total"]
    result.gpu = gpu.id
    result.gpu_memory_gib = gpu.memory_gib
    result.fits = total <= gpu.memory_gib
    result.gpus_needed = max(1, math.ceil(total / gpu.memory_gib))
    if result.mode != "inference":
        return
    n = result.gpus_needed
    active = entry.active_params or total_parameters(entry)
    active_bytes = weight_bytes(entry, precision, active)
    if gpu.bandwidth_gbs:
        per_seq_kv = kv / result.batch
        step_bytes = active_bytes + kv  # one decode step reads the weights once for the whole batch
        steps_per_s = n * gpu.bandwidth_gbs * 1e9 / step_bytes
        result.decode_tokens_per_s = steps_per_s
        result.decode_tokens_per_s_total = steps_per_s * result.batch
        if per_seq_kv:
            result.assumptions.append("decode reads the full KV cache each step (context fully used)")
    if gpu.fp16_tflops:
        a = entry.arch
        attn = 4 * a.layers * (result.context / 2) * a.attention_heads * a.resolved_head_dim
        flops_per_token = 2 * active + attn
        result.prefill_tokens_per_s = n * gpu.fp16_tflops * 1e12 / flops_per_token
        result.ttft_s = result.context / result.prefill_tokens_per_s
    result.assumptions.append(
        f"speeds are roofline upper bounds on {n} × {gpu.id} (ideal tensor parallelism), not measurements")


def _cost(entry: ModelEntry) -> dict[str, Any] | None:
    p = entry.price
    if p is None:
        return None
    return {
        "input_per_mtok": p.input_per_mtok,
        "output_per_mtok": p.output_per_mtok,
        "blended_per_mtok": round(p.blended(), 4) if p.blended() is not None else None,
        "blend": "3:1 prompt:completion tokens",
        "currency": p.currency,
        "as_of": p.as_of,
        "source": p.source,
    }
