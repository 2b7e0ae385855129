"""Prometheus metrics of the validator and the ASGI middleware that records them.

Each app gets its own registry, so several apps (tests) can live in one process. With
``--workers N`` every worker process keeps its own counters; scrape one worker per port
or run one worker per instance (what the pipeline's stack does).

Exported (all prefixed ``riskpipe_validator_``):

- ``requests_total{endpoint, outcome}``: outcome is ok, invalid (422), unauthorized (401),
  too_large (413), client_error (other 4xx) or error (5xx);
- ``validations_total{verdict}``: fraudulent or legitimate, one per transaction;
- ``request_duration_seconds{endpoint}``: latency histogram;
- ``batch_size``: transactions per /validate/batch request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["MetricsMiddleware", "ValidatorMetrics"]

_OUTCOMES = {401: "unauthorized", 413: "too_large", 422: "invalid"}
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000)


def outcome_of(status: int) -> str:
    """Maps an HTTP status to the ``outcome`` label."""
    if status < 400:
        return "ok"
    if status in _OUTCOMES:
        return _OUTCOMES[status]
    return "client_error" if status < 500 else "error"


class ValidatorMetrics:
    """The metric objects of one app, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "riskpipe_validator_requests",
            "HTTP requests by endpoint and outcome.",
            ("endpoint", "outcome"),
            registry=self.registry,
        )
        self.validations = Counter(
            "riskpipe_validator_validations",
            "Transactions validated, by verdict.",
            ("verdict",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "riskpipe_validator_request_duration_seconds",
            "Request latency by endpoint.",
            ("endpoint",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "riskpipe_validator_batch_size",
            "Transactions per /validate/batch request.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._verdicts = {
            True: self.validations.labels("fraudulent"),
            False: self.validations.labels("legitimate"),
        }

    def count_verdicts(self, fraudulent: int, total: int) -> None:
        """Adds one batch's verdicts (two increments, however large the batch)."""
        if fraudulent:
            self._verdicts[True].inc(fraudulent)
        if total - fraudulent:
            self._verdicts[False].inc(total - fraudulent)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and counts it by endpoint/outcome.

    Only the paths in ``endpoints`` are measured (others would make label values
    unbounded); the label is the path itself.
    """

    def __init__(self, app: Any, metrics: ValidatorMetrics, endpoints: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in self.endpoints:
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            self.metrics.requests.labels(path, outcome_of(status)).inc()
