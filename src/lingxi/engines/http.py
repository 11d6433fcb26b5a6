"""Talking to an OpenAI-compatible HTTP server: auth, timeouts, retries, error mapping, SSE.

Shared by :class:`~lingxi.engines.openai_upstream.OpenAIUpstream` (chat/completions) and
:class:`~lingxi.engines.embedders.OpenAIEmbedder`. Retries happen only before any byte of a
response has been handed to the caller, so a stream is never duplicated.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from lingxi.errors import UpstreamError, UsageError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class HttpUpstream:
    """One OpenAI-compatible base URL with a sync and an async connection pool."""

    def __init__(self, config: Any):
        self.base_url = config.base_url
        self.timeout = httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
        self.max_retries = config.max_retries
        self.api_key_env = config.api_key_env
        self.extra_headers = dict(getattr(config, "headers", {}) or {})
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ plumbing

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.extra_headers}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise UsageError(
                    f"upstream {self.base_url}: environment variable {self.api_key_env} (its API key) is not set"
                )
            headers["authorization"] = f"Bearer {key}"
        return headers

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout)
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        # An async pool belongs to the event loop that opened it: a caller on another loop
        # (asyncio.run twice, a second server in one process) gets its own.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            self._aclient, self._aloop = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout), loop
        return self._aclient

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _error(self, path: str, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        try:
            body = response.json()
            detail = body.get("error", body) if isinstance(body, dict) else body
            message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            message = response.text[:300] or response.reason_phrase
        if status == 401:
            hint = f" (check ${self.api_key_env})" if self.api_key_env else " (no api_key_env configured)"
            message = f"unauthorized{hint}: {message}"
        retry_after = _seconds(response.headers.get("retry-after"))
        return UpstreamError(self._url(path), message, status=status, retryable=status in RETRY_STATUS,
                             retry_after_s=retry_after)

    def _json(self, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            shown = response.text[:200]
            raise UpstreamError(self._url(path), f"answered {response.status_code} with a body that is not a "
                                f"JSON object: {shown!r}", status=response.status_code)
        return body

    def _transport_error(self, path: str, exc: httpx.HTTPError) -> UpstreamError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
        return UpstreamError(self._url(path), f"{kind}: {exc.__class__.__name__}: {exc}", retryable=True)

    def _backoff(self, attempt: int, error: UpstreamError, retry_after: str | None) -> float:
        wait = _seconds(retry_after)
        if wait is not None:
            return min(wait, 30.0)
        return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random())

    # ------------------------------------------------------------ sync

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self.client.post(path, json=payload, headers=self.headers())
                if response.status_code < 400:
                    return self._json(path, response)
                error, retry_after = self._error(path, response), response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc)
            if not error.retryable or attempt == self.max_retries:
                raise error
            time.sleep(self._backoff(attempt, error, retry_after))
        raise AssertionError("unreachable")

    def stream(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST with ``stream: true`` and yield each SSE ``data:`` event as JSON.

        Only a request that has not yielded an event is retried: a retry after the first event
        would repeat text the caller already has. A stream that ends without ``[DONE]`` is an
        error (a silently truncated answer would look complete).
        """
        started = False
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self.client.stream("POST", path, json=payload, headers=self.headers()) as response:
                    if response.status_code < 400:
                        for event in _sse_events(response.iter_lines(), self._url(path)):
                            started = True
                            yield event
                        return
                    response.read()
                    error, retry_after = self._error(path, response), response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc)
            except UpstreamError as exc:  # a cut or malformed stream
                error = exc
            if started or not error.retryable or attempt == self.max_retries:
                raise error
            time.sleep(self._backoff(attempt, error, retry_after))

    # ------------------------------------------------------------ async

    async def apost(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = await self.aclient.post(path, json=payload, headers=self.headers())
                if response.status_code < 400:
                    return self._json(path, response)
                error, retry_after = self._error(path, response), response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc)
            if not error.retryable or attempt == self.max_retries:
                raise error
            await asyncio.sleep(self._backoff(attempt, error, retry_after))
        raise AssertionError("unreachable")

    async def astream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        started = False
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                async with self.aclient.stream("POST", path, json=payload, headers=self.headers()) as response:
                    if response.status_code < 400:
                        async for event in _asse_events(response.aiter_lines(), self._url(path)):
                            started = True
                            yield event
                        return
                    await response.aread()
                    error, retry_after = self._error(path, response), response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc)
            except UpstreamError as exc:  # a cut or malformed stream
                error = exc
            if started or not error.retryable or attempt == self.max_retries:
                raise error
            await asyncio.sleep(self._backoff(attempt, error, retry_after))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        # The async pool belongs to whichever loop used it; dropping it lets that loop close it.
        self._aclient = None


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After in seconds (negative means now); None when absent or not a number.
    (The HTTP-date form is rare from model servers and is treated as absent.)"""
    try:
        wait = float(retry_after or "")
    except ValueError:
        return None
    return max(wait, 0.0) if math.isfinite(wait) else None


def _parse_event(line: str, url: str) -> dict[str, Any] | None | bool:
    """JSON for a data line, None for anything else, False at ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return False
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UpstreamError(url, f"malformed stream event: {data[:200]!r}") from exc
    if isinstance(event, dict) and "error" in event:
        err = event["error"]
        raise UpstreamError(url, err.get("message", str(err)) if isinstance(err, dict) else str(err))
    return event


# After ``[DONE]`` the rest of the body is read (it is only the end of the chunked stream), so
# the connection goes back to the pool instead of being closed half-read.


def _sse_events(lines: Iterator[str], url: str) -> Iterator[dict[str, Any]]:
    done = False
    for line in lines:
        if done:
            continue
        event = _parse_event(line, url)
        if event is False:
            done = True
        elif event:
            yield event
    if not done:
        raise _cut_short(url)


async def _asse_events(lines: AsyncIterator[str], url: str) -> AsyncIterator[dict[str, Any]]:
    done = False
    async for line in lines:
        if done:
            continue
        event = _parse_event(line, url)
        if event is False:
            done = True
        elif event:
            yield event
    if not done:
        raise _cut_short(url)


def _cut_short(url: str) -> UpstreamError:
    return UpstreamError(url, "the stream ended before data: [DONE] (connection cut?)", retryable=True)
