"""The shape every riskpipe sink shares: buffer a bundle, write it idempotently, retry.

A concrete sink subclasses :class:`BatchingWriteFn` and implements three methods:
``open_client`` (called before the first write, and again after a retryable error),
``write_batch`` (one idempotent write of a list of elements) and ``close_client`` (called in
``teardown``). The client opens lazily, inside the retry loop, so a worker that starts while
the sink's server is down waits for it instead of failing (and restarting the job). This base buffers
elements, flushes when ``batch_size`` is reached and at the end of every bundle, and
retries a failed write ``MAX_ATTEMPTS`` times with exponential backoff on the sink's
``RETRYABLE_ERRORS``. When every attempt fails the error propagates, the runner retries
the bundle (from the last checkpoint on Flink): a dependency outage slows the pipeline
down, it never drops data. Because every write is an upsert on a natural key, a replayed
bundle changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import apache_beam as beam

from pipeline import metrics

logger = logging.getLogger(__name__)

__all__ = ["BatchingWriteFn"]

# Backoff between write attempts: 0.5 s, 1 s, 2 s, ... capped at 30 s. Eight attempts
# span about a minute, long enough to ride out a restart of a local database.
MAX_ATTEMPTS = 8
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class BatchingWriteFn(beam.DoFn):
    """Buffers elements and writes them in idempotent batches with bounded retries.

    Subclasses set ``SINK`` (a short name used in metric names and logs) and
    ``RETRYABLE_ERRORS`` (the exception types worth another attempt, e.g. a lost
    connection); any other exception fails the bundle at once.
    """

    SINK: ClassVar[str] = "sink"
    RETRYABLE_ERRORS: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, batch_size: int = 500):
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._buffer: list[Any] = []
        self._client: Any = None
        self.written = metrics.counter(f"{self.SINK}_rows_written")
        self.retries = metrics.counter(f"{self.SINK}_write_retries")
        # Write time as a sum and a count (average = rate(ms) / rate(writes)): Flink's
        # Prometheus reporter exports a Beam distribution as 0 (docs/flink-notes.md).
        self.write_ms = metrics.counter(f"{self.SINK}_write_ms_total")
        self.writes = metrics.counter(f"{self.SINK}_writes")
        self.last_latency_ms = metrics.gauge(f"{self.SINK}_last_write_latency_ms")

    # -- hooks for subclasses -------------------------------------------------------
    def open_client(self) -> Any:
        """Returns a client (connection, session) reused for the DoFn's lifetime."""
        raise NotImplementedError

    def write_batch(self, client: Any, batch: list[Any]) -> None:
        """Writes one batch idempotently; raises on failure."""
        raise NotImplementedError

    def close_client(self, client: Any) -> None:
        """Releases the client."""

    def reset_client(self, client: Any) -> Any:
        """Called after a retryable error: by default closes and reopens the client."""
        try:
            self.close_client(client)
        except Exception:  # the old client is broken anyway; reopening is what matters
            logger.debug("%s: closing a broken client failed", self.SINK, exc_info=True)
        return self.open_client()

    # -- DoFn lifecycle -------------------------------------------------------------
    def setup(self):
        self._client = None  # opened by the first write, under the retry loop

    def start_bundle(self):
        self._buffer = []
        self.written.inc(0)  # a series from the first bundle on, for dashboards
        self.retries.inc(0)

    def process(self, element):
        self._buffer.append(element)
        if len(self._buffer) >= self.batch_size:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def teardown(self):
        if self._client is not None:
            self.close_client(self._client)
            self._client = None

    # -- internals ------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        backoff = INITIAL_BACKOFF_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = time.monotonic()
            try:
                if self._client is None:
                    self._client = self.open_client()
                self.write_batch(self._client, batch)
            except self.RETRYABLE_ERRORS as error:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.warning(
                    "%s: write of %d rows failed (attempt %d/%d), retrying in %.1fs: %s",
                    self.SINK, len(batch), attempt, MAX_ATTEMPTS, backoff, error,
                )
                self.retries.inc()
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._client = self._reopen()
                continue
            elapsed_ms = int((time.monotonic() - started) * 1000)
            self.write_ms.inc(elapsed_ms)
            self.writes.inc()
            self.last_latency_ms.set(elapsed_ms)
            self.written.inc(len(batch))
            return

    def _reopen(self) -> Any:
        """Reopens the client; a failure here is left for the next attempt to meet."""
        if self._client is None:
            return None  # never opened: the next attempt opens it
        try:
            return self.reset_client(self._client)
        except self.RETRYABLE_ERRORS as error:
            logger.warning("%s: reconnect failed: %s", self.SINK, error)
            return None
