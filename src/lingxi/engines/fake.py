"""A chat engine with a queue of replies, for fast tests and demos. It is not a model.

Each call pops the next queued reply; with none queued it echoes the last user message. It
streams word by word, counts tokens with the tokenizer-free estimate, honours ``max_tokens``,
``stop`` and its context window like a real engine, and records every prompt it saw.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, ModelInfo, Prompt, Usage, estimate_tokens
from lingxi.errors import ContextLengthError


class FakeEngine(ChatEngine):
    engine_name = "fake"

    def __init__(self, name: str = "fake", config: Any = None, *, replies: list[str] | None = None,
                 context_length: int = 2048):
        super().__init__(name)
        self._replies: deque[str | Exception] = deque(replies if replies is not None else getattr(config, "replies", []))
        self._context_length = getattr(config, "context_length", None) or context_length
        self._lock = threading.Lock()
        self.prompts: list[Prompt] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, engine=self.engine_name, context_length=self._context_length)

    def enqueue(self, *replies: str | Exception) -> None:
        """Queue replies; an exception instance is raised by the call that pops it."""
        with self._lock:
            self._replies.extend(replies)

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        params = params or GenerationParams()
        text = prompt if isinstance(prompt, str) else "\n".join(m.get("content") or "" for m in prompt)
        prompt_tokens = estimate_tokens(text)
        if prompt_tokens + 1 > self._context_length:
            raise ContextLengthError(prompt_tokens, self._context_length)
        with self._lock:
            self.prompts.append(prompt)
            reply = self._replies.popleft() if self._replies else None
        if isinstance(reply, Exception):
            raise reply
        if reply is None:
            users = [m.get("content") or "" for m in prompt if m.get("role") == "user"] if not isinstance(prompt, str) else [prompt]
            reply = users[-1] if users else ""
        for stop in params.stop:
            if stop and stop in reply:
                reply = reply[: reply.index(stop)]
        pieces = re.findall(r"\S+\s*|\s+", reply)
        emitted, finish = 0, "stop"
        for piece in pieces:
            if emitted >= params.max_tokens:
                finish = "length"
                break
            emitted += 1
            yield Chunk(text=piece)
        yield Chunk(finish_reason=finish, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=emitted))

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)
