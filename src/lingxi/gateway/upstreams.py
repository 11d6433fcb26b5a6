"""Replicas of one served model: load balancing, failover, circuit breakers, health checks.

A :class:`ModelPool` serves one model name from one or more replicas (each a configured model,
so an in-process llama.cpp model and a fleet of vLLM / llama.cpp servers look the same).

- **Balancing**: least in-flight requests first; ties go round-robin.
- **Failover**: a replica that fails *before its first token* (connection refused, timeout,
  5xx, engine error) is marked and the request moves to another replica, up to ``retries``
  more attempts. After the first token has gone to the client a failure ends the stream:
  replaying would duplicate text. Client errors (4xx, context length) are never retried.
- **Circuit breaker**: ``breaker_failures`` consecutive failures open a replica's breaker; it
  takes no traffic for ``breaker_reset_s``, then lets one trial request through (half-open);
  success closes it, failure opens it again.
- **Health checks**: HTTP replicas are probed with ``GET {base_url}/models`` every
  ``health_interval_s``; an unhealthy replica is skipped while a healthy one exists.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from lingxi.engines.base import ChatEngine, Chunk, GenerationParams, Prompt
from lingxi.errors import EngineError, LingxiError, UpstreamError, UsageError

log = logging.getLogger("lingxi.gateway")


def is_retryable(exc: BaseException) -> bool:
    """Whether another replica might succeed where this one failed."""
    if isinstance(exc, UpstreamError):
        return exc.retryable or exc.status is None or exc.status >= 500 or exc.status == 429
    if isinstance(exc, LingxiError):
        return isinstance(exc, EngineError)
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError, RuntimeError))


@dataclass
class Replica:
    """One place a model can run, with its load and breaker state."""

    name: str
    load: Callable[[], ChatEngine]
    base_url: str | None = None  # set for HTTP replicas, which get health checks
    api_key_env: str | None = None
    inflight: int = 0
    failures: int = 0  # consecutive
    opened_at: float | None = None  # breaker open since
    trial: bool = False  # a half-open trial request is in flight
    healthy: bool = True
    engine: ChatEngine | None = field(default=None, repr=False)

    def state(self, now: float, reset_s: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if now - self.opened_at >= reset_s else "open"


class ModelPool:
    """Serve one model name from its replicas. See the module docstring for the policy."""

    def __init__(self, name: str, replicas: list[Replica], *, retries: int = 2, breaker_failures: int = 3,
                 breaker_reset_s: float = 15.0, on_state: Callable[[str, Replica], None] | None = None):
        if not replicas:
            raise ValueError(f"model pool '{name}' has no replicas")
        self.name = name
        self.replicas = replicas
        self.retries = retries
        self.breaker_failures = breaker_failures
        self.breaker_reset_s = breaker_reset_s
        self._turn = itertools.count()
        self._on_state = on_state or (lambda pool, replica: None)

    # ------------------------------------------------------------ choosing

    def pick(self, exclude: set[str]) -> Replica:
        """The least-busy usable replica not yet tried for this request.

        Raises:
            UpstreamError: every replica is tried, open, or (all being unhealthy) unusable.
        """
        now = time.monotonic()
        usable = []
        for r in self.replicas:
            if r.name in exclude:
                continue
            state = r.state(now, self.breaker_reset_s)
            if state == "open" or (state == "half-open" and r.trial):
                continue
            usable.append(r)
        healthy = [r for r in usable if r.healthy] or usable
        if not healthy:
            raise UpstreamError(
                f"model '{self.name}'", "no replica available (all failed or their circuit breakers are open)",
                status=503, retryable=True,
            )
        if len(healthy) == 1:
            chosen = healthy[0]
        else:
            least = min(r.inflight for r in healthy)
            ties = [r for r in healthy if r.inflight == least]
            chosen = ties[next(self._turn) % len(ties)]
        if chosen.state(now, self.breaker_reset_s) == "half-open":
            chosen.trial = True
        return chosen

    def _engine(self, replica: Replica) -> ChatEngine:
        if replica.engine is None:
            replica.engine = replica.load()
        return replica.engine

    async def engine(self) -> ChatEngine:
        """An engine of this pool (the least busy), loaded off the event loop if needed."""
        replica = self.pick(set())
        replica.trial = False
        if replica.engine is None:
            replica.engine = await asyncio.to_thread(replica.load)
        return replica.engine

    def _succeeded(self, replica: Replica) -> None:
        was_open = replica.opened_at is not None
        replica.failures, replica.opened_at, replica.trial = 0, None, False
        if was_open:
            log.info("circuit closed for replica %s of %s", replica.name, self.name)
            self._on_state(self.name, replica)

    def _failed(self, replica: Replica, exc: BaseException) -> None:
        replica.failures += 1
        replica.trial = False
        if replica.opened_at is not None or replica.failures >= self.breaker_failures:
            replica.opened_at = time.monotonic()
            log.warning("circuit open for replica %s of %s after %d failures: %s",
                        replica.name, self.name, replica.failures, exc)
            self._on_state(self.name, replica)

    # ------------------------------------------------------------ serving

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[Chunk]:
        """Stream from one replica, failing over before the first chunk (see module docstring)."""
        tried: set[str] = set()
        last: BaseException | None = None
        for _ in range(self.retries + 1):
            try:
                replica = self.pick(tried)
            except UpstreamError:
                if last is not None:
                    raise last from None
                raise
            tried.add(replica.name)
            replica.inflight += 1
            agen = None
            try:
                if replica.engine is None:
                    replica.engine = await asyncio.to_thread(replica.load)
                if (params.grammar is not None or params.json_schema is not None) \
                        and not replica.engine.constrained_decoding:
                    raise UsageError(f"model '{self.name}' ({replica.engine.engine_name} engine) cannot keep its "
                                     "answer to a grammar or JSON schema (response_format); a llama.cpp model can")
                agen = replica.engine.astream(prompt, params)
                try:
                    first = await agen.__anext__()
                except StopAsyncIteration:
                    self._succeeded(replica)
                    return
                except Exception as exc:
                    if not is_retryable(exc):
                        replica.trial = False
                        raise
                    self._failed(replica, exc)
                    last = exc
                    continue
                self._succeeded(replica)
                yield first
                async for chunk in agen:
                    yield chunk
                return
            finally:
                replica.inflight -= 1
                replica.trial = False  # a cancelled trial must not keep the replica shut out
                if agen is not None:
                    await agen.aclose()
        assert last is not None
        raise last

    # ------------------------------------------------------------ health

    def set_health(self, base_url: str, ok: bool) -> None:
        """Record a probe of ``base_url`` on the replicas that live there."""
        for r in self.replicas:
            if r.base_url == base_url and r.healthy != ok:
                log.warning("replica %s of %s is now %s", r.name, self.name, "healthy" if ok else "unhealthy")
                r.healthy = ok
                self._on_state(self.name, r)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {"replica": r.name, "healthy": r.healthy, "breaker": r.state(now, self.breaker_reset_s),
             "inflight": r.inflight, "loaded": r.engine is not None}
            for r in self.replicas
        ]


async def probe(client: Any, base_url: str, api_key_env: str | None) -> bool:
    """Whether an OpenAI-compatible server answers ``GET {base_url}/models`` (``client``: httpx.AsyncClient).

    Any answer but a gateway/overload status (502, 503, 504) counts as alive: a server that does not
    implement ``/models`` still serves completions.
    """
    import os

    headers = {}
    if api_key_env and os.environ.get(api_key_env):
        headers["authorization"] = f"Bearer {os.environ[api_key_env]}"
    try:
        resp = await client.get(f"{base_url}/models", headers=headers)
    except Exception:  # any transport failure means "not reachable now"
        return False
    return resp.status_code not in (502, 503, 504)


def build_pools(settings: Any, engines: dict[str, ChatEngine] | None = None) -> dict[str, ModelPool]:
    """One pool per configured/bundled model, plus one per ``[gateway.replicas]`` entry.

    ``engines`` maps model names to ready engine instances that replace loading from config
    (tests and embedding Lingxi in another program).
    """
    from lingxi.engines import load_engine
    from lingxi.errors import ConfigError

    engines = engines or {}
    gw = settings.gateway
    models = settings.all_models()

    def replica(name: str) -> Replica:
        cfg = models.get(name)
        r = Replica(name=name, load=lambda: engines.get(name) or load_engine(name, settings),
                    engine=engines.get(name))
        if cfg is not None and getattr(cfg, "engine", None) == "openai":
            r.base_url, r.api_key_env = cfg.base_url, cfg.api_key_env
        return r

    def pool(name: str, members: list[str]) -> ModelPool:
        return ModelPool(name, [replica(m) for m in members], retries=gw.retries,
                         breaker_failures=gw.breaker_failures, breaker_reset_s=gw.breaker_reset_s)

    problems = []
    for served, members in gw.replicas.items():
        if not members:
            problems.append(f"gateway.replicas.{served}: lists no models")
        for m in members:
            if m not in models and m not in engines:
                problems.append(f"gateway.replicas.{served}: unknown model '{m}'; known: {', '.join(sorted(models))}")
    if problems:
        raise ConfigError(problems, settings.source)
    pools = {name: pool(name, [name]) for name in {*models, *engines}}
    pools.update({served: pool(served, list(members)) for served, members in gw.replicas.items()})
    return pools
