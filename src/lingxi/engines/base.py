"""The two small interfaces every model backend implements: :class:`ChatEngine` and :class:`Embedder`.

A backend implements one method, :meth:`ChatEngine.stream`; everything else (a full result,
timing, async variants) is derived here so that every backend measures and behaves the same.
Backends may override :meth:`ChatEngine.astream` when they have a native async path (HTTP).

This module imports nothing heavy: no torch, no llama_cpp, no httpx.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

import numpy as np

T = TypeVar("T")


class Message(TypedDict, total=False):
    """One chat message, OpenAI-shaped: ``{"role": "user", "content": "..."}``."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str


#: A chat prompt (list of messages) or a raw text prompt (plain completion).
Prompt = Sequence[Message] | str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings shared by every engine. ``temperature=0`` means greedy.

    ``grammar`` (GBNF, llama.cpp's grammar format) or ``json_schema`` (a JSON Schema, as JSON
    text) constrain what may be sampled; only engines whose ``constrained_decoding`` is true honour
    them (the llama.cpp engine, per request inside its batch), and the gateway refuses them for
    the others rather than ignore them.
    """

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: str | None = None
    json_schema: str | None = None

    def __post_init__(self) -> None:
        from lingxi.errors import UsageError

        problems = []
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            problems.append(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.grammar is not None and self.json_schema is not None:
            problems.append("give a grammar or a json_schema, not both")
        if self.json_schema is not None:
            try:
                schema = json.loads(self.json_schema)
            except ValueError as exc:
                schema = exc
            if not isinstance(schema, dict):
                problems.append("json_schema must be a JSON object (a JSON Schema)")
        if problems:
            raise UsageError("; ".join(problems))
        if isinstance(self.stop, str):  # tolerate stop="x" like the OpenAI API
            object.__setattr__(self, "stop", (self.stop,))


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Chunk:
    """A piece of a streamed answer. The last chunk carries ``finish_reason`` and ``usage``."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class Timing:
    """Wall-clock timing of one generation, measured the same way for every engine."""

    ttft_s: float = 0.0
    total_s: float = 0.0
    decode_tokens_per_s: float = 0.0


@dataclass
class Completion:
    """A full answer: the text, why it stopped, token counts and timing."""

    model: str
    text: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    timing: Timing = field(default_factory=Timing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "timing": asdict(self.timing),
        }


@dataclass(frozen=True)
class ModelInfo:
    """What a caller may want to know about a loaded model."""

    name: str
    engine: str
    context_length: int | None = None
    source: str | None = None  # file path, folder, or upstream URL + model id
    details: dict[str, Any] = field(default_factory=dict)


