"""A bounded queue in front of generation: at most ``max_concurrency`` requests generate at once,
at most ``max_queue`` wait, and a request that would wait beyond the queue's size or ``timeout_s``
is refused with :class:`RateLimitError` (HTTP 429 + Retry-After).

Waiters are served round-robin across tenants (first come, first served within one tenant), so
one tenant's burst cannot starve the others. ``acquire(tenant=...)`` also tags the request's task
with its tenant (:data:`lingxi.engines.batch.tenant_var`), so a llama.cpp model's continuous
batch, which has its own slots and queue behind this one, serves tenants round-robin too.
"""

from __future__ import annotations

import asyncio
import math
import time

from lingxi.engines.batch import FairQueue, tenant_var
from lingxi.errors import RateLimitError


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int, timeout_s: float):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.active = 0
        self._waiters: FairQueue[asyncio.Future[None]] = FairQueue()
        self._served = 0
        self._busy_s = 0.0  # summed slot time, for the Retry-After estimate

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def waiting_by_tenant(self) -> dict[str, int]:
        """Requests waiting now, per tenant."""
        return self._waiters.by_tenant()

    def _retry_after(self) -> int:
        mean = self._busy_s / self._served if self._served else 1.0
        return max(1, math.ceil(mean * (self.waiting + 1) / self.max_concurrency))

    async def acquire(self, tenant: str = "") -> float:
        """Wait for a slot; returns the seconds waited. Always pair with :meth:`release`.

        ``tenant`` (the caller's tenant from the key store) decides whose turn it is among waiters.
        """
        tenant_var.set(tenant)  # this task's later engine calls queue under the same tenant
        if self.active < self.max_concurrency and not self._waiters:
            self.active += 1
            return 0.0
        if self.waiting >= self.max_queue:
            raise RateLimitError(
                f"server busy: {self.active} requests generating and {self.waiting} waiting", self._retry_after()
            )
        start = time.perf_counter()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.push(tenant, fut)
        try:
            await asyncio.wait_for(fut, self.timeout_s)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.release(0.0)  # the slot was handed to us just as we gave up: pass it on
            else:
                fut.cancel()
                self._waiters.remove_if(lambda f: f is fut)
            if isinstance(exc, TimeoutError):
                raise RateLimitError(
                    f"server busy: waited {self.timeout_s:.0f} s for a free slot", self._retry_after()
                ) from None
            raise
        return time.perf_counter() - start

    def release(self, held_s: float) -> None:
        """Give the slot to the next waiter (the next tenant in turn), or free it."""
        self._served += 1
        self._busy_s += held_s
        while self._waiters:
            fut = self._waiters.pop()
            if not fut.done():
                fut.set_result(None)  # the slot passes on; ``active`` is unchanged
                return
        self.active -= 1
