"""Perplexity of a causal language model on a text file, by sliding window.

The text is tokenised once; windows of ``context`` tokens advance by ``stride``, and each window
scores only the tokens the previous windows did not, so every token after the first window sees
at least ``context - stride`` tokens of history (at least one when ``stride == context``), as in
Hugging Face's perplexity guide.
The first token of the file is context only. No BOS token is added, so both backends score the
same token ids.

Two backends compute log-probabilities from the model's own logits:
- ``llamacpp``: a GGUF file through llama-cpp-python with ``logits_all`` (on the process's one
  llama.cpp thread, see :mod:`lingxi.engines.llamacpp`);
- ``transformers``: a Hugging Face folder, or a GGUF file that transformers dequantises, in
  float32 on the CPU (or CUDA when present).
The same weights give the same number through both, within the arithmetic of the kernels
(llama.cpp multiplies quantised blocks with 8-bit activations; transformers in float32).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import EngineError, ModelFileNotFoundError, UsageError, missing_extra
from lingxi.evaluate.result import EvalRun, data_record, package_versions

BACKENDS = ("llamacpp", "transformers")


@dataclass
class ModelRef:
    """Where a model's weights are and which backend reads them."""

    backend: str
    path: Path
    gguf_file: str | None = None  # transformers only: a GGUF inside ``path``

    @property
    def label(self) -> str:
        return str(self.path / self.gguf_file) if self.gguf_file else str(self.path)


def resolve_model(spec: str, settings: Any = None, backend: str | None = None) -> ModelRef:
    """A .gguf path, a Hugging Face folder, or a configured model name -> :class:`ModelRef`.

    ``backend`` forces the reader: ``transformers`` on a .gguf file loads it dequantised.
    """
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
    path = Path(spec).expanduser()
    if not path.exists() and settings is not None and not spec.endswith(".gguf") and "/" not in spec:
        config = settings.model(spec)  # raises ModelNotFoundError naming the known models
        if config.engine == "llamacpp":
            from lingxi.engines.bundled import smollm2_gguf

            path = Path(config.path).expanduser() if config.path else smollm2_gguf()
        elif config.engine == "transformers":
            path = Path(config.path).expanduser()
            if config.gguf_file:
                path = path / config.gguf_file
        else:
            raise UsageError(f"model '{spec}' runs on engine '{config.engine}', which gives no logits; "
                             "perplexity needs a llamacpp or transformers model")
    if not path.exists():
        raise ModelFileNotFoundError(f"model not found: {spec} (a .gguf file, a model folder or a configured name)")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UsageError(f"model file {path} is not a .gguf file; give a GGUF file or a Hugging Face folder")
        if (backend or "llamacpp") == "llamacpp":
            return ModelRef("llamacpp", path)
        return ModelRef("transformers", path.parent, path.name)
    if backend == "llamacpp":
        raise UsageError(f"{path} is a folder; llama.cpp reads a .gguf file")
    if not (path / "config.json").is_file():
        raise ModelFileNotFoundError(f"model folder {path} has no config.json (not a Hugging Face model folder)")
    return ModelRef("transformers", path)


class LlamaCppScorer:
    """Log-probabilities from llama.cpp logits (``logits_all``)."""

    def __init__(self, ref: ModelRef, context: int, threads: int | None = None):
        try:
            import llama_cpp
        except ImportError as exc:
            raise missing_extra("perplexity of GGUF models", "llamacpp", exc) from exc
        from lingxi.engines.llamacpp import llama_thread

        self._thread = llama_thread()
        n = threads or len(os.sched_getaffinity(0))
        try:
            self.llm = self._thread.submit(
                llama_cpp.Llama, model_path=str(ref.path), n_ctx=context, n_batch=context, n_ubatch=min(context, 512),
                logits_all=True, n_threads=n, n_threads_batch=n, verbose=False).result()
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {ref.path}: {exc}") from exc
        self.n_vocab = self.llm.n_vocab()

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        """``out[j] = log p(tokens[j + 1] | tokens[:j + 1])``."""
        def run() -> np.ndarray:
            self.llm.reset()
            self.llm.eval(tokens)
            return np.array(self.llm.scores[: len(tokens) - 1], dtype=np.float64)

        logits = self._thread.submit(run).result()
        top = logits.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        return logits[np.arange(len(tokens) - 1), tokens[1:]] - lse

    def close(self) -> None:
        self._thread.submit(self.llm.close).result()


