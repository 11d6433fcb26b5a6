"""``lingxi compress prune``: magnitude (unstructured) or structured (MLP channel) pruning.

- ``magnitude``: ``torch.nn.utils.prune.global_unstructured`` with L1 magnitude over every linear
  layer of the decoder blocks (embeddings and the output head are left alone), made permanent
  with ``prune.remove``. The zeros are stored densely, so the file does not shrink; the report
  gives the sparsity reached, for sparse kernels or a compressor to use.
- ``structured``: removes whole MLP channels: for each block, the intermediate channels with the
  smallest ``|gate row| * |up row| * |down column|`` (L2 norms) go, and ``intermediate_size``
  shrinks, so the saved model is smaller and faster with no special kernel.
Attention heads are not removed: with grouped-query attention (SmolLM2: 9 query heads over 3
key/value heads) a head can only go with its whole group.

The result is a Hugging Face folder (safetensors) that the transformers engine serves; the
before/after report profiles the unpruned export against it with the same backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.errors import UsageError

METHODS = ("magnitude", "structured")


def load_hf(model: str, settings: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 on the CPU, from a HF folder, a .gguf (dequantised) or a name."""
    from lingxi.evaluate.perplexity import TransformersScorer, resolve_model

    scorer = TransformersScorer(resolve_model(model, settings, backend="transformers"), context=0)
    hf = scorer.model
    if getattr(getattr(hf, "hf_quantizer", None), "quantization_config", None) is not None and \
            getattr(hf.hf_quantizer.quantization_config, "quant_method", None) in ("gguf", "GGUF"):
        # transformers dequantises a GGUF to float32 on load but keeps a "gguf" tag that refuses
        # save_pretrained; the weights are plain tensors, so the tag is dropped.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
    return hf, scorer.tokenizer


def save_hf(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """``save_pretrained`` into a temporary folder, then renamed into place (no half-written model)."""
    import shutil

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _linear_layers(model: Any) -> list[tuple[Any, str]]:
    import torch

    return [(m, "weight") for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}" and "lm_head" not in name]


def sparsity(model: Any) -> float:
    """Fraction of zero weights in the decoder blocks' linear layers."""
    layers = _linear_layers(model)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in layers)
    return zeros / max(1, sum(m.weight.numel() for m, _ in layers))


def magnitude_prune(model: Any, amount: float) -> Any:
    import torch.nn.utils.prune as prune

    layers = _linear_layers(model)
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in layers:
        prune.remove(module, name)
    return model


def structured_prune(model: Any, amount: float) -> Any:
    """Remove ``amount`` of each block's MLP channels (see the module docstring)."""
    import torch

    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not blocks or not hasattr(blocks[0], "mlp") or not hasattr(blocks[0].mlp, "gate_proj"):
        raise UsageError("structured pruning needs a Llama-style model (model.layers[i].mlp.gate/up/down_proj)")
    size = blocks[0].mlp.gate_proj.out_features
    keep_n = max(1, int(round(size * (1 - amount))))
    with torch.no_grad():
        for block in blocks:
            mlp = block.mlp
            score = mlp.gate_proj.weight.norm(dim=1) * mlp.up_proj.weight.norm(dim=1) * mlp.down_proj.weight.norm(dim=0)
            keep = score.topk(keep_n).indices.sort().values
            for proj, dim in ((mlp.gate_proj, 0), (mlp.up_proj, 0), (mlp.down_proj, 1)):
                w = proj.weight.index_select(dim, keep).clone()
                proj.weight = torch.nn.Parameter(w)
                if dim == 0:
                    proj.out_features = keep_n
                    if proj.bias is not None:
                        proj.bias = torch.nn.Parameter(proj.bias[keep].clone())
                else:
                    proj.in_features = keep_n
    model.config.intermediate_size = keep_n
    return model


def prune_model(model: str, out: str | Path, *, amount: float = 0.3, method: str = "magnitude", settings: Any = None,
                data: str | Path | None = None, report_dir: str | Path | None = None,
                max_tokens: int | None = 1024) -> dict[str, Any]:
    """Prune ``model`` and save it as a HF folder at ``out``; with ``data``/``report_dir`` profile
    the unpruned export (saved beside it as ``<out>.base``) against the pruned one."""
    if method not in METHODS:
        raise UsageError(f"unknown pruning method '{method}'; known: {', '.join(METHODS)}")
    if not 0 < amount < 1:
        raise UsageError(f"--amount must be between 0 and 1 (a fraction to remove), got {amount}")
    out = Path(out)
    hf, tokenizer = load_hf(model, settings)
    base = None
    if report_dir is not None or data is not None:
        base = save_hf(hf, tokenizer, out.with_name(out.name + ".base"))
    (magnitude_prune if method == "magnitude" else structured_prune)(hf, amount)
    reached = sparsity(hf)
    save_hf(hf, tokenizer, out)
    result: dict[str, Any] = {"output": str(out), "method": method, "amount": amount, "sparsity": reached,
                              "parameters": sum(p.numel() for p in hf.parameters())}
    if base is not None:
        from lingxi.compress.report import before_after, profile

        before = profile(base, label="unpruned", backend="transformers", data=data, max_tokens=max_tokens)
        after = profile(out, label=f"{method} {amount:.0%}", backend="transformers", data=data,
                        max_tokens=max_tokens)
        after.summary["sparsity"] = reached
        before.summary["sparsity"] = 0.0
        result.update(before_after(before, after, report_dir))
    return result
