"""The HTTP shell of the gateway: FastAPI routes over :class:`~lingxi.gateway.service.Gateway`.

Routes parse, authenticate, call one ``Gateway`` method and write the result. Every failure,
including unknown routes, malformed JSON and bugs, becomes an OpenAI-shaped error body::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "..."}}

A thin ASGI layer (:class:`_Edge`) in front of the app refuses oversized bodies early (413),
stamps a request id, and writes the metrics and the JSON access-log line for every request.
"""



import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from lingxi import __version__
from lingxi.errors import (LingxiError, PayloadTooLargeError, PermissionDeniedError, UnsupportedMediaTypeError,
                           missing_extra)

log = logging.getLogger("lingxi.gateway")

#: Paths with their own metric label; anything else is counted as "other".
ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/feedback", "/",
          "/healthz", "/readyz", "/metrics", "/admin/keys"}

_STATUS_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
                429: "rate_limit_error"}


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


def create_app(settings: Any = None, *, gateway: Any = None, **gateway_options: Any) -> Any:
    """Build the ASGI app. ``gateway_options`` go to :class:`~lingxi.gateway.service.Gateway`.

    Raises:
        MissingExtraError: the ``server`` extra (FastAPI, uvicorn, orjson) is not installed.
    """
    try:
        import orjson
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException
        from starlette.responses import HTMLResponse, Response, StreamingResponse
    except ImportError as exc:
        raise missing_extra("the gateway", "server", exc) from exc

    from lingxi.gateway import protocol as wire
    from lingxi.gateway.metrics import setup_access_log
    from lingxi.gateway.pipeline import Outcome
    from lingxi.gateway.service import Gateway, Stream

    if gateway is None:
        if settings is None:
            from lingxi.config import load_config

            settings = load_config()
        gateway = Gateway(settings, **gateway_options)
    gw = gateway
    settings = gw.settings
    limit = settings.gateway.max_body_bytes
    setup_access_log(settings.gateway.access_log)

    @asynccontextmanager
    async def lifespan(app: Any):
        await gw.start()
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="Lingxi gateway", version=__version__, lifespan=lifespan, docs_url="/docs",
                  redoc_url=None)
    app.state.gateway = gw

    # ------------------------------------------------------------ plumbing

    def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)

    def error_response(status: int, message: str, type_: str, code: str | None,
                       headers: dict[str, str] | None = None) -> Response:
        return json_response(wire.error_body(message, type_, code), status, headers)

    class SSEResponse(StreamingResponse):
        """Streams a :class:`Stream` and always runs its cleanup (slot, generation)."""

        def __init__(self, stream: Stream, headers: dict[str, str]):
            super().__init__(stream.chunks, media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no", **headers})
            self._stream = stream

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            # Starlette watches for a disconnect with an anyio task group per response; one plain
            # watcher task that cancels this one does the same job for a fraction of the cost.
            me = asyncio.current_task()
            gone = False

            async def watch() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                me.cancel()

            watcher = asyncio.ensure_future(watch())
            try:
                await self.stream_response(send)
            except asyncio.CancelledError:
                if not gone:
                    raise
                me.uncancel()  # the client left: a normal end for this response
            finally:
                watcher.cancel()
                await self._stream.close()

    async def read_body(request: Request) -> bytes:
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
            parts.append(part)
        return b"".join(parts)

    async def unless_disconnected(request: Request, work: Any) -> Any:
        """Run ``work``; if the client disconnects first, cancel it (stops generation)."""
        task = asyncio.ensure_future(work)
        receive = request.receive

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            watcher.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        raise ClientGone()

    def respond(result: Any, out: Outcome) -> Response:
        if isinstance(result, Stream):
            return SSEResponse(result, out.headers)
        return json_response(result, headers=out.headers)

    async def caller_for(request: Request) -> Any:
        client = request.client.host if request.client else None
        headers = request.headers
        caller = await gw.authenticate(headers.get("authorization"), client, headers.get("host"))
        if caller.key is None and request.method == "POST" and \
                headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            # An open gateway must not take "simple" cross-site POSTs (text/plain, forms) that any
            # web page can send without a CORS preflight.
            raise UnsupportedMediaTypeError("send the body as JSON with 'Content-Type: application/json'")
        return caller

    def cache_flags(request: Request) -> dict[str, bool]:
        cc = request.headers.get("cache-control", "").lower()
        return {"read_cache": "no-cache" not in cc, "write_cache": "no-store" not in cc}

    # ------------------------------------------------------------ errors

    def outcome_of(request: Request) -> Outcome | None:
        return getattr(request.state, "outcome", None)

    @app.exception_handler(LingxiError)
    async def lingxi_error(request: Request, exc: LingxiError) -> Response:
        out = outcome_of(request)
        gw.metrics.errors.labels(gw.model_label(out.model if out else ""), exc.error_type).inc()
        headers = None
        if exc.http_status == 429:  # our limits, or an upstream's passed on
            headers = {"retry-after": str(max(1, round(getattr(exc, "retry_after_s", None) or 1.0)))}
        return error_response(exc.http_status, exc.message, exc.error_type, exc.code, headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        type_ = _STATUS_TYPE.get(exc.status_code, "server_error" if exc.status_code >= 500 else "invalid_request_error")
        code = "not_found" if exc.status_code == 404 else ("method_not_allowed" if exc.status_code == 405 else None)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(exc.status_code, message, type_, code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(400, problems, "invalid_request_error", "invalid_request")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        out = outcome_of(request)
        gw.metrics.errors.labels(gw.model_label(out.model if out else ""), "server_error").inc()
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error", "internal_error")

    # ------------------------------------------------------------ API

    async def answer(request: Request, schema: Any, call: Any) -> Response:
        """Parse, authenticate, run ``call(req, caller, out)`` until done or the client leaves."""
        out = request.state.outcome = Outcome()
        body = await read_body(request)
        caller = await caller_for(request)
        req = wire.parse(schema, body)
        return respond(await unless_disconnected(request, call(req, caller, out)), out)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        flags = cache_flags(request)
        return await answer(request, wire.ChatCompletionRequest,
                            lambda req, caller, out: gw.chat(req, caller, out, **flags))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, wire.CompletionRequest, gw.complete)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await answer(request, wire.EmbeddingRequest, gw.embed)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        caller = await caller_for(request)
        return json_response({"object": "list", "data": await asyncio.to_thread(gw.model_ids, caller)})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> Response:
        caller = await caller_for(request)
        models = await asyncio.to_thread(gw.model_ids, caller)
        for m in models:
            if m["id"] == model_id:
                return json_response(m)
        from lingxi.errors import ModelNotFoundError

        raise ModelNotFoundError(model_id, [m["id"] for m in models])

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        body = await read_body(request)
        caller = await caller_for(request)
        req = wire.parse(wire.FeedbackRequest, body)
        await gw.count_request(caller)  # feedback counts against the key's request limits too
        row = await asyncio.to_thread(gw.feedback, req, caller)
        return json_response({"object": "feedback", "id": row})

    # ------------------------------------------------------------ keys (operators only)

    async def operator_for(request: Request) -> Any:
        caller = await caller_for(request)
        gw.require_operator(caller)  # 403 before the body is even read
        return caller

    @app.post("/admin/keys")
    async def create_key(request: Request) -> Response:
        caller = await operator_for(request)
        req = wire.parse(wire.KeyCreateRequest, await read_body(request))
        return json_response(await gw.create_key(caller, req))

    @app.get("/admin/keys")
    async def list_keys(request: Request) -> Response:
        caller = await operator_for(request)
        revoked = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
        return json_response(await gw.list_keys(caller, include_revoked=revoked))

    @app.delete("/admin/keys/{key_id}")
    async def revoke_key(request: Request, key_id: str) -> Response:
        return json_response(await gw.revoke_key(await operator_for(request), key_id))

    @app.post("/admin/keys/{key_id}/rotate")
    async def rotate_key(request: Request, key_id: str) -> Response:
        return json_response(await gw.rotate_key(await operator_for(request), key_id))

    # ------------------------------------------------------------ operations

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        pools = {name: pool.status() for name, pool in gw.pools.items()
                 if any(r["loaded"] or not r["healthy"] for r in pool.status())}
        body = {"status": "ready" if gw.ready else "loading", "default_model": settings.default_model,
                "inflight": gw.admission.active, "queued": gw.admission.waiting, "models": pools}
        return json_response(body, 200 if gw.ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not settings.gateway.public_metrics:
            caller = await caller_for(request)
            if not caller.trusted:
                raise PermissionDeniedError("/metrics names every tenant: it needs an operator key "
                                            "(lingxi keys create --groups '*') or gateway.public_metrics = true")
        data, content_type = gw.metrics.render()
        return Response(data, media_type=content_type)

    page = resources.files("lingxi.gateway").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/")
    async def index() -> Response:
        return HTMLResponse(page)

    return _Edge(app, gw, limit, json_response, error_response)


class _Edge:
    """Pure ASGI wrapper: body-size check, request id, metrics and access log per request."""

    def __init__(self, app: Any, gw: Any, limit: int, json_response: Any, error_response: Any):
        self.app = app
        self.gw = gw
        self.limit = limit
        self._error_response = error_response
        self.state = app.state  # so callers can reach app.state.gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = uuid.uuid4().hex[:16]
        status = 500
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    response = self._error_response(
                        413, f"request body is over the limit of {self.limit} bytes", "invalid_request_error",
                        "payload_too_large")
                    await response(scope, receive, send)
                    self._record(scope, 413, start, rid)
                    return

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, start, rid)

    def _record(self, scope: Any, status: int, start: float, rid: str) -> None:
        from lingxi.gateway.metrics import access_log

        elapsed = time.perf_counter() - start
        path = scope["path"]
        route = path if path in ROUTES else ("/v1/models" if path.startswith("/v1/models/") else
                                             "/admin/keys" if path.startswith("/admin/keys/") else "other")
        out = scope.get("state", {}).get("outcome")
        m = self.gw.metrics
        m.latency.labels(route).observe(elapsed)
        if out is not None:
            m.requests.labels(route, self.gw.model_label(out.model), out.tenant, str(status)).inc()
        else:
            m.requests.labels(route, "", "", str(status)).inc()
        if route in ("/metrics", "/healthz", "/readyz") or access_log.disabled:
            return
        fields: dict[str, Any] = {
            "ts": round(time.time(), 3), "id": rid, "method": scope["method"], "path": path, "status": status,
            "ms": round(elapsed * 1000, 2),
        }
        if out is not None:
            fields.update(model=out.model, tenant=out.tenant, key=out.key_id, cache=out.cache, route=out.route,
                          queue_ms=round(out.queue_s * 1000, 2),
                          ttft_ms=round(out.ttft_s * 1000, 2) if out.ttft_s is not None else None,
                          prompt_tokens=out.usage.prompt_tokens, completion_tokens=out.usage.completion_tokens)
        # makeRecord + handle: the same record as .info() without its per-call stack walk (findCaller)
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, "request", None, None,
                                                extra={"fields": fields}))
