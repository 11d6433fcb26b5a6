"""llama.cpp in-process (llama-cpp-python): GGUF weights, the GGUF's own chat template, CPU first.

The default engine. It drives llama-cpp-python's token generator directly (rather than
``create_chat_completion``) so that it counts tokens exactly, checks the context window before
it starts, and does no per-token work a caller did not ask for.

All of llama.cpp's work in a process runs on one thread (:func:`llama_thread`). llama.cpp
parallelises with OpenMP, whose worker team belongs to the thread that calls it: once a second
thread has called in (the gateway's executor after a warm-up on the main thread, or a second
model's own thread), every call is about three times slower on a small machine (measured: 110 →
35 tokens/s on 2 cores). One thread also serialises requests, as a ``Llama`` context requires;
concurrency belongs to the gateway's queue or to several llama.cpp servers behind it.
"""

from __future__ import annotations

import codecs
import ctypes
import os
from collections.abc import AsyncIterator, Iterator
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lingxi.engines.base import (
    ChatEngine,
    Chunk,
    GenerationParams,
    ModelInfo,
    Prompt,
    Usage,
    iterate_in_thread,
    iterate_on,
)
from lingxi.errors import ContextLengthError, EngineError, ModelFileNotFoundError, UsageError, missing_extra


#: Context window when the config sets none: llama.cpp's server default. A model's full
#: training context (often 128k) would reserve gigabytes of KV cache nobody asked for.
DEFAULT_CONTEXT = 4096


_thread: ThreadPoolExecutor | None = None
_thread_lock = threading.Lock()


