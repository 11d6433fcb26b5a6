"""Hugging Face transformers: local weights (or a GGUF dequantised by transformers), optional
PEFT adapters, CUDA when present, else CPU. The training side's engine: the weights that
``lingxi.tune`` produces are served here before they are converted for llama.cpp.

Several adapters over one base: every model of this engine that names the same base (``path``,
``gguf_file``, ``device``, ``dtype``) uses one :class:`SharedBase`, the base weights loaded once
with each model's LoRA adapters loaded into it under their own names (peft's ``load_adapter``).
A request selects its model's adapters (``set_adapter``), or switches them off for a model that
names the base alone; the switch and the generation run under the base's lock, so requests to
models over one base run one at a time. ``share_base = false`` gives a model its own copy with
the adapters merged in, the way to trade memory for parallel generation.

A folder written by ``lingxi compress bnb`` loads back with its bitsandbytes 8/4-bit weights (the
``quantization_config`` is in its ``config.json``); the bitsandbytes extra must be installed.

Generation runs ``model.generate`` in a worker thread and streams through a
``TextIteratorStreamer``; stop strings and cancellation stop it through a stopping criterion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo, Prompt, Usage
from lingxi.errors import ContextLengthError, EngineError, ModelFileNotFoundError, UsageError, missing_extra


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


def quiet_bitsandbytes() -> None:
    """Drop two bitsandbytes warnings a user can do nothing about: one on every 8-bit matmul of a
    float32 input (cast to float16 by design) and one, at import, that a CPU kernel could not be
    fetched from the Hugging Face Hub (never reached here; bitsandbytes' own kernel runs instead).
    Where the ``kernels`` package is installed, that fetch logs its own warning from one of its
    modules (which one differs by version), so its logger tree is raised to errors unless the user
    set a level on it: Lingxi never loads a kernel from the Hub.
    Call before bitsandbytes is imported; calling again adds nothing."""
    for name, text in (("bitsandbytes.autograd._functions", "inputs will be cast"),
                       ("bitsandbytes.backends.cpu.ops", "kernels-community")):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(text))
    kernels = logging.getLogger("kernels")
    if kernels.level == logging.NOTSET:
        kernels.setLevel(logging.ERROR)


class SharedBase:
    """One base model in memory, the adapters loaded into it, and the lock its users generate under.

    Built by :func:`acquire_base` (shared) or directly (a model's private copy); the engines that
    use it load and release their adapters through it. What is active (which adapters, or none)
    is part of the model's state, so a caller holds :attr:`lock` from :meth:`selected` to the end
    of its generation.
    """

    def __init__(self, key: tuple[str, ...], model: Any, tokenizer: Any, device: str):
        self.key = key
        self.model = model
        """The plain model, or a ``PeftModel`` around it once an adapter is loaded."""
        self.tokenizer = tokenizer
        self.device = device
        self.lock = threading.Lock()
        self.users = 0
        """Engines that use this base (the registry drops it when the last one closes)."""
        self._adapters: dict[str, list[Any]] = {}  # resolved folder -> [peft adapter name, engines using it]
        self._count = 0

    def load_adapter(self, folder: Path, model_name: str) -> str:
        """Load a LoRA folder into the shared model (once per folder) and return its adapter name.

        Raises:
            ModelFileNotFoundError: no such folder.
            EngineError: peft could not load it (not an adapter of this base).
        """
        if not folder.exists():
            raise ModelFileNotFoundError(f"model '{model_name}': adapter folder not found: {folder}")
        PeftModel = _peft_model_class()
        where = str(folder.resolve())
        with self.lock:  # injecting LoRA layers while another request generates would change its weights
            if where in self._adapters:
                self._adapters[where][1] += 1
                return self._adapters[where][0]
            name = f"adapter{self._count}"  # peft names become module keys: no dots or slashes
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(where, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, where, adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise EngineError(f"model '{model_name}': peft could not load the adapter {folder}: {exc}") from exc
            self.model.to(self.device).eval()
            self._count += 1
            self._adapters[where] = [name, 1]
            return name

    def release_adapter(self, name: str) -> None:
        """One engine less uses the adapter ``name``; the last one unloads it, unless it is the
        only adapter left (peft keeps at least one; it stays switched off for the others)."""
        with self.lock:
            for where, entry in list(self._adapters.items()):
                if entry[0] == name:
                    entry[1] -= 1
                    if entry[1] == 0 and len(self._adapters) > 1:
                        self.model.delete_adapter(name)
                        del self._adapters[where]

    @property
    def adapter_names(self) -> list[str]:
        return [name for name, _ in self._adapters.values()]

    @contextlib.contextmanager
    def selected(self, names: tuple[str, ...]) -> Iterator[None]:
        """Make ``names`` the active adapters (none: the base alone) until the block ends.
        The caller holds :attr:`lock`."""
        if not self._adapters:
            yield
        elif not names:
            with self.model.disable_adapter():
                yield
        else:
            if len(names) == 1:
                self.model.set_adapter(names[0])
            else:  # several at once: their low-rank updates add up, as merging them in order would
                self.model.base_model.set_adapter(list(names))
            yield


_bases: dict[tuple[str, ...], SharedBase] = {}
_bases_lock = threading.Lock()


def acquire_base(key: tuple[str, ...], load: Any) -> SharedBase:
    """The shared base for ``key`` (resolved path, GGUF file, device, dtype), built by ``load()``
    when no model of this process holds it yet. Pair with :func:`release_base`."""
    with _bases_lock:  # also keeps two models that name one base from loading it twice
        base = _bases.get(key)
        if base is None:
            base = _bases[key] = load()
        base.users += 1
        return base


def release_base(base: SharedBase) -> None:
    """One user less; the last one drops the base from the registry (and so from memory)."""
    with _bases_lock:
        base.users -= 1
        if base.users <= 0 and _bases.get(base.key) is base:
            del _bases[base.key]


def _peft_model_class() -> Any:
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise missing_extra("PEFT adapters", "train", exc) from exc
    return PeftModel


class TransformersEngine(ChatEngine):
    engine_name = "transformers"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        path = Path(config.path).expanduser()
        if not path.exists():
            raise ModelFileNotFoundError(f"model '{name}': folder not found: {path}")
        if config.gguf_file and not (path / config.gguf_file).is_file():
            raise ModelFileNotFoundError(f"model '{name}': GGUF file not found: {path / config.gguf_file}")
        adapters = [Path(a).expanduser() for a in config.adapters]
        for adapter in adapters:  # before the base loads: a typo costs no minutes
            if not adapter.exists():
                raise ModelFileNotFoundError(f"model '{name}': adapter folder not found: {adapter}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        quiet_bitsandbytes()  # imported by peft, and by a folder from lingxi compress bnb
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise missing_extra("the transformers engine", "hf", exc) from exc
        transformers.utils.logging.disable_progress_bar()  # loading is not a job for a progress bar
        self._torch = torch
        self._transformers = transformers
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
                 "float16": torch.float16, "bfloat16": torch.bfloat16}[config.dtype]
        key = (str(path.resolve()), config.gguf_file or "", device, str(dtype))

        def load() -> SharedBase:
            kw = {"gguf_file": config.gguf_file} if config.gguf_file else {}
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kw)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(path), local_files_only=True, dtype=dtype, **kw)
            except ImportError as exc:  # a quantised folder whose library is missing
                raise missing_extra(f"model '{name}' (quantised with bitsandbytes)", "bnb", exc) from exc
            except (OSError, ValueError) as exc:
                raise EngineError(f"model '{name}': transformers could not load {path}: {exc}") from exc
            return SharedBase(key, model.to(device).eval(), tokenizer, device)

        self._adapter_names: tuple[str, ...] = ()
        self.shared = config.share_base
        if config.share_base:
            self._base = acquire_base(key, load)
            try:
                for adapter in adapters:
                    self._adapter_names += (self._base.load_adapter(adapter, name),)
            except Exception:
                self.close()  # the adapters loaded so far and the hold on the base
                raise
        else:  # a private copy: the adapters merged in, nothing to switch per request
            self._base = load()
            self._base.users = 1
            for adapter in adapters:
                merged = _peft_model_class().from_pretrained(self._base.model, str(adapter)).merge_and_unload()
                self._base.model = merged.to(device).eval()
        self.tokenizer = self._base.tokenizer
        self.path = path
        self._context = config.context_length or getattr(self._base.model.config, "max_position_embeddings", None)

    @property
    def model(self) -> Any:
        """The model this engine generates with (shared with the other models over its base)."""
        return self._base.model if self._base is not None else None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            engine=self.engine_name,
            context_length=self._context,
            source=str(self.path),
            details={"device": self.device, "dtype": str(self.model.dtype).removeprefix("torch."),
                     "n_params": sum(p.numel() for p in self.model.parameters()),
                     "adapters": len(self._adapter_names), "shared_base": self.shared,
                     "models_on_base": self._base.users},
        )

    def _input_ids(self, prompt: Prompt) -> Any:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, return_tensors="pt").input_ids
        if not getattr(self.tokenizer, "chat_template", None):
            raise UsageError(f"model '{self.name}' has no chat template; send a plain text prompt")
        ids = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return ids["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        params = params or GenerationParams()
        input_ids = self._input_ids(prompt)
        n_prompt = int(input_ids.shape[-1])
        if self._context and n_prompt >= self._context:
            raise ContextLengthError(n_prompt, self._context)
        return self._generate(input_ids.to(self.device), n_prompt, params)

    def _generate(self, input_ids: Any, n_prompt: int, params: GenerationParams) -> Iterator[Chunk]:
        tf, torch = self._transformers, self._torch
        streamer = tf.TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        halt = threading.Event()

        class Halt(tf.StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), halt.is_set(), dtype=torch.bool, device=input_ids.device)

        budget = params.max_tokens
        if self._context:
            budget = min(budget, self._context - n_prompt)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": budget,
            "streamer": streamer,
            "stopping_criteria": tf.StoppingCriteriaList([Halt()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if params.temperature == 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        result: dict[str, Any] = {}
        base = self._base
        if base is None:
            raise EngineError(f"model '{self.name}' is closed")

        def work() -> None:
            try:
                with torch.inference_mode():
                    result["output"] = base.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                result["error"] = exc
                streamer.end()

        # the adapter switch is part of the shared model's state: hold the lock until generation ends
        with base.lock, base.selected(self._adapter_names):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            text, sent, finish = "", 0, None
            exhausted = False  # a spent streamer blocks forever on another read
            try:
                for piece in streamer:
                    text += piece
                    cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
                    if cut >= 0:
                        text, finish = text[:cut], "stop"
                        halt.set()
                    if len(text) > sent:
                        yield Chunk(text=text[sent:])
                        sent = len(text)
                    if finish:
                        break
                else:
                    exhausted = True
            finally:
                halt.set()
                if not exhausted:
                    for _ in streamer:  # drain so the worker can finish
                        pass
                worker.join()
        if "error" in result:
            raise EngineError(f"model '{self.name}': generation failed: {result['error']}") from result["error"]
        output = result["output"][0]
        produced = int(output.shape[-1]) - n_prompt
        if finish is None:
            finish = "length" if produced >= budget and output[-1].item() != self.tokenizer.eos_token_id else "stop"
        yield Chunk(finish_reason=finish, usage=Usage(prompt_tokens=n_prompt, completion_tokens=produced))

    def close(self) -> None:
        """Release this model's adapters and its hold on the base (freed with its last user)."""
        base, self._base = self._base, None
        if base is None:
            return
        for adapter in self._adapter_names:
            base.release_adapter(adapter)
        self._adapter_names = ()
        if self.shared:
            release_base(base)