def collect(model: str, chunks: Iterator[Chunk]) -> Completion:
    """Drain a stream into a :class:`Completion`, timing first token and decode speed."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    finish, usage = "stop", None
    for chunk in chunks:
        if chunk.text:
            if first is None:
                first = time.perf_counter()
            parts.append(chunk.text)
        if chunk.finish_reason:
            finish = chunk.finish_reason
        if chunk.usage:
            usage = chunk.usage
    end = time.perf_counter()
    usage = usage or Usage()
    first = first if first is not None else end
    decode_s = end - first
    # The first token comes out of prefill; decode speed counts the tokens after it.
    decode_tps = (usage.completion_tokens - 1) / decode_s if usage.completion_tokens > 1 and decode_s > 0 else 0.0
    timing = Timing(ttft_s=first - start, total_s=end - start, decode_tokens_per_s=decode_tps)
    return Completion(model=model, text="".join(parts), finish_reason=finish, usage=usage, timing=timing)


def _pump(make: Callable[[], Iterator[T]], put: Callable[[str, Any], None], stop: threading.Event) -> None:
    """Drive ``make()`` to its end (or until ``stop``), handing each item, the end or the error to ``put``."""
    it = None
    try:
        if stop.is_set():  # the consumer left while this waited for the executor: skip the work
            put("end", None)
            return
        it = make()
        for item in it:
            if stop.is_set():
                break
            put("item", item)
        put("end", None)
    except BaseException as exc:  # handed to the consuming side and re-raised there
        put("error", exc)
    finally:
        if it is not None and hasattr(it, "close"):
            it.close()


def iterate_on(executor: Executor, make: Callable[[], Iterator[T]]) -> Iterator[T]:
    """Run a blocking iterator on ``executor`` and yield its items in the calling thread.

    Closing the returned generator stops the producer at its next item.
    """
    items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    stop = threading.Event()
    # The caller's context variables (the request's tenant) go with the work to the other thread.
    executor.submit(contextvars.copy_context().run, _pump, make, lambda kind, value: items.put((kind, value)), stop)
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


async def iterate_in_thread(make: Callable[[], Iterator[T]], executor: Executor | None = None) -> AsyncIterator[T]:
    """Run a blocking iterator in a worker thread (``executor``, else the loop's default) and hand
    its items to the event loop.

    Closing the async side early (a client disconnect) stops the worker at its next item, so a
    cancelled request does not keep an engine busy. An exception in the worker is re-raised here.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # a stream is small: unbounded is fine
    stop = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody is listening any more
            stop.set()

    # run_in_executor, unlike asyncio.to_thread, does not carry the context variables (the
    # request's tenant, which a batching engine queues by): copy them over.
    loop.run_in_executor(executor, contextvars.copy_context().run, _pump, make, put, stop)
    try:
        while True:
            kind, value = await items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


class ChatEngine(ABC):
    """A text-generation backend.

    Subclasses implement :meth:`stream`. They are constructed from their config entry by the
    registry (:func:`lingxi.engines.load_engine`) and may be shared by threads: backends that
    cannot generate concurrently (llama.cpp) serialise calls themselves.
    """

    #: registry name, e.g. ``"llamacpp"``
    engine_name: str = ""
    #: Whether :class:`GenerationParams`' ``grammar`` and ``json_schema`` are honoured.
    constrained_decoding: ClassVar[bool] = False
    #: A plugin's options: a subclass of :class:`lingxi.config.ChatModelOptions` that validates its
    #: ``[models.NAME]`` entry (the built-ins' are named in :mod:`lingxi.engines.registry`).
    options_model: ClassVar[type | None] = None

    def __init__(self, name: str):
        self.name = name

    @property
    @abstractmethod
    def info(self) -> ModelInfo: ...

    @abstractmethod
    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        """Yield the answer piece by piece; the final chunk has ``finish_reason`` and ``usage``.

        Raises:
            ContextLengthError: the prompt does not fit the context window.
            UpstreamError / EngineError: the backend failed.
        """

    def generate(self, prompt: Prompt, params: GenerationParams | None = None) -> Completion:
        """The whole answer at once, with usage and timing."""
        return collect(self.name, self.stream(prompt, params))

    async def astream(self, prompt: Prompt, params: GenerationParams | None = None) -> AsyncIterator[Chunk]:
        """Async :meth:`stream`. The default runs the sync stream in a worker thread.

        Closing the async iterator early (a client disconnect) stops the worker after its
        current token, so a cancelled request does not keep the engine busy.
        """
        chunks = iterate_in_thread(lambda: self.stream(prompt, params))
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # now, not when the garbage collector gets to it

    async def agenerate(self, prompt: Prompt, params: GenerationParams | None = None) -> Completion:
        """Async :meth:`generate`."""
        start = time.perf_counter()
        first: float | None = None
        chunks: list[Chunk] = []
        async for chunk in self.astream(prompt, params):
            if chunk.text and first is None:
                first = time.perf_counter()
            chunks.append(chunk)
        result = collect(self.name, iter(chunks))
        end = time.perf_counter()
        first = first if first is not None else end
        n = result.usage.completion_tokens
        result.timing = Timing(
            ttft_s=first - start,
            total_s=end - start,
            decode_tokens_per_s=(n - 1) / (end - first) if n > 1 and end > first else 0.0,
        )
        return result

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` for this model; backends without a tokenizer estimate."""
        return estimate_tokens(text)

    def close(self) -> None:
        """Release weights, connections or threads. Safe to call twice."""

    async def aclose(self) -> None:
        """Release what belongs to the running event loop (async connection pools); the server
        calls it at shutdown. Safe to call twice."""


class Embedder(ABC):
    """A text-embedding backend. Vectors come back L2-normalised, float32, shape (n, dim)."""

    engine_name: str = ""
    #: A plugin's options: a subclass of :class:`lingxi.config.EmbedderOptions`.
    options_model: ClassVar[type | None] = None

    def __init__(self, name: str):
        self.name = name

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def embed(self, texts: Sequence[str], *, kind: Literal["query", "passage"] = "passage") -> np.ndarray:
        """Embed ``texts``. ``kind`` matters for models trained with query/passage prefixes (e5)."""

    async def aembed(self, texts: Sequence[str], *, kind: Literal["query", "passage"] = "passage") -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts, kind=kind)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, engine=self.engine_name, details={"dim": self.dim})

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    #: Whether :meth:`decode` can read token ids (the embedder has its own tokenizer).
    decodes_tokens: bool = False

    def decode(self, ids: Sequence[int]) -> str:
        """The text that token ids of this embedder's tokenizer stand for (OpenAI's token-array input).

        Raises:
            UsageError: the embedder has no tokenizer, or an id is not in its vocabulary.
        """
        from lingxi.errors import UsageError

        raise UsageError(f"embedder '{self.name}' has no tokenizer to read token ids; send text")

    def close(self) -> None:
        """Release resources. Safe to call twice."""

    async def aclose(self) -> None:
        """Release what belongs to the running event loop (see :meth:`ChatEngine.aclose`)."""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, ~4 characters per token otherwise."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return cjk + max(0, len(text) - cjk + 3) // 4


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