def llama_thread() -> ThreadPoolExecutor:
    """The one thread that calls llama.cpp in this process (see the module docstring)."""
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        return _thread


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LlamaCppEngine(ChatEngine):
    engine_name = "llamacpp"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        try:
            import llama_cpp
        except ImportError as exc:
            raise missing_extra("the llama.cpp engine", "llamacpp", exc) from exc
        from lingxi.engines.bundled import smollm2_gguf

        self._llama_cpp = llama_cpp
        path = Path(config.path).expanduser() if config.path else smollm2_gguf()
        if not path.is_file():
            raise ModelFileNotFoundError(f"model '{name}': GGUF file not found: {path}")
        self.path = path
        self._thread = llama_thread()
        try:
            self._llm = self._thread.submit(
                llama_cpp.Llama,
                model_path=str(path),
                n_ctx=config.context_length or DEFAULT_CONTEXT,
                n_threads=config.n_threads or _cpu_count(),
                n_threads_batch=config.n_threads or _cpu_count(),
                n_batch=config.n_batch,
                n_gpu_layers=config.n_gpu_layers,
                verbose=False,
            ).result()
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"model '{name}': llama.cpp could not load {path}: {exc}") from exc
        template = config.chat_format or self._llm.metadata.get("tokenizer.chat_template")
        self._formatter = self._make_formatter(template) if template else None
        self._pieces: dict[int, bytes] = {}
        # llama.cpp pads a small context up (to 256) but llama-cpp-python sizes its token buffer
        # by the requested one: the smaller of the two is what a prompt may use.
        self._n_ctx = min(self._llm.n_ctx(), self._llm.context_params.n_ctx)

    def _make_formatter(self, template: str) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        eos, bos = llm.token_eos(), llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos >= 0 else "",
            bos_token=llm._model.token_get_text(bos) if bos >= 0 else "",
            add_generation_prompt=True,
        )

    @property
    def info(self) -> ModelInfo:
        meta = self._llm.metadata
        return ModelInfo(
            name=self.name,
            engine=self.engine_name,
            context_length=self._n_ctx,
            source=str(self.path),
            details={
                "architecture": meta.get("general.architecture"),
                "n_ctx_train": self._llm._model.n_ctx_train(),
                "n_params": self._llm._model.n_params(),
                "file_type": meta.get("general.file_type"),
                "n_threads": self._llm.n_threads,
            },
        )

    # ------------------------------------------------------------ tokens

    def _prompt_tokens(self, prompt: Prompt) -> tuple[list[int], tuple[str, ...]]:
        """Tokens to feed and extra stop strings from the chat template."""
        if isinstance(prompt, str):
            text, stops, add_bos = prompt, (), True
        else:
            if self._formatter is None:
                raise UsageError(
                    f"model '{self.name}' has no chat template in its GGUF; set chat_format in its config "
                    "(a Jinja2 template) or send a plain text prompt"
                )
            result = self._formatter(messages=list(prompt))
            text = result.prompt
            stops = tuple(s for s in ([result.stop] if isinstance(result.stop, str) else (result.stop or [])) if s)
            add_bos = not getattr(result, "added_special", False)
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens, stops

    def _piece(self, token: int) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character), cached: the vocabulary is fixed."""
        piece = self._pieces.get(token)
        if piece is None:
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = self._llama_cpp.llama_token_to_piece(self._llm._model.vocab, token, buf, size, 0, False)
                if n >= 0:
                    break
                size = -n  # a negative length is the size the piece needs
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    # ------------------------------------------------------------ generation

    def _prepare(self, prompt: Prompt, params: GenerationParams | None) -> tuple[list[int], GenerationParams,
                                                                            tuple[str, ...]]:
        params = params or GenerationParams()
        tokens, template_stops = self._prompt_tokens(prompt)
        if len(tokens) >= self._n_ctx:
            raise ContextLengthError(len(tokens), self._n_ctx)
        return tokens, params, tuple(s for s in params.stop + template_stops if s)

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        tokens, params, stops = self._prepare(prompt, params)  # errors raise here, before any output
        return iterate_on(self._thread, lambda: self._generate(tokens, params, stops))

    async def astream(self, prompt: Prompt, params: GenerationParams | None = None) -> AsyncIterator[Chunk]:
        tokens, params, stops = self._prepare(prompt, params)
        chunks = iterate_in_thread(lambda: self._generate(tokens, params, stops), self._thread)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    def _generate(self, tokens: list[int], params: GenerationParams, stops: tuple[str, ...]) -> Iterator[Chunk]:
        """The generation loop; runs on ``self._thread``, one request at a time."""
        llm, lib = self._llm, self._llama_cpp
        vocab = llm._model.vocab
        budget = min(params.max_tokens, self._n_ctx - len(tokens))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""  # decoded text not yet sent, kept back while it may start a stop string
        produced, finish = 0, "length"
        # The seed sticks to the Llama object: set it on every request, else one seeded request
        # would make every later unseeded one repeat its samples.
        llm.set_seed(lib.LLAMA_DEFAULT_SEED if params.seed is None else params.seed)
        if params.seed is not None:
            # Reusing a cached prompt prefix recomputes the last logits in a different batch
            # shape, which changes them in the last bits; a seeded request starts clean so that
            # the same seed gives the same answer.
            llm.reset()
        greedy = params.temperature == 0
        gen = llm.generate(
            tokens,
            temp=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=1 if greedy else 40,
            min_p=0.0 if greedy else 0.05,
            repeat_penalty=1.0,
            reset=True,
        )
        try:
            for token in gen:
                if lib.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                produced += 1
                pending += decoder.decode(self._piece(token))
                if stops:
                    cut = _find_stop(pending, stops)
                    if cut is not None:
                        pending, finish = pending[:cut], "stop"
                        break
                    safe = len(pending) - _partial_stop(pending, stops)
                else:
                    safe = len(pending)
                if safe > 0:
                    yield Chunk(text=pending[:safe])
                    pending = pending[safe:]
                if produced >= budget:
                    break
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"model '{self.name}': llama.cpp failed while generating: {exc}") from exc
        finally:
            gen.close()
        pending += decoder.decode(b"", final=True)
        if pending:
            yield Chunk(text=pending)
        yield Chunk(finish_reason=finish, usage=Usage(prompt_tokens=len(tokens), completion_tokens=produced))

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            self._thread.submit(llm.close).result()
            self._llm = None


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that begins a stop string: only that is held back,
    so text that cannot become a stop goes out at once (a fixed holdback delays the first token)."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest

