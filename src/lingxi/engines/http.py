"""Talking to an OpenAI-compatible HTTP server: auth, timeouts, retries, error mapping, SSE.

Shared by :class:`~lingxi.engines.openai_upstream.OpenAIUpstream` (chat/completions) and
:class:`~lingxi.engines.embedders.OpenAIEmbedder`. Retries happen only before any byte of a
response has been handed to the caller, so a stream is never duplicated.

Three timeouts: ``connect_timeout_s`` to open a connection, ``first_byte_timeout_s`` for the
answer to start once the request is sent (and for each later read), ``timeout_s`` for the whole
request. A chat/completion is not idempotent: once sent it may be running (and billed) upstream,
so a timeout after sending is not retried unless ``retry_after_send`` is set. A refused
connection, a connect timeout, a 408/409/429/5xx answer and a stream closed before its first
event are retried (embeddings, which are idempotent, on any timeout).

The synchronous side (CLI, worker threads) uses httpx; the asynchronous side (the gateway's hot
path) uses aiohttp, whose C HTTP parser costs about a third of httpx's per request (0.26-0.30 ms
against 0.80-0.86 ms for one streamed answer from a loopback upstream on 2 cores), which is most
of the latency the gateway adds.
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
        self.total_s = config.timeout_s
        self.timeout = httpx.Timeout(min(config.first_byte_timeout_s, config.timeout_s),
                                     connect=min(config.connect_timeout_s, config.timeout_s))
        self.max_retries = config.max_retries
        self.retry_after_send = config.retry_after_send
        self.api_key_env = config.api_key_env
        self.extra_headers = dict(getattr(config, "headers", {}) or {})
        self._client: httpx.Client | None = None
        self._session: Any = None  # aiohttp.ClientSession, opened on first async use
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, Any] = {}

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

    def session(self) -> Any:
        """The aiohttp session of the running event loop (a pool belongs to the loop that opened
        it: a caller on another loop, e.g. ``asyncio.run`` twice, gets its own)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._aloop is not loop or self._session.closed:
            import aiohttp

            if self._session is not None:
                _drop(self._session)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.total_s, sock_connect=self.timeout.connect,
                                              sock_read=self.timeout.read),
                connector=aiohttp.TCPConnector(limit=0),  # the gateway's admission queue bounds concurrency
                # trust_env would read ~/.netrc in a worker thread on every request (aiohttp 3.x)
                trust_env=False)
            self._aloop = loop
        return self._session

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _yarl(self, path: str) -> Any:
        url = self._urls.get(path)
        if url is None:  # parse each URL once, not per request
            import yarl

            url = self._urls[path] = yarl.URL(self._url(path))
        return url

    def _error(self, path: str, status: int, body: bytes, reason: str | None,
               headers: Any) -> UpstreamError:
        try:
            data = json.loads(body)
            detail = data.get("error", data) if isinstance(data, dict) else data
            message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            message = body[:300].decode("utf-8", "replace") or (reason or "")
        if status == 401:
            hint = f" (check ${self.api_key_env})" if self.api_key_env else " (no api_key_env configured)"
            message = f"unauthorized{hint}: {message}"
        retry_after = _seconds(headers.get("retry-after"))
        return UpstreamError(self._url(path), message, status=status, retryable=status in RETRY_STATUS,
                             retry_after_s=retry_after)

    def _json(self, path: str, status: int, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict):
            shown = body[:200].decode("utf-8", "replace")
            raise UpstreamError(self._url(path), f"answered {status} with a body that is not a "
                                f"JSON object: {shown!r}", status=status)
        return data

    def _transport_error(self, path: str, exc: BaseException, idempotent: bool) -> UpstreamError:
        """A transport failure; retryable unless the request may already be running upstream."""
        import aiohttp

        timed_out = isinstance(exc, (httpx.TimeoutException, TimeoutError))
        before_send = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                                       aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        if timed_out and not before_send:
            retryable = idempotent or self.retry_after_send
            note = "" if retryable else " (not re-sent: the request may be running upstream; see retry_after_send)"
        else:
            retryable, note = True, ""
        kind = "timed out" if timed_out else "unreachable"
        return UpstreamError(self._url(path), f"{kind}: {exc.__class__.__name__}: {exc}{note}", retryable=retryable)

    def _backoff(self, attempt: int, error: UpstreamError) -> float:
        if error.retry_after_s is not None:  # the server's Retry-After, read by _error
            return min(error.retry_after_s, 30.0)
        return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random())

    # ------------------------------------------------------------ sync

    def post(self, path: str, payload: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST and return the JSON answer. ``idempotent``: safe to re-send after a timeout (embeddings)."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(path, json=payload, headers=self.headers())
                if response.status_code < 400:
                    return self._json(path, response.status_code, response.content)
                error = self._error(path, response.status_code, response.content, response.reason_phrase,
                                    response.headers)
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc, idempotent)
            if not error.retryable or attempt == self.max_retries:
                raise error
            time.sleep(self._backoff(attempt, error))
        raise AssertionError("unreachable")

    def stream(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST with ``stream: true`` and yield each SSE ``data:`` event as JSON.

        Only a request that has not yielded an event is retried: a retry after the first event
        would repeat text the caller already has. A stream that ends without ``[DONE]`` is an
        error (a silently truncated answer would look complete).
        """
        started = False
        for attempt in range(self.max_retries + 1):
            deadline = time.monotonic() + self.total_s
            try:
                with self.client.stream("POST", path, json=payload, headers=self.headers()) as response:
                    if response.status_code < 400:
                        for event in _sse_events(response.iter_lines(), self._url(path)):
                            started = True
                            if time.monotonic() > deadline:  # httpx has no total timeout of its own
                                raise UpstreamError(self._url(path), f"timed out: the answer took over "
                                                    f"{self.total_s:g} s (timeout_s)")
                            yield event
                        return
                    response.read()
                    error = self._error(path, response.status_code, response.content, response.reason_phrase,
                                        response.headers)
            except httpx.HTTPError as exc:
                error = self._transport_error(path, exc, False)
            except UpstreamError as exc:  # a cut or malformed stream
                error = exc
            if started or not error.retryable or attempt == self.max_retries:
                raise error
            time.sleep(self._backoff(attempt, error))

    # ------------------------------------------------------------ async

    async def apost(self, path: str, payload: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        import aiohttp

        data = json.dumps(payload).encode()
        for attempt in range(self.max_retries + 1):
            try:
                async with self.session().post(self._yarl(path), data=data, headers=self.headers()) as response:
                    body = await response.read()
                    if response.status < 400:
                        return self._json(path, response.status, body)
                    error = self._error(path, response.status, body, response.reason, response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = self._transport_error(path, exc, idempotent)
            if not error.retryable or attempt == self.max_retries:
                raise error
            await asyncio.sleep(self._backoff(attempt, error))
        raise AssertionError("unreachable")

    async def astream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        import aiohttp

        data = json.dumps(payload).encode()
        started = False
        for attempt in range(self.max_retries + 1):
            try:
                async with self.session().post(self._yarl(path), data=data, headers=self.headers()) as response:
                    if response.status < 400:
                        async for event in _asse_events(_alines(response.content), self._url(path)):
                            started = True
                            yield event
                        return
                    body = await response.read()
                    error = self._error(path, response.status, body, response.reason, response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = self._transport_error(path, exc, False)
            except UpstreamError as exc:  # a cut or malformed stream
                error = exc
            if started or not error.retryable or attempt == self.max_retries:
                raise error
            await asyncio.sleep(self._backoff(attempt, error))

    async def aclose(self) -> None:
        """Close the async pool (call it on the loop that used it, e.g. at server shutdown)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._session is not None:
            _drop(self._session)
            self._session = None


def _drop(session: Any) -> None:
    """Let go of an aiohttp session without awaiting (its loop may be closed or another thread's):
    its pooled sockets are closed now, and it is not reported as "unclosed" when collected."""
    connector = session.connector
    session.detach()
    if connector is not None:
        connector._close()  # the synchronous part of connector.close(); a closed loop is handled there


async def _alines(content: Any) -> AsyncIterator[str]:
    """Lines of an aiohttp body, however long (an SSE line may carry a large chunk)."""
    buffer = b""
    async for data in content.iter_any():
        buffer += data
        if b"\n" in buffer:
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


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
