"""Tuned runs as servable models: list them, merge LoRA into the base, export to GGUF.

A run folder (``<home>/adapters/NAME`` or any ``--output``) holds ``report.json`` and
``adapter/`` (LoRA weights, or the whole model for ``--method full``). :func:`merge` writes
``merged/`` (a plain Hugging Face model); :func:`export_gguf` writes ``model.gguf`` for llama.cpp
and checks it: the GGUF's loss on probe texts, computed by llama.cpp, must match the merged
model's, computed by transformers.

GGUF export re-uses the base GGUF's metadata (architecture, hyper-parameters, tokenizer, chat
template) and writes the merged tensors in F16/F32 under llama.cpp's names, with the
query/key rows permuted the way llama.cpp's converter does. Tokens added by the ``vocab`` recipe
are appended to the GGUF vocabulary as user-defined tokens. So export works for Llama-architecture
models whose base was a GGUF (the bundled SmolLM2 or any ``--model x.gguf``); any other base is
refused with the reason.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import UsageError, missing_extra
from lingxi.tune.data import write_json
from lingxi.tune.model import import_torch, load_causal_lm, resolve

PROBES = [
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "合同的违约责任由双方约定，未约定的依照法律规定。",
    "def add(a, b):\n    return a + b\n",
]


def run_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder's report (what was trained on what).

    Raises:
        UsageError: not a finished run folder.
    """
    path = Path(folder).expanduser()
    report = path / "report.json"
    if not report.is_file() or not (path / "adapter").is_dir():
        raise UsageError(f"{path} is not a finished tuning run (no report.json and adapter/)")
    return json.loads(report.read_text(encoding="utf-8"))


def list_adapters(home: Path) -> list[dict[str, Any]]:
    """Every finished run under ``<home>/adapters``: name, recipe, base, steps, eval, exports."""
    root = home / "adapters"
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            info = run_info(folder)
        except (UsageError, json.JSONDecodeError):
            continue
        out.append({"name": folder.name, "path": str(folder), "recipe": info.get("recipe"), "model": info.get("model"),
                    "method": info.get("method"), "steps": info.get("steps"), "eval": info.get("eval"),
                    "merged": (folder / "merged" / "config.json").is_file(),
                    "gguf": str(folder / "model.gguf") if (folder / "model.gguf").is_file() else None,
                    "serve": _serve_lines(folder.name, folder, info)})
    return out


def _serve_lines(name: str, folder: Path, info: dict[str, Any]) -> str | None:
    if (folder / "model.gguf").is_file():
        return serve_snippet(name, str(folder / "model.gguf"))
    try:
        return adapter_snippet(name, folder)
    except (UsageError, OSError):
        return None


def resolve_run(name_or_path: str, home: Path) -> Path:
    """A run by folder path or by name under ``<home>/adapters``."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    named = home / "adapters" / name_or_path
    if named.is_dir():
        return named
    known = [a["name"] for a in list_adapters(home)]
    raise UsageError(f"no tuning run '{name_or_path}'; known: {', '.join(known) or '(none)'}")


def merge(folder: str | os.PathLike[str], home: Path, *, device: str = "cpu") -> Path:
    """Fold the LoRA adapter into the base weights; write ``FOLDER/merged`` (atomically)."""
    folder = Path(folder).expanduser()
    model, tokenizer = merged_model(folder, home, device=device)
    target = folder / "merged"
    tmp = folder / "merged.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def merged_model(folder: Path, home: Path, *, device: str = "cpu") -> tuple[Any, Any]:
    """(base with the run's LoRA folded in, tokenizer), in memory; ``merged/`` when it exists."""
    info = run_info(folder)
    if info.get("recipe") in ("rm", "embed"):
        raise UsageError(f"a {info['recipe']} run is not a chat model; only sft/pretrain/vocab/dpo/ppo runs merge")
    torch, tf = import_torch()
    if (folder / "merged" / "config.json").is_file():
        merged = folder / "merged"
        return (tf.AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32),
                tf.AutoTokenizer.from_pretrained(str(merged)))
    adapter = folder / "adapter"
    if (adapter / "adapter_config.json").is_file():
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise missing_extra("merging LoRA adapters", "train", exc) from exc
        source = resolve(info["config"]["model"])
        base = load_causal_lm(source, home, device=device)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(adapter))
        if len(tokenizer) != base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        extra = adapter / "extra_state.pt"
        if extra.is_file():  # the vocab recipe's trained embedding matrix (new rows included)
            state = torch.load(extra, map_location="cpu", weights_only=False)
            if "embed_tokens" in state:
                with torch.no_grad():
                    base.get_input_embeddings().weight.copy_(state["embed_tokens"])
        model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    else:  # full fine-tuning saved the whole model
        model = tf.AutoModelForCausalLM.from_pretrained(str(adapter), dtype=torch.float32)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(adapter))
    return model.eval(), tokenizer


