"""The gateway's answer cache: exact and semantic hits, strictly scoped, guarded against look-alikes.

A cached answer is only ever served inside its :class:`CacheScope` — the same tenant, model,
system prompt and knowledge-base version (a KB update changes its version and so retires every
answer grounded in the old one) — and only for a conversation whose earlier turns are identical.
Within that, a question gets:

1. an **exact** hit when its normalised text (Unicode NFKC, case, whitespace, trailing
   punctuation) hashes to a stored one;
2. a **semantic** hit when the stored question nearest in embedding space is at least
   ``similarity`` close *and* the meaning guard (:mod:`lingxi.meaning`) sees no
   negation, number, date, entity, comparative, opposite or question-word difference.

Answers live in a :class:`~lingxi.stores.cache.CacheStore` (``[gateway.cache] backend``:
``memory``, ``sqlite`` or ``redis``; see :mod:`lingxi.stores.cache`). Every store keeps answers
plus an append-only per-scope log of (question, vector); each process mirrors the logs it needs
in memory and reads only what is new on each lookup, so a semantic lookup costs one small read
plus a matrix-vector product, whatever the backend.

What this module does not do: decide *whether* a request may be cached (``n > 1``, tools,
high temperature — that is the gateway's call) or count hits for metrics (the caller sees each
:class:`CacheHit`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lingxi.errors import ConfigError
from lingxi.meaning import meaning_differs
from lingxi.stores.cache import CACHE_STORE_ERRORS, CacheStore, Entry, LogItem, open_cache_store

log = logging.getLogger(__name__)

__all__ = ["CacheScope", "CacheHit", "SemanticCache", "create_cache", "normalize_text"]


@dataclass(frozen=True)
class CacheScope:
    """What must be identical for two requests to share an answer."""

    tenant: str
    model: str
    system_prompt: str
    kb_version: str | None
    groups: tuple[str, ...] | None = None
    """For ``kb:`` answers: the knowledge-base groups the asker may read (None = all). Two callers
    share an answer only if they could see the same documents."""
    params: str = ""
    """The generation parameters that shape an answer (max_tokens, stop, temperature, top_p, seed)."""


@dataclass(frozen=True)
class CacheHit:
    """A cached answer: the stored OpenAI ``chat.completion`` body and how it was found."""

    response: dict
    kind: Literal["exact", "semantic"]
    similarity: float
    question: str = ""
    """The stored question whose answer this is."""


# ---------------------------------------------------------------- normalising


_TRAILING = re.compile(r"[\s?!.。？！,，;；:：~～…]+$")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The form two texts must share for an exact hit: NFKC (full-width -> half-width), lower
    case, single spaces, no trailing punctuation (but "5!" keeps its "!": a factorial)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SPACES.sub(" ", text).strip()
    m = _TRAILING.search(text)
    if m is None:
        return text
    tail = m.group()
    keep = tail[: len(tail) - len(tail.lstrip("!"))] if m.start() and text[m.start() - 1].isdigit() else ""
    return text[: m.start()] + keep


def _content(message: dict) -> str | None:
    """A message's text; None when it carries anything a text cache cannot compare (images, tools)."""
    if message.get("tool_calls") or message.get("function_call") or message.get("role") in ("tool", "function"):
        return None
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    return None


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class _Keyed:
    partition: str
    key: str
    question: str
    """The final user turn as written (the guard needs its capitals); the key hashes its normalised form."""


# ---------------------------------------------------------------- the cache


@dataclass
class _Mirror:
    """This process's copy of one partition's log, as a matrix for one matrix-vector product."""

    cursor: Any = None
    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None

    def extend(self, items: list[LogItem], dim: int) -> None:
        items = [i for i in items if i.vector is not None and i.vector.shape == (dim,)]
        if not items:
            return
        self.keys += [i.key for i in items]
        self.texts += [i.text for i in items]
        self.created += [i.created for i in items]
        block = np.stack([i.vector for i in items]).astype(np.float32)
        self.vectors = block if self.vectors is None else np.concatenate([self.vectors, block])

    def drop(self, index: int) -> None:
        del self.keys[index], self.texts[index], self.created[index]
        self.vectors = np.delete(self.vectors, index, axis=0)

    def trim(self, keep: int) -> None:
        if len(self.keys) > keep:
            cut = len(self.keys) - keep
            del self.keys[:cut], self.texts[:cut], self.created[:cut]
            self.vectors = self.vectors[cut:]


