"""Any OpenAI-compatible server as a chat engine: cloud APIs (OpenAI, DeepSeek, Qwen/DashScope
compatible mode, Moonshot …), a vLLM server, a llama.cpp server, or another Lingxi gateway.

Chat prompts go to ``/chat/completions``, plain text prompts to ``/completions``. Streaming asks
for usage in the last event (``stream_options.include_usage``); servers that do not send it get
the tokenizer-free estimate instead. Native async, so the gateway never parks a thread on it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lingxi.engines.base import (
    ChatEngine,
    Chunk,
    Completion,
    GenerationParams,
    ModelInfo,
    Prompt,
    Timing,
    Usage,
    estimate_tokens,
)
from lingxi.engines.http import HttpUpstream


class OpenAIUpstream(ChatEngine):
    engine_name = "openai"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        self.config = config
        self.http = HttpUpstream(config)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            engine=self.engine_name,
            context_length=self.config.context_length,
            source=f"{self.config.base_url} ({self.config.model})",
        )

    def _request(self, prompt: Prompt, params: GenerationParams, stream: bool) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.seed is not None:
            payload["seed"] = params.seed
        if stream:
            payload["stream_options"] = {"include_usage": True}
        if isinstance(prompt, str):
            return "/completions", {**payload, "prompt": prompt}
        return "/chat/completions", {**payload, "messages": list(prompt)}

    def _chunks(self, event: dict[str, Any], state: dict[str, Any]) -> Iterator[Chunk]:
        for choice in event.get("choices") or []:
            text = choice.get("text")
            if text is None:
                text = (choice.get("delta") or {}).get("content")
            if text:
                state["text"].append(text)
                yield Chunk(text=text)
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]
        if event.get("usage"):
            state["usage"] = event["usage"]

    def _final(self, prompt: Prompt, state: dict[str, Any]) -> Chunk:
        usage = state["usage"]
        if usage:
            counted = Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        else:
            shown = prompt if isinstance(prompt, str) else "\n".join(m.get("content") or "" for m in prompt)
            counted = Usage(estimate_tokens(shown), estimate_tokens("".join(state["text"])))
        return Chunk(finish_reason=state["finish"] or "stop", usage=counted)

    def _completion(self, prompt: Prompt, body: dict[str, Any], elapsed: float) -> Completion:
        state: dict[str, Any] = {"text": [], "finish": None, "usage": body.get("usage")}
        choice = (body.get("choices") or [{}])[0]
        text = choice.get("text")
        if text is None:
            text = (choice.get("message") or {}).get("content") or ""
        state["text"].append(text)
        state["finish"] = choice.get("finish_reason")
        final = self._final(prompt, state)
        # Without a stream the first token is not observable: it arrives with the last one.
        timing = Timing(ttft_s=elapsed, total_s=elapsed)
        return Completion(self.name, text, final.finish_reason or "stop", final.usage or Usage(), timing)

    def generate(self, prompt: Prompt, params: GenerationParams | None = None) -> Completion:
        """One non-streaming request: cheaper for the server than a stream nobody watches."""
        path, payload = self._request(prompt, params or GenerationParams(), stream=False)
        start = time.perf_counter()
        body = self.http.post(path, payload)
        return self._completion(prompt, body, time.perf_counter() - start)

    async def agenerate(self, prompt: Prompt, params: GenerationParams | None = None) -> Completion:
        path, payload = self._request(prompt, params or GenerationParams(), stream=False)
        start = time.perf_counter()
        body = await self.http.apost(path, payload)
        return self._completion(prompt, body, time.perf_counter() - start)

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        path, payload = self._request(prompt, params or GenerationParams(), stream=True)
        state: dict[str, Any] = {"text": [], "finish": None, "usage": None}
        for event in self.http.stream(path, payload):
            yield from self._chunks(event, state)
        yield self._final(prompt, state)

    async def astream(self, prompt: Prompt, params: GenerationParams | None = None) -> AsyncIterator[Chunk]:
        path, payload = self._request(prompt, params or GenerationParams(), stream=True)
        state: dict[str, Any] = {"text": [], "finish": None, "usage": None}
        async for event in self.http.astream(path, payload):
            for chunk in self._chunks(event, state):
                yield chunk
        yield self._final(prompt, state)

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.http.aclose()