# ---------------------------------------------------------------- GGUF


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's row order for rotary query/key weights (its converter's ``permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf(folder: str | os.PathLike[str], home: Path, *, outtype: str = "f16", check: bool = True,
                out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write ``FOLDER/model.gguf`` (or ``out``) from the merged model; optionally check it.

    Returns: ``{"gguf", "tensors", "vocab_size", "outtype", "check": {...}}``; the check holds the
    probe loss under transformers and under llama.cpp and their relative difference.

    Raises:
        UsageError: a base that did not come from a Llama-architecture GGUF, or a failed check.
    """
    try:
        import gguf
    except ImportError as exc:
        raise missing_extra("GGUF export", "train", exc) from exc
    if outtype not in ("f16", "f32"):
        raise UsageError(f"outtype must be f16 or f32, got {outtype!r}")
    folder = Path(folder).expanduser()
    info = run_info(folder)
    source = resolve(info["config"]["model"])
    if source.gguf_file is None:
        raise UsageError(f"GGUF export re-uses the base GGUF's metadata and tokenizer; {info['config']['model']} "
                         "is a Hugging Face folder (convert it with llama.cpp's convert_hf_to_gguf.py)")
    model, tokenizer = merged_model(folder, home)
    reader = gguf.GGUFReader(str(source.folder / source.gguf_file))
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise UsageError(f"GGUF export supports Llama-architecture bases; this base is '{arch}'")
    cfg = model.config
    target = Path(out) if out else folder / "model.gguf"
    tmp = target.with_name(target.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    base_vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    new_vocab = model.get_input_embeddings().weight.shape[0]
    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.file_type", "general.name",
            "general.quantization_version", f"{arch}.vocab_size", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type"}
    for key, field in reader.fields.items():
        if key in skip:
            continue
        value = field.contents()
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, vtype)
    writer.add_name(f"{reader.fields['general.name'].contents()} + {folder.name}")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(new_vocab)
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())
    for token_id in range(base_vocab, new_vocab):  # rows the vocab recipe added
        tokens.append(tokenizer.convert_ids_to_tokens(token_id) or f"<extra_{token_id}>")
        types.append(int(gguf.TokenType.USER_DEFINED))
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        if outtype == "f16" and data.ndim == 2:
            data = data.astype(np.float16)
        writer.add_tensor(name, np.ascontiguousarray(data))
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, target)
    result: dict[str, Any] = {"gguf": str(target), "tensors": count, "vocab_size": new_vocab, "outtype": outtype,
                              "added_tokens": new_vocab - base_vocab}
    if check:
        result["check"] = roundtrip_check(model, tokenizer, target)
        if not result["check"]["ok"]:
            raise UsageError(f"GGUF round-trip check failed: {result['check']}")
    write_json(folder / "export.json", result)
    return result


def roundtrip_check(model: Any, tokenizer: Any, gguf_path: Path, texts: list[str] | None = None,
                    tolerance: float = 0.01) -> dict[str, Any]:
    """Mean next-token loss of the same token ids under transformers and under llama.cpp
    (llama-cpp-python, all logits kept); ``ok`` when they differ by less than ``tolerance``."""
    torch, _ = import_torch()
    try:
        import llama_cpp
    except ImportError as exc:
        raise missing_extra("the GGUF round-trip check", "llamacpp", exc) from exc
    texts = texts or PROBES
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=512, logits_all=True, verbose=False, n_threads=1)
    hf_nll = cpp_nll = 0.0
    n = 0
    max_diff = 0.0
    try:
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:500]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float()
            llm.reset()
            llm.eval(ids)
            cpp = torch.tensor(np.asarray(llm.scores[: len(ids)]), dtype=torch.float32)
            target = torch.tensor(ids[1:])
            hf_nll += float(torch.nn.functional.cross_entropy(logits[:-1], target, reduction="sum"))
            cpp_nll += float(torch.nn.functional.cross_entropy(cpp[:-1], target, reduction="sum"))
            n += len(ids) - 1
            max_diff = max(max_diff, float((logits - cpp).abs().max()))
    finally:
        llm.close()
    hf_loss, cpp_loss = hf_nll / n, cpp_nll / n
    rel = abs(cpp_loss - hf_loss) / hf_loss
    return {"probe_tokens": n, "loss_transformers": round(hf_loss, 5), "loss_llamacpp": round(cpp_loss, 5),
            "relative_difference": round(rel, 5), "max_logit_difference": round(max_diff, 4),
            "ok": math.isfinite(rel) and rel < tolerance}


def serve_snippet(name: str, gguf_path: str) -> str:
    """The config lines that serve an exported model through ``lingxi serve`` by name."""
    return f'[models.{name}]\nengine = "llamacpp"\npath = "{gguf_path}"\n'


def adapter_snippet(name: str, folder: str | os.PathLike[str]) -> str:
    """The config lines that serve a run's LoRA adapter over its base on the transformers engine,
    without merging or exporting: several runs over one base are several such entries, each
    answering under its own name, all sharing one copy of the base in memory (see
    :mod:`lingxi.engines.transformers`).

    Raises:
        UsageError: a run that is no chat model (rm, embed), or a vocab run (its resized
            embeddings need the merged or exported model).
    """
    folder = Path(folder).expanduser()
    info = run_info(folder)
    if info.get("recipe") in ("rm", "embed", "vocab"):
        raise UsageError(f"a {info['recipe']} run is not served as an adapter; "
                         + ("export it (lingxi adapters export)" if info["recipe"] == "vocab" else "it is no chat model"))
    adapter = folder / "adapter"
    if not (adapter / "adapter_config.json").is_file():  # full fine-tuning: the folder is the model
        return f'[models.{name}]\nengine = "transformers"\npath = "{adapter}"\n'
    source = resolve(info["config"]["model"])
    lines = [f"[models.{name}]", 'engine = "transformers"', f'path = "{source.folder}"']
    if source.gguf_file:
        lines.append(f'gguf_file = "{source.gguf_file}"')
    lines.append(f'adapters = ["{adapter}"]')
    return "\n".join(lines) + "\n"


__all__ = ["run_info", "list_adapters", "resolve_run", "merge", "export_gguf", "roundtrip_check", "serve_snippet",
           "adapter_snippet"]
