"""The guard's gateway stages: ``pii``, ``injection``, ``policy`` and ``audit``.

Enable them in ``[gateway] stages`` (they run in the order listed; output wrapping in reverse),
configure them in ``[guard]`` with per-tenant differences in ``[guard.tenants.NAME]``::

    [gateway]
    stages = ["policy", "injection", "pii", "audit"]

    [guard.pii]
    action = "pseudonymize"          # the model sees <PERSON_1>; the caller gets the name back
    actions = { CN_ID_CARD = "redact" }

    [guard.tenants.hr]
    stages = ["pii"]                 # this tenant runs only the pii stage (audit always runs)
    pii = { action = "mask" }

Each stage notes what it decided in ``req.state["guard"]`` (counts and categories, never the
personal data itself); the ``audit`` stage writes that with the request's record. A stage
refuses a request with :class:`~lingxi.errors.ContentPolicyError` (HTTP 400, code
``content_filter``) and fails closed with :class:`~lingxi.errors.GuardError` (503) when a
detector breaks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import ValidationError

from lingxi.errors import ConfigError, ContentPolicyError
from lingxi.gateway.pipeline import Outcome, PipelineRequest, Stage

log = logging.getLogger("lingxi.guard")

_PARTS = ("pii", "injection", "policy")


# ---------------------------------------------------------------- per-tenant settings


def _merged(base: Any, override: dict[str, Any], key: str, problems: list[str]) -> Any:
    """``base`` with the fields of ``override`` replaced, validated; problems name their keys."""
    if not override:
        return base
    try:
        return type(base).model_validate({**base.model_dump(), **override})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}.{where}: {msg}")
        return base


class TenantGuards:
    """The effective ``[guard]`` settings of each tenant, checked once for all tenants."""

    def __init__(self, settings: Any):
        from lingxi.guard.pii import LABELS

        guard = settings.guard
        problems: list[str] = []
        self.default = {"stages": None, **{p: getattr(guard, p) for p in _PARTS}}
        self.tenants: dict[str, dict[str, Any]] = {}
        for name, t in guard.tenants.items():
            view = {"stages": set(t.stages) if t.stages is not None else None}
            for part in _PARTS:
                view[part] = _merged(getattr(guard, part), getattr(t, part), f"guard.tenants.{name}.{part}", problems)
            self.tenants[name] = view
        for key, view in [("guard", self.default), *((f"guard.tenants.{n}", v) for n, v in self.tenants.items())]:
            pii = view["pii"]
            prefix = "guard.pii" if key == "guard" else f"{key}.pii"
            for i, label in enumerate(pii.entities):
                if label not in LABELS:
                    problems.append(f"{prefix}.entities.{i}: unknown label '{label}'; known: {', '.join(LABELS)}")
            for label in pii.actions:
                if label not in LABELS:
                    problems.append(f"{prefix}.actions.{label}: unknown label; known: {', '.join(LABELS)}")
        self.problems = sorted(set(problems))
        # Several guard stages share [guard]: the first one listed reports its problems, the
        # others only refuse to start, so each problem is listed once.
        listed = [n for n in settings.gateway.stages if n in ("pii", "injection", "policy", "audit")]
        self.first = listed[0] if listed else None

    def raise_problems(self, stage: str, own: list[str], source: str | None) -> None:
        """Raise a ConfigError with ``own`` problems plus the shared ones (if ``stage`` reports them)."""
        shared = self.problems if stage == self.first else []
        if own or self.problems:
            raise ConfigError([*shared, *own], source)

    def view(self, tenant: str) -> dict[str, Any]:
        return self.tenants.get(tenant, self.default)

    def runs(self, tenant: str, part: str) -> bool:
        stages = self.view(tenant)["stages"]
        return stages is None or part in stages


def _unknown_options(name: str, options: dict[str, Any]) -> list[str]:
    return [f"gateway.stage_options.{name}.{k}: unknown key (the guard is configured in [guard])" for k in sorted(options)]


def _note(req: PipelineRequest, entry: dict[str, Any]) -> None:
    req.state.setdefault("guard", []).append(entry)


def _texts(req: PipelineRequest, roles: Any = None) -> Iterator[str]:
    for m in req.messages or ():
        if isinstance(m.get("content"), str) and (roles is None or m.get("role") in roles):
            yield m["content"]
    if req.prompt is not None:
        yield req.prompt
    for text in req.inputs or ():
        yield text


async def _cpu(fn: Any, *args: Any, size: int = 0) -> Any:
    """Run a CPU-bound check inline when small, in a worker thread when large."""
    if size > 4000:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


# ---------------------------------------------------------------- pii


class PiiStage(Stage):
    """Redacts or pseudonymises personal data in prompts; redacts new personal data in answers
    and puts the caller's pseudonymised values back."""

    name = "pii"

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        super().__init__(settings, options)
        self.guards = TenantGuards(settings)
        self.guards.raise_problems(self.name, _unknown_options(self.name, options), settings.source)
        self._redactors: dict[tuple[str, str], Any] = {}
        # Load the detectors now (jieba's dictionary takes a second or two), not on the first request.
        self._redactor("", "input").detect("张伟 13800000000")

    def _redactor(self, tenant: str, side: str) -> Any:
        from lingxi.guard.pii import PiiDetector
        from lingxi.guard.redact import Redactor

        key = (tenant if tenant in self.guards.tenants else "", side)
        if key not in self._redactors:
            cfg = self.guards.view(tenant)["pii"]
            detector = PiiDetector(cfg.entities or None, lang=cfg.lang)
            hash_key = None
            if cfg.hash_key_env and os.environ.get(cfg.hash_key_env):
                hash_key = os.environ[cfg.hash_key_env].encode()
            if side == "input":
                policy, default = dict(cfg.actions), cfg.action
            else:  # the model's own words: never pseudonymised (the caller has no map for them)
                policy, default = {}, cfg.output
            self._redactors[key] = Redactor(policy, default, detector, hash_key=hash_key, fail_open=cfg.fail_open)
        return self._redactors[key]

    async def before(self, req: PipelineRequest) -> None:
        from lingxi.guard.redact import Pseudonyms

        if not self.guards.runs(req.caller.tenant, "pii"):
            return
        redactor = self._redactor(req.caller.tenant, "input")
        pseudonyms = req.state.setdefault("pii_pseudonyms", Pseudonyms())
        found: Counter[str] = Counter()

        async def clean(text: str) -> str:
            result = await _cpu(redactor.redact, text, pseudonyms, size=len(text))
            found.update(s.label for s in result.spans)
            return result.text

        for m in req.messages or ():
            if isinstance(m.get("content"), str):
                m["content"] = await clean(m["content"])
        if req.prompt is not None:
            req.prompt = await clean(req.prompt)
        if req.inputs is not None:
            req.inputs = [await clean(t) for t in req.inputs]
        _note(req, {"stage": "pii", "side": "input", "decision": "redacted" if found else "clean",
                    "entities": dict(found)})
        req.state["pii_redacted"] = True  # the audit stage stores these texts as they are now

    async def wrap(self, req: PipelineRequest, text: AsyncIterator[str]) -> AsyncIterator[str]:
        from lingxi.guard.redact import StreamRedactor, StreamRestorer

        if not self.guards.runs(req.caller.tenant, "pii"):
            async for piece in text:
                yield piece
            return
        pseudonyms = req.state.get("pii_pseudonyms")
        stream = text
        redactor = None
        if self.guards.view(req.caller.tenant)["pii"].output != "keep":
            redactor = StreamRedactor(self._redactor(req.caller.tenant, "output"))
            stream = redactor.wrap(stream)
        redacted = req.state.setdefault("pii_answer", [])  # the answer before real values go back: for the audit

        async def keep(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
            async for piece in pieces:
                redacted.append(piece)
                yield piece

        stream = keep(stream)
        if pseudonyms:
            stream = StreamRestorer(pseudonyms).wrap(stream)
        async for piece in stream:
            yield piece
        if redactor is not None and redactor.spans:
            _note(req, {"stage": "pii", "side": "output", "decision": "redacted",
                        "entities": dict(Counter(s.label for s in redactor.spans))})


# ---------------------------------------------------------------- injection


class InjectionStage(Stage):
    """Scores prompts (and a ``kb:`` answer's retrieved passages) for prompt injection."""

    name = "injection"

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        super().__init__(settings, options)
        self.guards = TenantGuards(settings)
        self._models: dict[str | None, Any] = {}
        problems = _unknown_options(self.name, options)
        for key, view in [("guard", self.guards.default), *((f"guard.tenants.{n}", v) for n, v in self.guards.tenants.items())]:
            path = view["injection"].model_path
            if path and path not in self._models:
                from lingxi.errors import UsageError
                from lingxi.guard.injection import load_model

                try:
                    self._models[path] = load_model(path)
                except UsageError as exc:
                    problems.append(f"{key}.injection.model_path: {exc}")
        self.guards.raise_problems(self.name, problems, settings.source)

    def _model(self, cfg: Any) -> tuple[Any, float]:
        from lingxi.guard.injection import load_model

        model = self._models.get(cfg.model_path) or load_model(cfg.model_path)
        return model, cfg.threshold if cfg.threshold is not None else model.threshold

    async def before(self, req: PipelineRequest) -> None:
        if not self.guards.runs(req.caller.tenant, "injection") or req.kind == "embedding":
            return
        cfg = self.guards.view(req.caller.tenant)["injection"]
        model, threshold = self._model(cfg)
        worst, flagged = 0.0, False
        for text in _texts(req, set(cfg.roles) - {"tool"}):
            score = await _cpu(model.score, text, size=len(text))
            worst, flagged = max(worst, score), flagged or score >= threshold
        if "tool" in cfg.roles:  # what a tool returns is a document (a page, a file): scanned as one
            from lingxi.guard.injection import scan_document

            for m in req.messages or ():
                if m.get("role") == "tool" and isinstance(m.get("content"), str):
                    found = await _cpu(scan_document, m["content"], model, 400, 200, cfg.threshold,
                                       size=len(m["content"]))
                    worst, flagged = max(worst, found.score), flagged or found.flagged
        _note(req, {"stage": "injection", "side": "input", "score": round(worst, 4),
                    "decision": cfg.action if flagged else "clean"})
        if flagged and cfg.action == "block":
            raise ContentPolicyError(f"the request looks like a prompt injection (score {worst:.2f}); refused",
                                     reason="injection")
        if req.kind == "kb" and cfg.sources and cfg.action == "block":
            req.source_filter = self._source_filter(req, cfg)

    def _source_filter(self, req: PipelineRequest, cfg: Any) -> Any:
        """The check a knowledge base runs on each passage it retrieved, before answering: one that
        reads as a prompt injection is left out (and noted), so the answer neither rests on it nor
        is refused for it — one poisoned or oddly worded passage among those found costs the
        question nothing else."""
        from lingxi.guard.injection import scan_document

        model, _prompt_threshold = self._model(cfg)

        cleared = req.state.setdefault("injection_cleared", set())  # _check_sources need not scan these again

        def flagged(passage: Any) -> bool:
            found = scan_document(passage.text or "", model, threshold=cfg.threshold)
            if found.flagged:
                _note(req, {"stage": "injection", "side": "sources", "decision": "excluded", "id": passage.id,
                            "source": passage.source, "score": round(found.score, 4)})
            else:
                cleared.add((passage.id, passage.text))
            return found.flagged
        return flagged

    def _check_sources(self, req: PipelineRequest, cfg: Any) -> None:
        from lingxi.guard.injection import scan_document

        model, _prompt_threshold = self._model(cfg)
        flagged = []
        cleared = req.state.get("injection_cleared", ())
        for src in req.sources:
            if (src.id, src.text) in cleared:
                continue  # scanned before the answer was made
            # a configured threshold serves both; otherwise documents use the model's calibrated ones
            found = scan_document(src.text or "", model, threshold=cfg.threshold)
            if found.flagged:
                flagged.append({"id": src.id, "source": src.source, "score": round(found.score, 4)})
        _note(req, {"stage": "injection", "side": "sources", "checked": len(req.sources),
                    "decision": cfg.action if flagged else "clean", "flagged": flagged})
        if flagged and cfg.action == "block":
            names = ", ".join(sorted({f["source"] for f in flagged}))
            raise ContentPolicyError(f"a retrieved passage looks like a prompt injection ({names}); the answer "
                                     "was withheld", reason="injection")

    async def wrap(self, req: PipelineRequest, text: AsyncIterator[str]) -> AsyncIterator[str]:
        cfg = self.guards.view(req.caller.tenant)["injection"]
        if req.kind != "kb" or not cfg.sources or not self.guards.runs(req.caller.tenant, "injection"):
            async for piece in text:
                yield piece
            return
        # The sources of a streamed kb answer may be known only at its end: hold the text until
        # they are, so an answer steered by a poisoned passage never reaches the client.
        held: list[str] = []
        checked = False
        async for piece in text:
            if not checked and req.sources:
                self._check_sources(req, cfg)
                checked = True
            if checked:
                for p in held:
                    yield p
                held.clear()
                yield piece
            else:
                held.append(piece)
        if not checked:
            self._check_sources(req, cfg)
        for p in held:
            yield p


# ---------------------------------------------------------------- policy


class PolicyStage(Stage):
    """Sensitive-word lists on prompts and, streaming, on answers."""

    name = "policy"

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        from pathlib import Path

        from lingxi.errors import UsageError
        from lingxi.guard.policy import ContentPolicy

        super().__init__(settings, options)
        self.guards = TenantGuards(settings)
        base = Path(settings.source).parent if getattr(settings, "source", None) else Path(".")
        self._policies: dict[str, Any] = {}
        problems = _unknown_options(self.name, options)
        for key, view in [("", self.guards.default), *self.guards.tenants.items()]:
            try:
                cats = {n: c.model_dump() for n, c in view["policy"].categories.items()}
                self._policies[key] = ContentPolicy.from_mapping(cats, base)
            except UsageError as exc:
                where = "guard.policy" if not key else f"guard.tenants.{key}.policy"
                problems.append(f"{where}.categories: {exc}")
        self.guards.raise_problems(self.name, problems, settings.source)

    def _policy(self, tenant: str) -> Any:
        return self._policies.get(tenant, self._policies[""])

    async def before(self, req: PipelineRequest) -> None:
        if not self.guards.runs(req.caller.tenant, "policy"):
            return
        policy = self._policy(req.caller.tenant)
        hits = []
        for text in _texts(req):
            hits.extend(await _cpu(policy.check, text, size=len(text)))
        decision = policy.decision(hits)
        _note(req, {"stage": "policy", "side": "input", "decision": decision or "clean",
                    "categories": dict(Counter(h.category for h in hits))})
        if decision == "block":
            blocked = sorted({h.category for h in hits if h.action == "block"})
            raise ContentPolicyError(f"the request was blocked by the content policy (category: {', '.join(blocked)})")

    async def wrap(self, req: PipelineRequest, text: AsyncIterator[str]) -> AsyncIterator[str]:
        from lingxi.guard.policy import PolicyStream

        cfg = self.guards.view(req.caller.tenant)["policy"]
        if not cfg.output or not cfg.categories or not self.guards.runs(req.caller.tenant, "policy"):
            async for piece in text:
                yield piece
            return
        stream = PolicyStream(self._policy(req.caller.tenant))
        try:
            async for piece in stream.wrap(text):
                yield piece
        except ContentPolicyError:
            _note(req, {"stage": "policy", "side": "output", "decision": "block"})
            raise
        if stream.hits:
            _note(req, {"stage": "policy", "side": "output", "decision": stream.policy.decision(stream.hits),
                        "categories": dict(Counter(h.category for h in stream.hits))})


# ---------------------------------------------------------------- audit


class AuditStage(Stage):
    """Writes one tamper-evident record per request (see :mod:`lingxi.audit.log`).

    Records go to a writer thread that appends them in batches (one transaction each), so the
    request path never waits for the database; :meth:`after` returns once its record is
    committed, and :meth:`close` drains the queue and signs a final checkpoint.
    """

    name = "audit"

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        from lingxi.audit import open_audit_log

        super().__init__(settings, options)
        if options:
            raise ConfigError(_unknown_options(self.name, options), settings.source)
        self.cfg = settings.guard.audit
        self.log = open_audit_log(settings)
        self._redactor: Any = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._writer, name="lingxi-audit-writer", daemon=True)
        self._thread.start()

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < 500:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                self.log.append([rec for rec, _done in batch])
                error = None
            except Exception as exc:  # reported to each waiting after(), which logs it
                error = exc
            for _rec, done in batch:
                done(error)
            if stop:
                return

    def _text(self, text: str) -> str:
        if self.cfg.text == "none":
            return ""
        if self.cfg.text == "full" or not text:
            return text
        if self._redactor is None:
            from lingxi.guard.redact import Redactor

            self._redactor = Redactor(default="redact", fail_open=False)
        try:
            return self._redactor.redact(text).text
        except Exception as exc:  # never store what could not be redacted
            return f"[not stored: redaction failed ({type(exc).__name__})]"

    def record(self, req: PipelineRequest, outcome: Outcome) -> Any:
        """The audit record of one request (prompt and answer as ``[guard.audit] text`` says;
        when the ``pii`` stage ran, "redacted" means as that stage's policy left them)."""
        from lingxi.audit import AuditRecord

        by_pii = self.cfg.text == "redacted" and req.state.get("pii_redacted")
        text = (lambda t: t) if by_pii else self._text
        if req.messages is not None:
            prompt = json.dumps([{"role": m.get("role"), "content": text(m.get("content") or "")}
                                 for m in req.messages], ensure_ascii=False)
        elif req.prompt is not None:
            prompt = text(req.prompt)
        else:
            prompt = json.dumps([text(t) for t in req.inputs or ()], ensure_ascii=False)
        if by_pii and "pii_answer" in req.state and outcome.error is None:
            answer = "".join(req.state["pii_answer"])
        else:
            answer = self._text(outcome.text)
        usage = outcome.usage
        return AuditRecord(
            request_id=req.id, tenant=outcome.tenant or req.caller.tenant, key_id=outcome.key_id or req.caller.key_id,
            model=outcome.model or req.model, kind=req.kind, status=outcome.status,
            error=str(outcome.error) if outcome.error is not None else None, latency_s=round(outcome.latency_s, 6),
            prompt=prompt, answer=answer,
            sources=[{"id": c.id, "source": c.source, "score": round(float(c.score), 4)} for c in req.sources],
            guard=list(req.state.get("guard", [])),
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
            ts=outcome.started)

    async def after(self, req: PipelineRequest, outcome: Outcome) -> None:
        rec = await asyncio.to_thread(self.record, req, outcome)
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finished(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(error))

        self._queue.put((rec, finished))
        error = await done
        if error is not None:
            raise error

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self.log.close)