class SemanticCache:
    """Exact + semantic answer cache over a :class:`CacheStore`. Safe to share by concurrent requests."""

    #: Semantic candidates checked per lookup, nearest first (the guard may refuse the nearest).
    CANDIDATES = 4

    def __init__(self, store: CacheStore, *, embedder: Any = None, embedder_name: str = "",
                 similarity: float = 0.97, ttl_s: float = 86400, guard: bool = True, guard_topic: bool = True,
                 max_entries: int = 20000):
        self.store = store
        self.embedder = embedder
        self.embedder_name = embedder_name if embedder is not None else ""
        self.similarity = similarity
        self.ttl_s = ttl_s
        self.guard = guard
        self.guard_topic = guard_topic
        self.max_entries = max_entries
        self._mirrors: OrderedDict[str, _Mirror] = OrderedDict()
        self._mirrored = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self.errors = 0
        """Store failures so far (each answered as a miss)."""
        self._last_warning = -1e9

    # ------------------------------------------------------------ public

    async def get(self, scope: CacheScope, messages: Sequence[dict]) -> CacheHit | None:
        """The cached answer for ``messages`` in ``scope``, or None.

        A store that fails (Redis unreachable, SQLite locked past its timeout) is a miss, logged
        and counted in :attr:`errors`: the request is answered uncached, never failed.
        """
        try:
            return await self._get(scope, messages)
        except CACHE_STORE_ERRORS as exc:
            self._failed("get", exc)
            return None

    async def put(self, scope: CacheScope, messages: Sequence[dict], response: dict) -> None:
        """Store ``response`` (an OpenAI chat.completion body) as the answer to ``messages`` in ``scope``.

        Conversations a text cache cannot compare (images, tool calls, no final user turn) are
        skipped; a failing store is logged and counted in :attr:`errors`, like :meth:`get`.
        """
        try:
            await self._put(scope, messages, response)
        except CACHE_STORE_ERRORS as exc:
            self._failed("put", exc)

    def _failed(self, op: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_warning >= 30:  # one line per 30 s, not one per request, while a store is down
            self._last_warning = now
            log.warning("cache %s failed (%s backend), answering uncached: %s", op, self.store.name, exc)

    async def _get(self, scope: CacheScope, messages: Sequence[dict]) -> CacheHit | None:
        keyed = self._keyed(scope, messages)
        if keyed is None:
            return None
        entry = await self.store.get(keyed.key)
        if entry is not None and entry.created + self.ttl_s >= time.time():
            return CacheHit(entry.response, "exact", 1.0, entry.text)
        if self.embedder is None:
            return None
        mirror = await self._refresh(keyed.partition)
        if mirror.vectors is None or not mirror.keys:
            return None
        query = await self._embed(keyed.question)
        scores = mirror.vectors @ query
        order = np.argsort(-scores)[: self.CANDIDATES]
        # Copy the candidates out before the first await: other requests may change the mirror meanwhile.
        candidates = [(float(scores[i]), mirror.keys[i], mirror.texts[i], mirror.created[i]) for i in order
                      if scores[i] >= self.similarity]
        now = time.time()
        stale: list[str] = []
        hit = None
        for score, key, text, created in candidates:
            if created + self.ttl_s < now:
                stale.append(key)
                continue
            if self.guard and meaning_differs(keyed.question, text, substitution=self.guard_topic):
                continue
            entry = await self.store.get(key)
            if entry is None or entry.text != text:  # evicted, expired or replaced in the store
                stale.append(key)
                continue
            hit = CacheHit(entry.response, "semantic", score, entry.text)
            break
        for key in stale:
            if key in mirror.keys:
                mirror.drop(mirror.keys.index(key))
                self._mirrored -= 1
        return hit

    async def _put(self, scope: CacheScope, messages: Sequence[dict], response: dict) -> None:
        keyed = self._keyed(scope, messages)
        if keyed is None:
            return
        vector = None
        if self.embedder is not None:
            vector = await self._embed(keyed.question)
        await self.store.put(Entry(keyed.key, keyed.partition, keyed.question, vector, response, time.time()))

    async def close(self) -> None:
        await self.store.close()
        await self.embedder.aclose()
        self._mirrors.clear()

    # ------------------------------------------------------------ internals

    def _keyed(self, scope: CacheScope, messages: Sequence[dict]) -> _Keyed | None:
        if not messages or messages[-1].get("role") != "user":
            return None
        texts = []
        for message in messages:
            text = _content(message)
            if text is None:
                return None
            texts.append([message.get("role", ""), normalize_text(text)])
        if not texts[-1][1]:
            return None
        groups = None if scope.groups is None else sorted(set(scope.groups))
        partition = _hash("v2", scope.tenant, scope.model, scope.system_prompt, scope.kb_version, groups,
                          scope.params, texts[:-1], self.embedder_name)
        question = unicodedata.normalize("NFKC", _content(messages[-1]) or "").strip()
        return _Keyed(partition, _hash(partition, texts[-1][1]), question)

    async def _embed(self, question: str) -> np.ndarray:
        # A miss is usually followed by a put of the same question: embed it once.
        vector = self._vectors.get(question)
        if vector is None:
            vector = (await self.embedder.aembed([question], kind="query"))[0].astype(np.float32)
            self._vectors[question] = vector
            if len(self._vectors) > 256:
                self._vectors.popitem(last=False)
        return vector

    async def _refresh(self, partition: str) -> _Mirror:
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            mirror = self._mirrors.get(partition)
            if mirror is None:
                mirror = self._mirrors[partition] = _Mirror()
            self._mirrors.move_to_end(partition)
            before = len(mirror.keys)
            items, mirror.cursor = await self.store.log_since(partition, mirror.cursor)
            mirror.extend(items, self.embedder.dim)
            mirror.trim(self.max_entries)
            self._mirrored += len(mirror.keys) - before
            # Bound this process's memory: forget the least recently used partitions first.
            while self._mirrored > self.max_entries and len(self._mirrors) > 1:
                old_partition, old = self._mirrors.popitem(last=False)
                self._mirrored -= len(old.keys)
                self._locks.pop(old_partition, None)
            return mirror


# ---------------------------------------------------------------- factory


def create_cache(settings: Any) -> SemanticCache:
    """Build the cache ``settings.gateway.cache`` describes.

    Raises:
        ConfigError: the redis backend has no URL, or the embedder is unknown.
        MissingExtraError: the backend's or embedder's package is not installed.
    """
    cfg = settings.gateway.cache
    store = open_cache_store(settings)
    embedder, name = None, ""
    if cfg.semantic and cfg.guard:
        # Load jieba now (seconds, off the event loop when the caller builds the cache in a thread)
        # rather than inside the first Chinese request; a missing extra shows up at start-up.
        meaning_differs("预热", "预热")
    if cfg.semantic:
        from lingxi.engines import load_embedder

        name = cfg.embedder or settings.default_embedder
        if name not in settings.all_embedders():
            raise ConfigError([f"gateway.cache.embedder: unknown embedder '{name}'; known: "
                               f"{', '.join(sorted(settings.all_embedders()))}"], settings.source)
        embedder = load_embedder(name, settings)
    return SemanticCache(store, embedder=embedder, embedder_name=name, similarity=cfg.similarity,
                         ttl_s=cfg.ttl_s, guard=cfg.guard, guard_topic=cfg.guard_topic, max_entries=cfg.max_entries)
