"""The OpenAI wire format: request schemas, response bodies, stream chunks and error bodies.

Requests are validated with pydantic (unknown fields are ignored, as OpenAI-compatible servers
do, so newer SDKs keep working); a validation failure becomes one 400 naming every bad field.
Responses are plain dicts serialised with orjson: building them costs microseconds.
"""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lingxi.config import RETRIEVAL_MODE
from lingxi.engines.base import GenerationParams, Usage
from lingxi.errors import UsageError


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_unless_assistant(self) -> ChatMessage:
        # OpenAI lets only an assistant turn (one that made tool calls) go without content; a
        # user message without any would be answered from nothing.
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content (a string or a list of text parts), got null")
        return self

    def plain(self) -> dict[str, str]:
        """The message as the engines take it: role ``developer`` read as system, parts joined."""
        content = self.content
        if isinstance(content, list):
            bad = [p.type for p in content if p.type != "text"]
            if bad:
                raise UsageError(f"unsupported content part type '{bad[0]}'; only text is supported")
            content = "".join(p.text or "" for p in content)
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": content or ""}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _Sampling(_Request):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = None
    response_format: ResponseFormat | None = None
    grammar: str | None = None
    """Not in OpenAI's API (llama-server's): a GBNF grammar the answer must follow."""

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 16:
            raise ValueError("at most 16 stop sequences")
        return v

    def params(self, default_max_tokens: int = 512) -> GenerationParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return GenerationParams(
            max_tokens=self.max_tokens or default_max_tokens,
            temperature=0.7 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
            seed=self.seed,
            grammar=self.grammar,
            json_schema=self._json_schema(),
        )

    def _json_schema(self) -> str | None:
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return '{"type": "object"}'
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise UsageError("response_format: type 'json_schema' needs json_schema.schema")
        return orjson.dumps(fmt.json_schema.schema_).decode()


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    answer_mode: Literal["auto", "generate", "extract"] | None = None
    """Not in OpenAI's API; ``kb:`` models only: generate an answer, quote the sources, or choose
    (default ``knowledge.answer_mode``; see :mod:`lingxi.knowledge.answer`)."""
    retrieval_mode: str | None = Field(default=None, pattern=RETRIEVAL_MODE)
    """Not in OpenAI's API; ``kb:`` models only: the retriever that finds the sources (``hybrid``,
    ``bm25``, ``dense``, ``graph``, a registered one, ``fuse:A+B…`` or ``auto``); default the
    knowledge base's own (``kb create --retrieval``), else ``knowledge.retrieval``. Also read from
    ``metadata={"retrieval_mode": …}`` for clients that can only send OpenAI's fields."""
    metadata: dict[str, str] | None = None
    """OpenAI's request metadata (string values); only ``retrieval_mode`` means anything here."""

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, v: list[Any] | None) -> list[Any] | None:
        # Silently dropping tools would leave a client waiting for a tool call that never comes.
        if v:
            raise ValueError("tool calling is not supported by Lingxi's engines; send the request without tools")
        return v

    def params(self, default_max_tokens: int = 512) -> GenerationParams:
        p = super().params(default_max_tokens)
        if self.max_completion_tokens and not self.max_tokens:
            p = dataclasses.replace(p, max_tokens=self.max_completion_tokens)
        return p


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise UsageError("prompt: exactly one prompt per request is supported")
            return self.prompt[0]
        return self.prompt


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    """Text(s), or token ids as OpenAI allows (one list of ids, or a list of them)."""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    input_type: Literal["query", "passage"] = "passage"
    """Not in OpenAI's API: embedders trained with query/passage prefixes (e5) use it."""

    def has_token_ids(self) -> bool:
        return isinstance(self.input, list) and isinstance(self.input[0], (int, list))

    def texts(self, decode: Callable[[Sequence[int]], str] | None = None, readers: Sequence[str] = ()) -> list[str]:
        """The input as texts; token ids are decoded with ``decode`` (the embedder's tokenizer).

        Raises:
            UsageError: over 2048 inputs, or token ids with no ``decode`` (``readers``: the
                embedders that would accept them).
        """
        items: list[Any] = [self.input] if isinstance(self.input, str) else list(self.input)
        if self.has_token_ids():
            if decode is None:
                which = ", ".join(readers) if readers else "none is configured"
                raise UsageError(f"input: token-id arrays need an embedder with a tokenizer to read them "
                                 f"({which}); '{self.model}' takes text only")
            items = [decode(ids) for ids in ([items] if isinstance(items[0], int) else items)]
        if len(items) > 2048:
            raise UsageError("input: at most 2048 texts per request")
        return items


class FeedbackRequest(_Request):
    response_id: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    rating: Literal[1, -1]
    comment: str = Field(default="", max_length=4000)
    messages: list[dict[str, Any]] = Field(default=[], max_length=200)
    answer: str = Field(default="", max_length=100_000)


class KeyCreateRequest(_Request):
    """``POST /admin/keys``: a new API key (the secret is in the answer, once)."""

    tenant: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=200)
    groups: list[str] = Field(default=[], max_length=100)
    """Knowledge-base groups the key may read; ``["*"]`` makes an operator key."""
    rpm: int | None = Field(default=None, ge=1)
    rpd: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    tpd: int | None = Field(default=None, ge=1)


def parse(model: type[BaseModel], body: bytes) -> Any:
    """Validate a JSON body; every problem goes into one :class:`UsageError`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UsageError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# ---------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_dict(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def chat_completion(rid: str, model: str, text: str, finish: str, usage: Usage | None,
                    citations: list[dict] | None = None, created: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if citations is not None:
        message["citations"] = citations
    return {
        "id": rid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage_dict(usage),
    }


def chat_chunk(rid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
               usage: Usage | None = None, choices: bool = True) -> bytes:
    body: dict[str, Any] = {
        "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage_dict(usage)
    return sse(body)


def text_completion(rid: str, model: str, text: str, finish: str, usage: Usage | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": usage_dict(usage),
    }


def text_chunk(rid: str, created: int, model: str, text: str, finish: str | None = None,
               usage: Usage | None = None, choices: bool = True) -> bytes:
    body: dict[str, Any] = {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage_dict(usage)
    return sse(body)


def embeddings(model: str, vectors: np.ndarray, encoding: str, prompt_tokens: int) -> dict[str, Any]:
    vectors = np.asarray(vectors, dtype=np.float32)
    if encoding == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        data = vectors.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
