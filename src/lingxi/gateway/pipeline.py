"""The gateway's request pipeline: the stage interface, the request a stage sees, and the registry.

Every request the gateway answers (chat, completion, embeddings, ``kb:`` answers, the router's
cascade, cache replays; streamed or not) goes through one fixed order::

    authenticate -> limits (request count) -> cheap checks (shape, length vs context)
    -> stages' before(), in config order -> cache -> token reservation -> queue -> generate
    -> stages' wrap() of the text, in reverse config order -> settle (usage, cost, metrics,
    token limit, cache write) -> stages' after(), exactly once

The fixed steps live in :class:`lingxi.gateway.service.Gateway`; the configurable ones are
:class:`Stage` objects named in ``[gateway] stages = [...]`` with options in
``[gateway.stage_options.NAME]``. Stages are found by name through the entry-point group
``lingxi.stages`` (``name = "module:Class"``), the same way for Lingxi's own and a third
party's; :func:`register_stage` adds one from code (tests, an application embedding Lingxi).

This module does not generate, cache or count anything, and imports no heavy layer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from lingxi.engines.base import GenerationParams, Usage
from lingxi.errors import ConfigError, LingxiError
from lingxi.identity import Caller
from lingxi.knowledge.types import Citation

log = logging.getLogger("lingxi.gateway")

#: The entry-point group stages are registered under.
ENTRY_POINT_GROUP = "lingxi.stages"

Kind = Literal["chat", "completion", "embedding", "kb"]


@dataclass
class PipelineRequest:
    """One request as stages see it. Stages may rewrite ``messages`` / ``prompt`` / ``inputs``
    in :meth:`Stage.before`; what they leave there is what the cache and the model get."""

    id: str
    """The response id (``chatcmpl-...``, ``cmpl-...``, ``emb-...``)."""
    kind: Kind
    model: str
    """As requested: ``router``, ``kb:docs``, ``smollm2``, an embedder name ..."""
    caller: Caller
    messages: list[dict[str, str]] | None = None
    """chat and kb: ``[{"role": ..., "content": ...}]``."""
    prompt: str | None = None
    """completion."""
    inputs: list[str] | None = None
    """embedding."""
    params: GenerationParams | None = None
    stream: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space for stages (e.g. a pseudonym map shared by before() and wrap())."""
    sources: list[Citation] = field(default_factory=list)
    """kb: the passages the answer may cite, set before the output stages see any text."""
    source_filter: Callable[[Any], bool] | None = None
    """kb: set by a stage's before(): a retrieved passage (with ``id``, ``source``, ``text``) for
    which it returns True is left out before the answer is made (it reads as a prompt injection)."""


