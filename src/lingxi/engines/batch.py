"""Continuous batching: many requests share one model's decode loop, as llama.cpp's server does.

A :class:`BatchScheduler` owns a fixed number of *slots* (one KV-cache sequence each) and runs
one step at a time on the engine's thread: every running request contributes its next token to
one batch, a newcomer's prompt fills the rest of the batch in chunks (so nobody's decoding
stalls behind a long prompt), one ``decode`` evaluates it all, and each request samples its own
token with its own sampler (temperature, top-p, seed, grammar). Requests join and leave at token
boundaries: a finished, cancelled or disconnected request gives its slot up before the next step.

Prompt-cache reuse: a slot keeps the tokens its last request left in the KV cache. A new request
goes to the free slot whose cached tokens share the longest prefix with its prompt (the
conversation's previous turn), or copies the cells of a shared prefix (a system prompt, a
knowledge-base preamble) from any other slot; only the rest is prefilled. A cancelled request's
cells are freed at once; when the pool runs out, idle caches are dropped first, then the newest
request is paused and later resumed by recomputing its tokens.

Waiting requests are served round-robin across tenants (:class:`FairQueue`, the tenant comes
from :data:`tenant_var`, which the gateway's admission sets), so one tenant's burst cannot starve
the others.

The model itself sits behind :class:`Backend` (llama.cpp in :mod:`lingxi.engines.llamacpp`; the
fast tests use a small deterministic one). This module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import collections
import contextvars
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any, Generic, Protocol, TypeVar

from lingxi.engines.base import Chunk, GenerationParams, Usage
from lingxi.errors import EngineError

T = TypeVar("T")

#: The tenant a request belongs to, for round-robin fairness. The gateway's admission sets it in
#: the request's task (``Admission.acquire(tenant=...)``); outside the gateway everyone is "".
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("lingxi_tenant", default="")

#: Queue-wait histogram bounds (seconds), the same as the gateway's latency buckets.
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: Most prompt tokens a step prefills while other requests are decoding: their next token waits
#: for the whole step, so a long prompt goes in several steps instead of one.
PREFILL_CHUNK = 512


class FairQueue(Generic[T]):
    """Waiters grouped by tenant: FIFO within a tenant, round-robin across tenants."""

    def __init__(self) -> None:
        self._by_tenant: collections.OrderedDict[str, collections.deque[T]] = collections.OrderedDict()
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[T]:
        for items in list(self._by_tenant.values()):
            yield from list(items)

    def push(self, tenant: str, item: T, *, front: bool = False) -> None:
        """Queue ``item``; ``front`` puts it (and its tenant) first, for a request sent back."""
        items = self._by_tenant.get(tenant)
        if items is None:
            items = self._by_tenant[tenant] = collections.deque()
        if front:
            items.appendleft(item)
            self._by_tenant.move_to_end(tenant, last=False)
        else:
            items.append(item)
        self._n += 1

    def pop(self) -> T:
        """The next item: the head of the tenant whose turn it is; that tenant goes to the back."""
        if not self._by_tenant:
            raise IndexError("pop from an empty FairQueue")
        tenant, items = next(iter(self._by_tenant.items()))
        item = items.popleft()
        self._n -= 1
        if items:
            self._by_tenant.move_to_end(tenant)
        else:
            del self._by_tenant[tenant]
        return item

    def remove_if(self, pred: Callable[[T], bool]) -> list[T]:
        """Take out every item for which ``pred`` holds; returns them."""
        removed: list[T] = []
        for tenant in list(self._by_tenant):
            items = self._by_tenant[tenant]
            kept = collections.deque(x for x in items if not pred(x))
            if len(kept) != len(items):
                removed.extend(x for x in items if pred(x))
                if kept:
                    self._by_tenant[tenant] = kept
                else:
                    del self._by_tenant[tenant]
        self._n -= len(removed)
        return removed

    def by_tenant(self) -> dict[str, int]:
        return {tenant: len(items) for tenant, items in self._by_tenant.items()}


class Backend(Protocol):
    """What the scheduler needs from a model: multi-sequence decode, per-request samplers, KV ops.

    Every method is called on the scheduler's one thread.
    """

    n_slots: int  # sequences (slots) the KV cache holds
    n_batch: int  # most tokens one decode takes
    kv_cells: int  # KV cache cells, all slots together
    per_slot: bool  # each slot its own stream of kv_cells / n_slots cells, or one pool they share

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int], logits: list[bool]) -> bool:
        """Evaluate one batch; False when the KV cache has no room for it (nothing was changed).
        Raises EngineError when the model fails."""

    def sampler(self, params: GenerationParams) -> Any:
        """A fresh sampler for one request."""

    def sample(self, sampler: Any, row: int) -> int:
        """Sample from the logits of batch row ``row`` (one whose ``logits`` flag was set)."""

    def free_sampler(self, sampler: Any) -> None: ...

    def seq_rm(self, seq: int, p0: int) -> bool:
        """Drop the cells of ``seq`` from position ``p0`` on (``p0 = 0``: all of them). False if
        the cache cannot drop a partial range (then the caller drops all)."""

    def seq_cp(self, src: int, dst: int, n: int) -> None:
        """Share the first ``n`` positions of ``src`` into the (empty) sequence ``dst``."""

    def is_eog(self, token: int) -> bool: ...

    def piece(self, token: int) -> bytes: ...


Sink = Callable[[str, Any], None]  # ("item", Chunk) | ("end", None) | ("error", exception)


class Request:
    """One generation in the scheduler. ``context`` is the prompt plus every token sampled so far."""

    def __init__(self, tokens: list[int], params: GenerationParams, stops: tuple[str, ...], budget: int,
                 sink: Sink, tenant: str):
        self.context = list(tokens)
        self.n_prompt = len(tokens)
        self.params = params
        self.stops = stops
        self.budget = budget
        self.sink = sink
        self.tenant = tenant
        # A seeded request starts from an empty cache: a reused prefix recomputes the last logits in
        # another batch shape, which changes them in the last bits, and the same seed must give the
        # same answer.
        self.reuse = params.seed is None
        self.cancelled = False
        self.done = False  # it has ended (set on the scheduler's thread)
        self.submitted = time.perf_counter()
        self.sampler: Any = None
        self.started = False  # it has had a slot (a paused request keeps its sampler and stats)
        self.slot: Slot | None = None
        self.produced = 0
        self.reused = 0  # prompt tokens taken from the cache instead of prefilled
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""  # decoded text not yet sent, kept back while it may start a stop string


class Slot:
    """One KV-cache sequence: the tokens whose cells it holds, and the request using it (if any)."""

    def __init__(self, seq: int):
        self.seq = seq
        self.cached: list[int] = []
        self.request: Request | None = None
        self.last_used = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]: bisect on the first difference
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


_live: weakref.WeakSet[BatchScheduler] = weakref.WeakSet()


def live_schedulers() -> list[BatchScheduler]:
    """Every scheduler in this process that is not closed (for ``/metrics``)."""
    return [s for s in list(_live) if not s.closed]


class BatchScheduler:
    """Continuous batching over a :class:`Backend`, one step at a time on ``executor``'s thread.

    ``executor`` must run one task at a time (the engine's llama.cpp thread). The scheduler runs a
    step per task and queues the next one behind whatever else is waiting there, so two models
    on the one thread take turns step by step.
    """

    def __init__(self, backend: Backend, executor: Executor, model: str, *, n_ctx: int,
                 prefill_chunk: int = PREFILL_CHUNK):
        self.backend = backend
        self.model = model
        self.n_ctx = n_ctx
        self.prefill_chunk = prefill_chunk
        self._executor = executor
        self._slots = [Slot(i) for i in range(backend.n_slots)]
        self._lock = threading.Lock()
        self._incoming: list[Request] = []
        self._cancels = 0
        self._waiting: FairQueue[Request] = FairQueue()
        self._running = False  # a step is queued or running on the executor
        self._hold = False  # a request was paused for lack of cells: admit none until one ends
        self.closed = False
        # statistics for /metrics (read from other threads: plain numbers, updated in place)
        self.wait_counts = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0
        self.prompt_tokens = 0
        self.reused_tokens = 0
        self.steps = 0
        self.preemptions = 0
        self.evictions = 0  # times the pool was full and idle slots' prompt caches were dropped
        self._outbox: list[tuple[Sink, str, Any]] = []  # this step's items, delivered at its end
        _live.add(self)

    # ------------------------------------------------------------ from any thread

    def submit(self, tokens: list[int], params: GenerationParams, stops: tuple[str, ...], budget: int,
               sink: Sink, tenant: str = "") -> Request:
        req = Request(tokens, params, stops, budget, sink, tenant)
        with self._lock:
            if self.closed:
                raise EngineError(f"model '{self.model}' is closed")
            self._incoming.append(req)
            self._kick()
        return req

    def cancel(self, req: Request) -> None:
        """Stop ``req``: its slot and KV cells are freed before the next step."""
        if req.cancelled or req.done:
            return
        req.cancelled = True
        with self._lock:
            self._cancels += 1
            if not self.closed:
                self._kick()

    def _kick(self) -> None:  # under self._lock
        if not self._running:
            self._running = True
            try:
                self._executor.submit(self._run)
            except RuntimeError:  # the interpreter is shutting down
                self._running = False

    @property
    def busy(self) -> int:
        return sum(1 for s in self._slots if s.request is not None)

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._incoming)

    @property
    def cached_tokens(self) -> int:
        return sum(len(s.cached) for s in self._slots)

    def slot_states(self) -> list[tuple[bool, int]]:
        """(busy, cached tokens) per slot, for tests and diagnostics."""
        return [(s.request is not None, len(s.cached)) for s in self._slots]

    # ------------------------------------------------------------ on the executor's thread

    def _run(self) -> None:
        try:
            self.step()
        except BaseException as exc:  # noqa: BLE001 - handed to every request, never lost
            err = exc if isinstance(exc, EngineError) else EngineError(
                f"model '{self.model}': batch step failed: {exc}")
            self._fail_all(err)
        with self._lock:
            if self._incoming or len(self._waiting) or self.busy:
                try:
                    self._executor.submit(self._run)
                except RuntimeError:
                    self._running = False
            else:
                self._running = False

    def step(self) -> None:
        """One scheduling step: take newcomers and cancellations, fill free slots, decode one batch,
        then hand out what it produced."""
        try:
            self._step()
        finally:
            self._flush()

    def _send(self, req: Request, kind: str, value: Any) -> None:
        self._outbox.append((req.sink, kind, value))

    def _flush(self) -> None:
        """Deliver the step's items. A consumer on an event loop (:class:`LoopSink`) gets them in
        one wake-up per loop per step, not one per token: every wake-up of the loop's thread
        competes with llama.cpp's threads for the cores and with this thread for the GIL."""
        out, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[LoopSink, str, Any]]] = {}
        for sink, kind, value in out:
            if isinstance(sink, LoopSink):
                by_loop.setdefault(sink.loop, []).append((sink, kind, value))
            else:
                sink(kind, value)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                for sink, _, _ in items:
                    if sink.request is not None:
                        self.cancel(sink.request)

    def _step(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            cancels, self._cancels = self._cancels, 0
        for req in incoming:
            if req.cancelled:
                self._send(req, "end", None)
            else:
                self._waiting.push(req.tenant, req)
        if cancels:
            for slot in self._slots:
                if slot.request is not None and slot.request.cancelled:
                    self._finish(slot, drop=True)
            for req in self._waiting.remove_if(lambda r: r.cancelled):
                self._release_sampler(req)
                self._send(req, "end", None)
        self._assign()
        while any(s.request is not None for s in self._slots):
            if self._decode_step():
                self.steps += 1
                return

    def _assign(self) -> None:
        if self._hold:
            return
        free = [s for s in self._slots if s.request is None]
        while free and len(self._waiting):
            req = self._waiting.pop()
            slot = self._pick(free, req)
            try:
                self._start(slot, req)
            except Exception as exc:  # noqa: BLE001 - e.g. a sampler llama.cpp refused: fail this request only
                # Popped from the queue but not yet in a slot, it would otherwise wait forever.
                slot.request, req.slot = None, None
                self._release_sampler(req)
                req.done = True
                self._send(req, "error", exc if isinstance(exc, EngineError) else EngineError(
                    f"model '{self.model}': could not start the request: {exc}"))
                continue
            free.remove(slot)

    def _pick(self, free: list[Slot], req: Request) -> Slot:
        """The free slot whose whole cache the request continues (a conversation's next turn);
        else an empty one, so that other prompts stay cached (a prefix shared with any slot, a
        system prompt, is copied over in :meth:`_start`); else the one sharing most with the
        request; else the one unused longest (its cache is the least likely to be wanted again)."""
        empty = [s for s in free if not s.cached]
        if req.reuse:
            best = max(free, key=lambda s: common_prefix(s.cached, req.context))
            n = common_prefix(best.cached, req.context)
            if n > 0 and (n == len(best.cached) or not empty):
                return best
        return empty[0] if empty else min(free, key=lambda s: s.last_used)

    def _start(self, slot: Slot, req: Request) -> None:
        first = not req.started  # not the resumption of a paused request
        if first:
            req.sampler = self.backend.sampler(req.params)  # first: if llama.cpp refuses it, nothing is held
            req.started = True
            wait = time.perf_counter() - req.submitted
            self.wait_counts[bisect.bisect_left(WAIT_BUCKETS, wait)] += 1
            self.wait_sum += wait
            self.prompt_tokens += req.n_prompt
        limit = len(req.context) - 1  # at least one token is evaluated, for its logits
        keep = min(common_prefix(slot.cached, req.context), limit) if req.reuse else 0
        if first and not req.reuse:
            # Where a sequence's cells lie in the shared pool changes the order of the attention
            # sums, so a seeded request's samples would depend on what earlier requests left
            # cached. Idle caches go, so alone it always starts from the same layout; next to
            # other running requests the seed is best effort, as OpenAI documents it.
            for other in self._slots:
                if other.request is None and other is not slot and other.cached:
                    self._drop(other, 0)
        donor, shared = None, keep
        if req.reuse:  # a longer prefix in another slot (a shared system prompt): share its cells
            for other in self._slots:
                if other is not slot:
                    n = min(common_prefix(other.cached, req.context), limit)
                    if n > shared:
                        donor, shared = other, n
        if donor is not None:
            self._drop(slot, 0)
            self.backend.seq_cp(donor.seq, slot.seq, shared)
            slot.cached = donor.cached[:shared]
            keep = shared
        else:
            self._drop(slot, keep)
        if first:
            req.reused = keep
            self.reused_tokens += keep
        slot.request, req.slot = req, slot

    def _drop(self, slot: Slot, keep: int) -> None:
        """Free the slot's cells from position ``keep`` on."""
        if len(slot.cached) > keep or keep == 0:
            if not self.backend.seq_rm(slot.seq, keep):
                self.backend.seq_rm(slot.seq, 0)
                keep = 0
        del slot.cached[keep:]

    def _plan(self) -> tuple[list[int], list[int], list[int], list[bool], list[tuple[Slot, int, int]]]:
        """The next batch: every decoding request's next token, then prompt chunks.
        Returns the rows and, per slot, (slot, tokens fed, row of its logits or -1)."""
        tokens: list[int] = []
        pos: list[int] = []
        seqs: list[int] = []
        logits: list[bool] = []
        fed: list[tuple[Slot, int, int]] = []
        active = [s for s in self._slots if s.request is not None]
        decoding = [s for s in active if len(s.request.context) - len(s.cached) == 1]  # type: ignore[union-attr]
        prefilling = sorted((s for s in active if len(s.request.context) - len(s.cached) > 1),  # type: ignore[union-attr]
                            key=lambda s: s.request.submitted)  # type: ignore[union-attr]
        n_batch = self.backend.n_batch
        for slot in decoding:
            if len(tokens) >= n_batch:
                break
            tokens.append(slot.request.context[-1])  # type: ignore[union-attr]
            pos.append(len(slot.cached))
            seqs.append(slot.seq)
            logits.append(True)
            fed.append((slot, 1, len(tokens) - 1))
        room = n_batch - len(tokens)
        if decoding:
            room = min(room, self.prefill_chunk)
        for slot in prefilling:
            if room <= 0:
                break
            ctx = slot.request.context  # type: ignore[union-attr]
            start = len(slot.cached)
            take = ctx[start:start + room]
            tokens.extend(take)
            pos.extend(range(start, start + len(take)))
            seqs.extend([slot.seq] * len(take))
            done = start + len(take) == len(ctx)
            logits.extend([False] * (len(take) - 1) + [done])
            fed.append((slot, len(take), len(tokens) - 1 if done else -1))
            room -= len(take)
        return tokens, pos, seqs, logits, fed

    def _decode_step(self) -> bool:
        """Plan, decode and sample once. False if the batch did not fit and requests were moved."""
        tokens, pos, seqs, logits, fed = self._plan()
        if not self.backend.decode(tokens, pos, seqs, logits):
            self._make_room()
            return False
        for slot, n, row in fed:
            req = slot.request
            assert req is not None
            start = len(slot.cached)
            slot.cached.extend(req.context[start:start + n])
            if row >= 0:
                self._emit(slot, self.backend.sample(req.sampler, row))
        return True

    def _make_room(self) -> None:
        """The KV pool is full: drop idle caches, else pause the newest request (it resumes by
        recomputing its tokens once another request ends), else fail a request too long alone."""
        idle = [s for s in self._slots if s.request is None and s.cached]
        if idle:
            for slot in idle:
                self._drop(slot, 0)
            self.evictions += 1
            return
        active = [s for s in self._slots if s.request is not None]
        newest = max(active, key=lambda s: s.request.submitted)  # type: ignore[union-attr]
        req = newest.request
        assert req is not None
        if len(active) == 1:
            self._finish(newest, drop=True, error=EngineError(
                f"model '{self.model}': the KV cache ({self.n_ctx} cells) cannot hold this request; "
                "raise context_length"))
            return
        self._drop(newest, 0)
        newest.request, req.slot = None, None
        self._waiting.push(req.tenant, req, front=True)
        self._hold = True
        self.preemptions += 1

    def _emit(self, slot: Slot, token: int) -> None:
        req = slot.request
        assert req is not None
        if self.backend.is_eog(token):
            self._finish(slot, "stop")
            return
        req.context.append(token)
        req.produced += 1
        req.pending += req.decoder.decode(self.backend.piece(token))
        if req.stops:
            cut = find_stop(req.pending, req.stops)
            if cut is not None:
                req.pending = req.pending[:cut]
                self._finish(slot, "stop")
                return
            safe = len(req.pending) - partial_stop(req.pending, req.stops)
        else:
            safe = len(req.pending)
        if safe > 0:
            self._send(req, "item", Chunk(text=req.pending[:safe]))
            req.pending = req.pending[safe:]
        if req.produced >= req.budget:
            self._finish(slot, "length")

    def _finish(self, slot: Slot, finish: str = "stop", *, drop: bool = False,
                error: BaseException | None = None) -> None:
        """End the slot's request. A finished one leaves its cells as a prompt cache; a cancelled or
        failed one (``drop``) frees them at once."""
        req = slot.request
        assert req is not None
        slot.request, req.slot = None, None
        req.done = True
        slot.last_used = time.perf_counter()
        self._hold = False
        if drop:
            self._drop(slot, 0)
        self._release_sampler(req)
        if error is not None:
            self._send(req, "error", error)
        elif req.cancelled:
            self._send(req, "end", None)
        else:
            req.pending += req.decoder.decode(b"", final=True)
            if req.pending:
                self._send(req, "item", Chunk(text=req.pending))
            self._send(req, "item", Chunk(finish_reason=finish,
                                   usage=Usage(prompt_tokens=req.n_prompt, completion_tokens=req.produced)))
            self._send(req, "end", None)

    def _release_sampler(self, req: Request) -> None:
        if req.started and req.sampler is not False:
            self.backend.free_sampler(req.sampler)
            req.sampler = False  # freed

    def _fail_all(self, err: BaseException) -> None:
        for slot in self._slots:
            if slot.request is not None:
                try:
                    self._finish(slot, drop=True, error=err)
                except Exception:  # noqa: BLE001 - the backend is broken: forget its cells
                    slot.cached = []
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for req in list(self._waiting) + incoming:
            req.done = True
            self._send(req, "error", err)
        self._waiting = FairQueue()
        self._flush()

    def close(self) -> None:
        """Fail what is still running or waiting; call on the executor's thread before freeing the model."""
        with self._lock:
            self.closed = True
        self._fail_all(EngineError(f"model '{self.model}' was closed while generating"))
        for slot in self._slots:
            slot.cached = []


def find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that begins a stop string: only that is held back,
    so text that cannot become a stop goes out at once (a fixed holdback delays the first token)."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


# ------------------------------------------------------------ consuming a request


def _unpack(kind: str, value: Any) -> Chunk | None:
    """One message from the scheduler: a chunk, None at the end, or the request's error raised."""
    if kind == "error":
        raise value
    return value if kind == "item" else None


def stream_request(scheduler: BatchScheduler, tokens: list[int], params: GenerationParams,
                   stops: tuple[str, ...], budget: int) -> Iterator[Chunk]:
    """Submit a request and yield its chunks in the calling thread; closing the generator cancels it."""
    items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    req = scheduler.submit(tokens, params, stops, budget, lambda kind, value: items.put((kind, value)),
                           tenant_var.get())
    try:
        while (chunk := _unpack(*items.get())) is not None:
            yield chunk
    finally:
        scheduler.cancel(req)  # no-op once it ended; frees the slot at once if it had not


class LoopSink:
    """Where a request's items go when its consumer is a coroutine: a queue on ``loop``. The
    scheduler delivers one step's items for all of a loop's requests together (:func:`_deliver`)."""

    __slots__ = ("loop", "queue", "request")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.request: Request | None = None

    def __call__(self, kind: str, value: Any) -> None:  # one item on its own (from any thread)
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))


def _deliver(items: list[tuple[LoopSink, str, Any]]) -> None:
    """On the event loop: one step's items, into their requests' queues."""
    for sink, kind, value in items:
        sink.queue.put_nowait((kind, value))


async def astream_request(scheduler: BatchScheduler, tokens: list[int], params: GenerationParams,
                          stops: tuple[str, ...], budget: int) -> AsyncIterator[Chunk]:
    """Async :func:`stream_request`: a client that disconnects (the iterator is closed) cancels it."""
    sink = LoopSink(asyncio.get_running_loop())
    req = sink.request = scheduler.submit(tokens, params, stops, budget, sink, tenant_var.get())
    try:
        while (chunk := _unpack(*await sink.queue.get())) is not None:
            yield chunk
    finally:
        scheduler.cancel(req)