class TransformersScorer:
    """Log-probabilities from a transformers causal LM in float32."""

    def __init__(self, ref: ModelRef, context: int, threads: int | None = None):
        from lingxi.engines.transformers import quiet_bitsandbytes

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        quiet_bitsandbytes()  # a folder from lingxi compress bnb imports it
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise missing_extra("perplexity of Hugging Face models", "hf", exc) from exc
        transformers.utils.logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        load = {"gguf_file": ref.gguf_file} if ref.gguf_file else {}
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(ref.path), local_files_only=True, **load)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(ref.path), local_files_only=True, dtype=torch.float32, **load).to(self.device).eval()
        except ImportError as exc:  # a quantised folder whose library is missing
            raise missing_extra(f"{ref.label} (quantised with bitsandbytes)", "bnb", exc) from exc
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EngineError(f"transformers could not load {ref.label}: {str(exc).splitlines()[0]}") from exc
        self.n_vocab = self.model.config.vocab_size

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any) -> TransformersScorer:
        """A scorer over a model already in memory (a student being distilled, a pruned copy)."""
        import torch

        self = cls.__new__(cls)
        self.torch, self.model, self.tokenizer = torch, model, tokenizer
        self.device = next(model.parameters()).device
        self.n_vocab = model.config.vocab_size
        return self

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            self.model.eval()
            ids = torch.tensor([tokens], device=self.device)
            logits = self.model(ids).logits[0, :-1].double()
            lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        return lp.cpu().numpy()

    def close(self) -> None:
        self.model = None


def load_scorer(ref: ModelRef, context: int, threads: int | None = None) -> Any:
    return (LlamaCppScorer if ref.backend == "llamacpp" else TransformersScorer)(ref, context, threads)


def read_text(path: str | Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"data file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"data {path}: byte {exc.start} is not UTF-8") from None
    if not text.strip():
        raise UsageError(f"data {path} is empty")
    return text


def sliding_nll(tokens: list[int], logprobs: Callable[[list[int]], np.ndarray], context: int, stride: int,
                progress: bool = False) -> list[dict[str, Any]]:
    """Per window: ``{"id", "scores": {"nll", "tokens"}}`` with the summed NLL of its new tokens."""
    if len(tokens) < 2:
        raise UsageError("the text is shorter than two tokens; nothing to predict")
    if not 0 < stride <= context or context < 2:
        raise UsageError("need 0 < stride <= context and context >= 2")
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(tokens) - 1, desc="perplexity", unit="tok", file=sys.stderr, leave=False)
    history = max(1, context - stride)  # tokens of a window that only give context
    items, scored = [], 1  # tokens[:scored] are predicted already (token 0 is context only)
    while scored < len(tokens):
        begin = max(0, scored - history)
        end = min(begin + context, len(tokens))
        lp = logprobs(tokens[begin:end])
        new = lp[scored - begin - 1:]
        items.append({"id": str(len(items)), "scores": {"nll": float(-new.sum()), "tokens": len(new)},
                      "span": [scored, end]})
        if bar:
            bar.update(end - scored)
        scored = end
    if bar:
        bar.close()
    return items


def evaluate_perplexity(model: str, data: str | Path, *, settings: Any = None, backend: str | None = None,
                        context: int = 512, stride: int = 256, max_tokens: int | None = None,
                        threads: int | None = None, progress: bool = True, scorer: Any = None) -> EvalRun:
    """Perplexity of ``model`` on the text of ``data`` (see the module docstring).

    Returns an :class:`EvalRun` whose summary holds ``perplexity``, ``nll`` (mean, nats),
    ``bits_per_byte`` (tokenizer-independent), ``tokens`` and the backend.

    Raises:
        UsageError: missing/empty data, bad window sizes, an unknown backend.
        ModelNotFoundError, ModelFileNotFoundError: no such model.
        EngineError: the backend could not load the weights.
    """
    text = read_text(data)
    own = scorer is None
    if own:
        ref = resolve_model(model, settings, backend)
        label, used = ref.label, ref.backend
        scorer = load_scorer(ref, context, threads)
    else:  # a model already in memory (distillation, pruning): ``model`` is only its label
        label, used = model, type(scorer).__name__
    try:
        tokens = scorer.tokenize(text)
        if max_tokens:
            tokens = tokens[:max_tokens]
        items = sliding_nll(tokens, scorer.logprobs, context, stride, progress)
    finally:
        if own:
            scorer.close()
    nll = sum(i["scores"]["nll"] for i in items)
    count = sum(i["scores"]["tokens"] for i in items)
    used_bytes = len(text.encode("utf-8")) if not max_tokens or len(tokens) < max_tokens else None
    summary = {"perplexity": math.exp(nll / count), "nll": nll / count, "tokens": count + 1,
               "bits_per_byte": nll / math.log(2) / used_bytes if used_bytes else None,
               "backend": used, "model": label}
    for item in items:
        item["scores"]["nll"] = item["scores"]["nll"] / item["scores"]["tokens"]  # per token, comparable
    return EvalRun(kind="perplexity", summary=summary, items=items, data=data_record({"data": data}),
                   config={"model": label, "backend": used, "context": context, "stride": stride,
                           "max_tokens": max_tokens, "bos": False},
                   versions=package_versions("llama_cpp_python", "torch", "transformers", "gguf"))
