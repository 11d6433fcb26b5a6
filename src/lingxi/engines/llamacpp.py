"""llama.cpp in-process (llama-cpp-python): GGUF weights, the GGUF's own chat template, CPU first.

The default engine. It drives llama.cpp's batch API through llama-cpp-python's low-level
bindings: requests are decoded together in one continuous batch (several sequences in one
``llama_batch``, a KV-cache sequence per slot, a sampler chain per request) and reuse the cached
prefix of an earlier request (see :mod:`lingxi.engines.batch`). It counts tokens exactly, checks
the context window before it starts, and does no per-token work a caller did not ask for.

All of llama.cpp's work in a process runs on one thread (:func:`llama_thread`). llama.cpp
parallelises with OpenMP, whose worker team belongs to the thread that calls it: once a second
thread has called in (the gateway's executor after a warm-up on the main thread, or a second
model's own thread), every call is about three times slower on a small machine (measured: 110 →
35 tokens/s on 2 cores). Concurrent requests therefore share that thread through the batch, not through more threads.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo, Prompt
from lingxi.engines.batch import BatchScheduler, astream_request, stream_request
from lingxi.engines.batch import find_stop as _find_stop, partial_stop as _partial_stop  # noqa: F401 (tests)
from lingxi.errors import ContextLengthError, EngineError, ModelFileNotFoundError, UsageError, missing_extra


#: Context window when the config sets none: llama.cpp's server default. A model's full
#: training context (often 128k) would reserve gigabytes of KV cache nobody asked for.
DEFAULT_CONTEXT = 4096

#: ``kv_per_slot`` unset: each slot gets its own KV stream when that takes at most this share of
#: the machine's memory (per slot multiplies the KV cache by ``parallel``; see the config).
AUTO_PER_SLOT_MEMORY_SHARE = 1 / 8


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


def memory_bytes() -> int:
    """Physical memory, or the cgroup's limit when that is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def kv_bytes_per_cell(lib: Any, model: Any, meta: dict[str, str]) -> int:
    """Bytes one KV cell takes over all layers, K and V in llama.cpp's default f16."""
    m = model.model
    head = lib.llama_model_n_embd(m) // max(lib.llama_model_n_head(m), 1)
    arch = meta.get("general.architecture", "")
    k = int(meta.get(f"{arch}.attention.key_length", head))
    v = int(meta.get(f"{arch}.attention.value_length", head))
    return 2 * lib.llama_model_n_layer(m) * lib.llama_model_n_head_kv(m) * (k + v)


def choose_per_slot(setting: bool | None, per_slot_bytes: int, memory: int) -> bool:
    """``kv_per_slot`` as configured, or when unset, whether the per-slot KV cache fits the share."""
    if setting is not None:
        return setting
    return per_slot_bytes <= memory * AUTO_PER_SLOT_MEMORY_SHARE