@dataclass
class Outcome:
    """What happened to one request: the access log, metrics and :meth:`Stage.after` read it.
    Filled in as the request goes."""

    model: str = ""
    tenant: str = ""
    key_id: str | None = None
    cache: str | None = None
    """``exact`` / ``semantic`` / ``miss``, or None when the cache was not asked."""
    route: str | None = None
    queue_s: float = 0.0
    ttft_s: float | None = None
    usage: Usage = field(default_factory=Usage)
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers the HTTP layer sends (x-lingxi-cache, x-lingxi-route)."""
    text: str = ""
    """The answer text the client got (after the output stages)."""
    citations: list[Citation] = field(default_factory=list)
    error: LingxiError | None = None
    """Why the request failed (None on success); a bug is recorded as a server_error."""
    status: int = 200
    """The HTTP status (for a stream: 200, with ``error`` set if it ended with an error event)."""
    latency_s: float = 0.0
    started: float = field(default_factory=time.time)
    """Unix time the request reached the pipeline."""


class Stage:
    """A configurable step of the pipeline. Every method has a no-op default: override what you need.

    Args:
        settings: the loaded :class:`lingxi.config.Settings`.
        options: the table ``[gateway.stage_options.NAME]`` (empty if absent). Validate it with
            your own pydantic model and raise :class:`~lingxi.errors.ConfigError` naming every
            bad key (``gateway.stage_options.NAME.key: ...``).
    """

    name: ClassVar[str] = ""
    """The name used in config: ``[gateway] stages = ["pii", ...]``."""

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options

    async def before(self, req: PipelineRequest) -> None:
        """On the way in, in config order, after the cheap checks and before the cache.

        May rewrite ``req.messages`` / ``req.prompt`` / ``req.inputs``. Raise a LingxiError to
        refuse the request (e.g. a 400 with an OpenAI-shaped body): nothing is generated, and
        only the request itself is counted against the caller's limits.
        """

    def wrap(self, req: PipelineRequest, text: AsyncIterator[str]) -> AsyncIterator[str]:
        """On the way out, in reverse config order: the answer's text pieces as they are produced.

        Streamed and non-streamed answers, cascades and cache replays all come through here.
        A stage may hold characters back (a number split across pieces) but must yield them all
        by the time ``text`` ends. Raising a LingxiError ends the response with that error (an
        error event for a stream whose headers are sent). A streamed ``kb:`` answer whose checked
        text differs from what was streamed (sentences dropped, a quotation instead) sends that
        final text through ``wrap()`` a second time, as one piece.
        """
        return text

    async def after(self, req: PipelineRequest, outcome: Outcome) -> None:
        """Exactly once per request that reached the pipeline, success or failure, after the
        accounting (``outcome.error`` is set on failure). An exception here is logged, never
        sent to the client."""

    async def close(self) -> None:
        """Release what the stage holds (files, connections); called at gateway shutdown."""


# ---------------------------------------------------------------- registry

_registered: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage], name: str | None = None) -> type[Stage]:
    """Make ``cls`` available under ``name`` (default ``cls.name``); usable as a class decorator.

    A package normally registers through its entry points instead; this is for code that builds
    a gateway itself. A registered name wins over an entry point of the same name.
    """
    name = name or cls.name
    if not name:
        raise ValueError(f"{cls.__name__} has no stage name: set the class attribute 'name'")
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise TypeError(f"{cls!r} is not a subclass of lingxi.gateway.pipeline.Stage")
    _registered[name] = cls
    return cls


def unregister_stage(name: str) -> None:
    """Forget a stage added with :func:`register_stage` (tests)."""
    _registered.pop(name, None)


def available_stages() -> dict[str, Callable[[], type[Stage]]]:
    """Every known stage name -> a loader of its class (entry points are imported only when used)."""
    from importlib.metadata import entry_points

    found: dict[str, Callable[[], type[Stage]]] = {ep.name: ep.load for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update({name: (lambda cls=cls: cls) for name, cls in _registered.items()})
    return found


def build_stages(settings: Any) -> list[Stage]:
    """The stages ``[gateway] stages`` names, in order, each built with its options.

    Raises:
        ConfigError: every problem at once: unknown or repeated names (listing the known ones),
            options for a stage that is not enabled, a class that is not a Stage, and each
            stage's own option errors.
    """
    gw = settings.gateway
    names, options = list(gw.stages), dict(gw.stage_options)
    if not names and not options:
        return []
    known = available_stages()
    problems: list[str] = []
    for i, name in enumerate(names):
        if name not in known:
            listed = ", ".join(sorted(known)) or "(none installed)"
            problems.append(f"gateway.stages.{i}: unknown stage '{name}'; known: {listed}")
        elif name in names[:i]:
            problems.append(f"gateway.stages.{i}: stage '{name}' is listed twice")
    for name in options:
        if name not in names:
            problems.append(f"gateway.stage_options.{name}: stage '{name}' is not in gateway.stages")
    stages: list[Stage] = []
    for i, name in enumerate(names):
        if name not in known or name in names[:i]:
            continue
        cls = known[name]()
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            problems.append(f"gateway.stages.{i}: '{name}' is registered as {cls!r}, not a Stage subclass")
            continue
        try:
            stages.append(cls(settings, dict(options.get(name) or {})))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems, settings.source)
    return stages


class Pipeline:
    """The configured stages, run in order (before), reverse order (wrap) and all (after)."""

    def __init__(self, stages: Sequence[Stage] = ()):
        self.stages = list(stages)
        self._outward = self.stages[::-1]

    def __bool__(self) -> bool:
        return bool(self.stages)

    async def before(self, req: PipelineRequest) -> None:
        for stage in self.stages:
            await stage.before(req)

    def wrap(self, req: PipelineRequest, text: AsyncIterator[str]) -> AsyncIterator[str]:
        for stage in self._outward:
            text = stage.wrap(req, text)
        return text

    async def after(self, req: PipelineRequest, outcome: Outcome) -> None:
        for stage in self.stages:
            try:
                await stage.after(req, outcome)
            except Exception:  # an audit sink that fails must not fail the request it records
                log.exception("stage '%s' failed in after()", stage.name)

    async def close(self) -> None:
        for stage in self.stages:
            try:
                await stage.close()
            except Exception:
                log.exception("stage '%s' failed to close", stage.name)


__all__ = ["ENTRY_POINT_GROUP", "Outcome", "Pipeline", "PipelineRequest", "Stage", "available_stages",
           "build_stages", "register_stage", "unregister_stage"]
