"""Prometheus metrics and the structured request log of the gateway.

Every gateway app has its own registry (several apps in one process, as in tests, do not
collide). Labels are bounded: model names come from config, tenants from the key store, and
status codes / error types from a fixed set.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lingxi.errors import missing_extra

access_log = logging.getLogger("lingxi.gateway.access")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class GatewayMetrics:
    """The gateway's counters and histograms, in one registry served at ``/metrics``."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            raise missing_extra("gateway metrics", "server", exc) from exc
        r = self.registry = CollectorRegistry()
        self.requests = Counter("lingxi_requests", "Requests answered, by route, model, tenant and status.",
                                ["route", "model", "tenant", "status"], registry=r)
        self.errors = Counter("lingxi_errors", "Requests that ended in an error, by model and error type.",
                              ["model", "type"], registry=r)
        self.latency = Histogram("lingxi_request_seconds", "Whole request time.", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("lingxi_ttft_seconds", "Time to first token (from admission).", ["model"],
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.tps = Histogram("lingxi_decode_tokens_per_second", "Decode speed per request.", ["model"],
                             buckets=_TPS_BUCKETS, registry=r)
        self.queue = Histogram("lingxi_queue_seconds", "Time spent waiting for a generation slot.",
                               buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("lingxi_tokens", "Tokens processed, by model, tenant and kind (prompt|completion).",
                              ["model", "tenant", "kind"], registry=r)
        self.cost = Counter("lingxi_cost_usd", "Cost in USD from the models' configured prices.",
                            ["model", "tenant"], registry=r)
        self.cache = Counter("lingxi_cache_lookups", "Semantic cache lookups, by model and result "
                             "(exact|semantic|miss).", ["model", "result"], registry=r)
        self.inflight = Gauge("lingxi_inflight_requests", "Requests generating now.", registry=r)
        self.waiting = Gauge("lingxi_queued_requests", "Requests waiting for a slot.", registry=r)
        self.replica_up = Gauge("lingxi_replica_up", "1 if a replica is healthy with its breaker closed.",
                                ["model", "replica"], registry=r)
        r.register(BatchCollector())

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class BatchCollector:
    """The continuous batches of the llama.cpp models in this process, read at scrape time:
    slot occupancy, the engine-side queue and its wait, and how much prompt the cache saved."""

    def describe(self) -> list[Any]:
        return []  # read live at collect time; nothing to check for name clashes up front

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from lingxi.engines.batch import WAIT_BUCKETS, live_schedulers

        slots = GaugeMetricFamily("lingxi_batch_slots", "Slots in the model's continuous batch.", labels=["model"])
        busy = GaugeMetricFamily("lingxi_batch_slots_busy", "Slots generating now (batch occupancy).",
                                 labels=["model"])
        waiting = GaugeMetricFamily("lingxi_batch_waiting", "Requests waiting for a batch slot.", labels=["model"])
        cells = GaugeMetricFamily("lingxi_batch_kv_cells", "KV cache cells of the model, all slots together; "
                                  "layout: one pool the slots share, or a stream per slot.", labels=["model", "layout"])
        cached = GaugeMetricFamily("lingxi_batch_cached_tokens", "Tokens held in the KV cache by all slots.",
                                   labels=["model"])
        prompt = CounterMetricFamily("lingxi_batch_prompt_tokens", "Prompt tokens of requests that got a slot.",
                                     labels=["model"])
        reused = CounterMetricFamily("lingxi_batch_reused_prompt_tokens",
                                     "Prompt tokens taken from the prompt cache instead of prefilled.", labels=["model"])
        paused = CounterMetricFamily("lingxi_batch_preemptions", "Requests paused because the KV pool was full.",
                                     labels=["model"])
        evicted = CounterMetricFamily("lingxi_batch_cache_evictions",
                                      "Times the KV pool was full and idle slots' prompt caches were dropped.",
                                      labels=["model"])
        wait = HistogramMetricFamily("lingxi_batch_queue_seconds", "Wait for a batch slot inside the engine.",
                                     labels=["model"])
        for sched in live_schedulers():
            m = [sched.model]
            slots.add_metric(m, sched.n_slots)
            busy.add_metric(m, sched.busy)
            waiting.add_metric(m, sched.waiting)
            cells.add_metric([*m, "per_slot" if sched.backend.per_slot else "shared"], sched.backend.kv_cells)
            cached.add_metric(m, sched.cached_tokens)
            prompt.add_metric(m, sched.prompt_tokens)
            reused.add_metric(m, sched.reused_tokens)
            paused.add_metric(m, sched.preemptions)
            evicted.add_metric(m, sched.evictions)
            counts, total = list(sched.wait_counts), 0
            buckets = []
            for bound, n in zip([*map(str, WAIT_BUCKETS), "+Inf"], counts):
                total += n
                buckets.append((bound, total))
            wait.add_metric(m, buckets, sched.wait_sum)
        yield from (slots, busy, waiting, cells, cached, prompt, reused, paused, evicted, wait)


class _JsonLines(logging.Handler):
    """One JSON object per line on whatever ``sys.stderr`` is when the line is written."""

    def emit(self, record: logging.LogRecord) -> None:
        import orjson

        data: dict[str, Any] = getattr(record, "fields", None) or {"message": record.getMessage()}
        try:
            sys.stderr.write(orjson.dumps(data).decode() + "\n")
        except (OSError, ValueError):  # stderr closed: drop the line rather than fail the request
            pass


def setup_access_log(enabled: bool) -> None:
    """Send the access log (one JSON object per line) to stderr, once per process."""
    access_log.propagate = False
    if not enabled:
        access_log.disabled = True
        return
    access_log.disabled = False
    access_log.setLevel(logging.INFO)
    if not any(isinstance(h, _JsonLines) for h in access_log.handlers):
        access_log.addHandler(_JsonLines())