class LlamaBackend:
    """llama.cpp under :class:`~lingxi.engines.batch.BatchScheduler`: one context whose KV cache
    holds ``n_slots`` sequences (one pool they share, or a stream each), one reusable
    ``llama_batch``. Every method runs on the llama.cpp thread."""

    def __init__(self, lib: Any, model: Any, n_ctx: int, n_slots: int, n_batch: int, n_threads: int,
                 per_slot: bool = False):
        self._lib = lib
        self._model = model
        params = lib.llama_context_default_params()
        # Shared: one pool that a long conversation may use whole, slots sharing prefix cells.
        # Per slot: a stream of n_ctx cells each, attention over a request's own cells only.
        self.per_slot = per_slot
        self.kv_cells = params.n_ctx = n_ctx * n_slots if per_slot else n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_slots
        params.kv_unified = not per_slot
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        ctx = lib.llama_init_from_model(model.model, params)
        if ctx is None:
            raise ValueError("llama_init_from_model failed")
        self.ctx = ctx
        self.params = params
        self.n_slots = n_slots
        self.n_batch = n_batch
        self._mem = lib.llama_get_memory(ctx)
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self._vocab = model.vocab
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def n_ctx(self) -> int:
        """Cells one sequence may hold (the whole pool when it is shared)."""
        return self._lib.llama_n_ctx_seq(self.ctx)

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int], logits: list[bool]) -> bool:
        b = self._batch
        tok, ps, nseq, seq, lg = b.token, b.pos, b.n_seq_id, b.seq_id, b.logits
        for i, t in enumerate(tokens):
            tok[i] = t
            ps[i] = pos[i]
            nseq[i] = 1
            seq[i][0] = seqs[i]
            lg[i] = logits[i]
        b.n_tokens = len(tokens)
        rc = self._lib.llama_decode(self.ctx, b)
        if rc == 1:  # no room in the KV cache; nothing was evaluated
            return False
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc}")
        return True

    repeat_penalty = 1.0  # set by the engine from the model's config

    def grammar_sampler(self, grammar: str) -> Any:
        """A sampler that keeps to ``grammar`` (GBNF); UsageError when it does not parse.
        Safe off the llama.cpp thread: it reads the vocabulary and nothing else."""
        sampler = self._lib.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise UsageError("grammar: not a valid GBNF grammar with a 'root' rule")
        return sampler

    def sampler(self, params: GenerationParams) -> Any:
        """A request's sampler chain: its grammar first (GBNF; the engine turns a JSON schema into
        one), then the repeat penalty, then greedy or top-k/top-p/min-p/temperature draws."""
        lib = self._lib
        grammar = None if params.grammar is None else self.grammar_sampler(params.grammar)
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if grammar is not None:  # the chain owns (and frees) the samplers added to it
            lib.llama_sampler_chain_add(chain, grammar)
        if self.repeat_penalty > 1.0:  # sees each sampled token (llama_sampler_sample accepts it)
            n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(n_vocab, 64, self.repeat_penalty, 0.0, 0.0))
        if params.temperature == 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(40))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(0.05, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        seed = lib.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def sample(self, sampler: Any, row: int) -> int:
        return self._lib.llama_sampler_sample(sampler, self.ctx, row)

    def free_sampler(self, sampler: Any) -> None:
        self._lib.llama_sampler_free(sampler)

    def seq_rm(self, seq: int, p0: int) -> bool:
        return bool(self._lib.llama_memory_seq_rm(self._mem, seq, p0 if p0 > 0 else -1, -1))

    def seq_cp(self, src: int, dst: int, n: int) -> None:
        if self.per_slot:  # across streams llama.cpp copies a whole stream: copy, then cut to n
            self._lib.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
            self._lib.llama_memory_seq_rm(self._mem, dst, n, -1)
        else:
            self._lib.llama_memory_seq_cp(self._mem, src, dst, 0, n)

    def seq_pos_max(self, seq: int) -> int:
        """The highest position ``seq`` holds in the KV cache; -1 when it holds none."""
        return self._lib.llama_memory_seq_pos_max(self._mem, seq)

    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:  # one foreign call per token id, not per token generated: the vocabulary is fixed
            eog = self._eog[token] = bool(self._lib.llama_vocab_is_eog(self._vocab, token))
        return eog

    def piece(self, token: int) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character), cached: the vocabulary is fixed."""
        piece = self._pieces.get(token)
        if piece is None:
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = self._lib.llama_token_to_piece(self._vocab, token, buf, size, 0, False)
                if n >= 0:
                    break
                size = -n  # a negative length is the size the piece needs
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def close(self) -> None:
        if self.ctx is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None


class LlamaCppEngine(ChatEngine):
    engine_name = "llamacpp"
    constrained_decoding = True

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
        n_ctx = config.context_length or DEFAULT_CONTEXT
        n_threads = config.n_threads or _cpu_count()
        n_slots = min(config.parallel, config.n_batch)
        try:
            self._model, self._backend = self._thread.submit(
                self._load, llama_cpp, path, config, n_ctx, n_slots, n_threads).result()
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"model '{name}': llama.cpp could not load {path}: {exc}") from exc
        self._meta = self._model.metadata()
        template = config.chat_format or self._meta.get("tokenizer.chat_template")
        self._formatter = self._make_formatter(template) if template else None
        # llama.cpp pads a small context up (to 256): the requested size is what a prompt may use.
        self._n_ctx = min(self._backend.n_ctx(), n_ctx)
        self._scheduler = BatchScheduler(self._backend, self._thread, name, n_ctx=self._n_ctx)
        self._backend.repeat_penalty = config.repeat_penalty
        self._grammars_ok: set[str] = set()  # grammars that parsed (checked once each)
        self._system_prompt = config.system_prompt

    @staticmethod
    def _load(lib: Any, path: Path, config: Any, n_ctx: int, n_slots: int, n_threads: int) -> tuple[Any, LlamaBackend]:
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's info and debug lines (what Llama(verbose=False) does)
        _backend_init(lib)
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if config.n_gpu_layers == -1 else config.n_gpu_layers
        model = LlamaModel(path_model=str(path), params=mparams, verbose=False)
        try:
            per_slot_bytes = kv_bytes_per_cell(lib, model, model.metadata()) * n_ctx * n_slots
            per_slot = choose_per_slot(config.kv_per_slot, per_slot_bytes, memory_bytes())
            return model, LlamaBackend(lib, model, n_ctx, n_slots, config.n_batch, n_threads, per_slot)
        except BaseException:
            model.close()
            raise

    def _make_formatter(self, template: str) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = self._model
        eos, bos = model.token_eos(), model.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos >= 0 else "",
            bos_token=model.token_get_text(bos) if bos >= 0 else "",
            add_generation_prompt=True,
        )

    @property
    def info(self) -> ModelInfo:
        meta = self._meta
        return ModelInfo(
            name=self.name,
            engine=self.engine_name,
            context_length=self._n_ctx,
            source=str(self.path),
            details={
                "architecture": meta.get("general.architecture"),
                "n_ctx_train": self._model.n_ctx_train(),
                "n_params": self._model.n_params(),
                "file_type": meta.get("general.file_type"),
                "n_threads": self._backend.params.n_threads,
                "parallel": self._backend.n_slots,
                "kv_layout": "per slot" if self._backend.per_slot else "shared",
                "kv_cells": self._backend.kv_cells,
            },
        )

    @property
    def scheduler(self) -> BatchScheduler:
        """The continuous batch this model's requests run in (occupancy, queue, prompt-cache stats)."""
        return self._scheduler

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
            messages = list(prompt)
            if self._system_prompt and not any(m.get("role") == "system" for m in messages):
                messages = [{"role": "system", "content": self._system_prompt}, *messages]
            result = self._formatter(messages=messages)
            text = result.prompt
            stops = tuple(s for s in ([result.stop] if isinstance(result.stop, str) else (result.stop or [])) if s)
            add_bos = not getattr(result, "added_special", False)
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens, stops

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    # ------------------------------------------------------------ generation

    def _prepare(self, prompt: Prompt, params: GenerationParams | None) -> tuple[list[int], GenerationParams,
                                                                            tuple[str, ...], int]:
        params = self._constrained(params or GenerationParams())
        tokens, template_stops = self._prompt_tokens(prompt)
        if len(tokens) >= self._n_ctx:
            raise ContextLengthError(len(tokens), self._n_ctx)
        stops = tuple(s for s in params.stop + template_stops if s)
        return tokens, params, stops, min(params.max_tokens, self._n_ctx - len(tokens))

    def _constrained(self, params: GenerationParams) -> GenerationParams:
        """``params`` with its JSON schema turned into a GBNF grammar, and the grammar checked
        here, so that a bad one is the caller's error before anything is queued."""
        if params.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                gbnf = json_schema_to_gbnf(params.json_schema)
            except Exception as exc:  # noqa: BLE001 - the converter raises bare exceptions on schemas it cannot map
                raise UsageError(f"json_schema: cannot turn this schema into a grammar: {exc}") from None
            params = dataclasses.replace(params, grammar=gbnf, json_schema=None)
        if params.grammar is not None and params.grammar not in self._grammars_ok:
            self._backend.free_sampler(self._backend.grammar_sampler(params.grammar))
            if len(self._grammars_ok) >= 256:
                self._grammars_ok.clear()
            self._grammars_ok.add(params.grammar)
        return params

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        tokens, params, stops, budget = self._prepare(prompt, params)  # errors raise here, before any output
        return stream_request(self._scheduler, tokens, params, stops, budget)

    async def astream(self, prompt: Prompt, params: GenerationParams | None = None) -> AsyncIterator[Chunk]:
        tokens, params, stops, budget = self._prepare(prompt, params)
        chunks = astream_request(self._scheduler, tokens, params, stops, budget)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    def close(self) -> None:
        backend = getattr(self, "_backend", None)
        if backend is not None:
            self._backend = None

            def shut() -> None:
                self._scheduler.close()
                backend.close()
                self._model.close()

            self._thread.submit(shut).result()


_backend_ready = False
_log_filter: Any = None


def _backend_init(lib: Any) -> None:
    """llama.cpp's one-time process setup (what ``llama_cpp.Llama`` does on first use), and a log
    filter: a full KV pool is logged as an error ("decode: failed to find a memory slot ..."),
    but for the scheduler it is routine (it frees idle caches or pauses a request and decodes
    again), so that line is not printed; everything else goes to llama-cpp-python's logger."""
    global _backend_ready, _log_filter
    if not _backend_ready:
        lib.llama_backend_init()
        from llama_cpp import _logger

        @lib.llama_log_callback
        def _log_filter(level: int, text: bytes, user_data: Any) -> None:
            if b"failed to find a memory slot" not in text:
                _logger.llama_log_callback(level, text, user_data)

        lib.llama_log_set(_log_filter, ctypes.c_void_p(0))  # the global keeps the callback alive
        _backend_ready = True
