"""Hugging Face transformers: local weights (or a GGUF dequantised by transformers), optional
PEFT adapters, CUDA when present, else CPU. The training side's engine: the weights that
``lingxi.tune`` produces are served here before they are converted for llama.cpp.

Generation runs ``model.generate`` in a worker thread and streams through a
``TextIteratorStreamer``; stop strings and cancellation stop it through a stopping criterion.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo, Prompt, Usage
from lingxi.errors import ContextLengthError, EngineError, ModelFileNotFoundError, UsageError, missing_extra


class TransformersEngine(ChatEngine):
    engine_name = "transformers"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        path = Path(config.path).expanduser()
        if not path.exists():
            raise ModelFileNotFoundError(f"model '{name}': folder not found: {path}")
        if config.gguf_file and not (path / config.gguf_file).is_file():
            raise ModelFileNotFoundError(f"model '{name}': GGUF file not found: {path / config.gguf_file}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
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
        load = {"gguf_file": config.gguf_file} if config.gguf_file else {}
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, **load)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, dtype=dtype, **load
            )
        except (OSError, ValueError) as exc:
            raise EngineError(f"model '{name}': transformers could not load {path}: {exc}") from exc
        for adapter in config.adapters:
            model = self._apply_adapter(model, Path(adapter).expanduser())
        self.model = model.to(device).eval()
        self.path = path
        self._context = config.context_length or getattr(model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    def _apply_adapter(self, model: Any, adapter: Path) -> Any:
        if not adapter.exists():
            raise ModelFileNotFoundError(f"model '{self.name}': adapter folder not found: {adapter}")
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise missing_extra("PEFT adapters", "train", exc) from exc
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            engine=self.engine_name,
            context_length=self._context,
            source=str(self.path),
            details={"device": self.device, "dtype": str(self.model.dtype).removeprefix("torch."),
                     "n_params": sum(p.numel() for p in self.model.parameters())},
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

        def work() -> None:
            try:
                with torch.inference_mode():
                    result["output"] = self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                result["error"] = exc
                streamer.end()

        with self._lock:
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
        self.model = None
