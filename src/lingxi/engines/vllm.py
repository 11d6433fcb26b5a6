"""vLLM in-process (CUDA): continuous batching for several concurrent requests on one GPU.

vLLM's ``AsyncLLMEngine`` belongs to the event loop it was created on, so the engine gets a
private loop in a daemon thread; sync and async callers both hand their requests to that loop.
Imported only when a model with ``engine = "vllm"`` is used; its tests run only with CUDA
(``pytest -m gpu``). For several GPUs or machines, run ``vllm serve`` and configure it as an
``openai`` upstream instead.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo, Prompt, Usage
from lingxi.errors import ContextLengthError, EngineError, ModelFileNotFoundError, missing_extra

_DONE = object()


class VLLMEngine(ChatEngine):
    engine_name = "vllm"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        path = Path(config.path).expanduser()
        if not path.exists():
            raise ModelFileNotFoundError(f"model '{name}': folder not found: {path}")
        try:
            import vllm
        except ImportError as exc:
            raise missing_extra("the vLLM engine", "vllm", exc) from exc
        self._vllm = vllm
        self.path = path
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"vllm-{name}", daemon=True).start()
        args = vllm.AsyncEngineArgs(
            model=str(path),
            max_model_len=config.context_length,
            gpu_memory_utilization=config.gpu_memory_utilization,
            tensor_parallel_size=config.tensor_parallel_size,
            quantization=config.quantization,
            dtype=config.dtype,
        )

        async def build() -> Any:
            engine = vllm.AsyncLLMEngine.from_engine_args(args)
            return engine, await engine.get_tokenizer()

        try:
            self._engine, self.tokenizer = asyncio.run_coroutine_threadsafe(build(), self._loop).result()
        except Exception as exc:  # vLLM raises many types while loading; all mean "could not load"
            raise EngineError(f"model '{name}': vLLM could not load {path}: {exc}") from exc
        self._context = config.context_length or self.tokenizer.model_max_length

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.engine_name, self._context, str(self.path))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _prepare(self, prompt: Prompt, params: GenerationParams) -> tuple[list[int], Any]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
        else:
            ids = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
        if len(ids) >= self._context:
            raise ContextLengthError(len(ids), self._context)
        sampling = self._vllm.SamplingParams(
            max_tokens=min(params.max_tokens, self._context - len(ids)),
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        return ids, sampling

    async def _run(self, ids: list[int], sampling: Any, send: Callable[[Any], None]) -> None:
        """Runs on the engine's loop; hands deltas, then _DONE or an error, to ``send``."""
        request_id = uuid.uuid4().hex
        sent = 0
        try:
            async for output in self._engine.generate({"prompt_token_ids": ids}, sampling, request_id):
                result = output.outputs[0]
                if len(result.text) > sent:
                    send(Chunk(text=result.text[sent:]))
                    sent = len(result.text)
                if output.finished:
                    send(Chunk(finish_reason=result.finish_reason or "stop",
                               usage=Usage(len(ids), len(result.token_ids))))
            send(_DONE)
        except asyncio.CancelledError:
            await self._engine.abort(request_id)
            raise
        except Exception as exc:  # handed to the caller's side
            send(EngineError(f"model '{self.name}': vLLM failed while generating: {exc}"))

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        ids, sampling = self._prepare(prompt, params or GenerationParams())
        import queue

        out: queue.Queue = queue.Queue()
        task = asyncio.run_coroutine_threadsafe(self._run(ids, sampling, out.put), self._loop)
        try:
            while (item := out.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            task.cancel()

    async def astream(self, prompt: Prompt, params: GenerationParams | None = None) -> AsyncIterator[Chunk]:
        ids, sampling = self._prepare(prompt, params or GenerationParams())
        out: asyncio.Queue = asyncio.Queue()
        caller = asyncio.get_running_loop()
        task = asyncio.run_coroutine_threadsafe(
            self._run(ids, sampling, lambda item: caller.call_soon_threadsafe(out.put_nowait, item)), self._loop
        )
        try:
            while (item := await out.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            task.cancel()

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            shutdown = getattr(engine, "shutdown", None)
            if shutdown:
                self._loop.call_soon_threadsafe(shutdown)
            self._engine = None
        self._loop.call_soon_threadsafe(self._loop.stop)
