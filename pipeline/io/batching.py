"""The shape every riskpipe sink shares: buffer a bundle, write it idempotently, retry.

A concrete sink subclasses :class:`BatchingWriteFn` and implements three methods:
``open_client`` (called before the first write, and again after a retryable error),
``write_batch`` (one idempotent write of a list of elements) and ``close_client`` (called in
``teardown``). The client opens lazily, inside the retry loop, so a worker that starts while
the sink's server is down waits for it instead of failing (and restarting the job).

This base buffers elements and hands a batch to its writer thread when ``batch_size`` is
reached, when the oldest buffered element has waited ``max_wait_s``, or when no element has
come for ``quiet_s`` (a burst has ended) — the last two checked by a timer thread, so a quiet
stream's last rows do not wait for the next element or the bundle's end — so rows leave while
a long bundle still runs and the step goes on with the next elements while the database
works.
Batches are written one after another, in order (a later version of a row always lands
after the earlier one). ``finish_bundle`` writes what is left and waits for every batch of
the bundle: a bundle only completes, and a checkpoint only covers it, once its rows are
written. A failed write is retried ``MAX_ATTEMPTS`` times with exponential backoff on the
sink's ``RETRYABLE_ERRORS``; when every attempt fails the error fails the bundle, and the
runner retries it (from the last checkpoint on Flink): a dependency outage slows the
pipeline down, it never drops data. Because every write is an upsert on a natural key, a
replayed bundle changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, NamedTuple

import apache_beam as beam

from pipeline import metrics

logger = logging.getLogger(__name__)

__all__ = ["BatchingWriteFn"]

# Backoff between write attempts: 0.5 s, 1 s, 2 s, ... capped at 30 s. Eight attempts
# span about a minute, long enough to ride out a restart of a local database.
MAX_ATTEMPTS = 8
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# How long an element may wait in the buffer before its batch is written, bundle or not.
DEFAULT_MAX_WAIT_S = 0.1
# A batch also leaves once no element has come for this long: a burst of rows (a stateful
# step emits its output in bursts on Flink) is written when it ends, not max_wait_s after it
# began. A steady stream keeps the batch filling up to batch_size or max_wait_s.
DEFAULT_QUIET_S = 0.02


class _Written(NamedTuple):
    """What the writer thread reports of one batch (metrics are recorded on the bundle's
    thread: Beam attributes a metric to the thread's current step)."""

    rows: int
    elapsed_ms: int
    retries: int


class BatchingWriteFn(beam.DoFn):
    """Buffers elements and writes them in idempotent batches with bounded retries.

    Subclasses set ``SINK`` (a short name used in metric names and logs) and
    ``RETRYABLE_ERRORS`` (the exception types worth another attempt, e.g. a lost
    connection); any other exception fails the bundle at once.
    """

    SINK: ClassVar[str] = "sink"
    RETRYABLE_ERRORS: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, batch_size: int = 500, max_wait_s: float = DEFAULT_MAX_WAIT_S,
                 quiet_s: float = DEFAULT_QUIET_S):
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}")
        for name, value in (("max_wait_s", max_wait_s), ("quiet_s", quiet_s)):
            if not value > 0:
                raise ValueError(f"{type(self).__name__}: {name} must be > 0, got {value}")
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.quiet_s = quiet_s
        self._buffer: list[Any] = []
        self._oldest = 0.0  # when the buffer's first element came (monotonic seconds)
        self._newest = 0.0  # when its last one came
        self._pending: list[Future] = []
        self._writer: ThreadPoolExecutor | None = None
        # Guards _buffer, _oldest, _newest and _pending between the bundle's thread and the
        # ager.
        self._lock: threading.Condition | None = None
        self._ager: threading.Thread | None = None
        self._closing = False
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
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"riskpipe-{self.SINK}-writer")
        self._lock = threading.Condition()
        self._closing = False
        self._ager = threading.Thread(
            target=self._age_out, name=f"riskpipe-{self.SINK}-ager", daemon=True
        )
        self._ager.start()

    def start_bundle(self):
        with self._lock:
            self._buffer = []
            self._pending = []
        self.written.inc(0)  # a series from the first bundle on, for dashboards
        self.retries.inc(0)

    def process(self, element):
        with self._lock:
            self._newest = time.monotonic()
            if not self._buffer:
                self._oldest = self._newest
                self._lock.notify()  # the ager now has a deadline to keep
            self._buffer.append(element)
            full = len(self._buffer) >= self.batch_size
            if full:
                self._hand_over()
        if full:
            self._record_done()

    def finish_bundle(self):
        with self._lock:
            self._hand_over()
            pending, self._pending = self._pending, []
        failure = None
        for future in pending:  # every batch, even after a failure: none is left running
            try:
                self._record(future.result())
            except Exception as error:  # noqa: BLE001 - re-raised below, the first one
                failure = failure or error
        if failure is not None:
            raise failure

    def teardown(self):
        if self._ager is not None:
            with self._lock:
                self._closing = True
                self._lock.notify()
            self._ager.join()
            self._ager = None
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._client is not None:
            self.close_client(self._client)
            self._client = None

    # -- internals ------------------------------------------------------------------
    def _hand_over(self) -> None:
        """Hands the buffer to the writer thread (the caller holds the lock)."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._pending.append(self._writer.submit(self._write_with_retries, batch))

    def _record_done(self) -> None:
        """Records the batches already written, oldest first (on the bundle's thread)."""
        with self._lock:
            done = []
            while (self._pending and self._pending[0].done()
                   and not self._pending[0].exception()):
                done.append(self._pending.pop(0).result())
        for written in done:
            self._record(written)

    def _age_out(self) -> None:
        """The ager thread: hands the buffer over once its oldest element has waited
        ``max_wait_s`` or no element has come for ``quiet_s``, whether or not another
        element comes."""
        with self._lock:
            while not self._closing:
                if not self._buffer:
                    self._lock.wait()
                    continue
                due = min(self._oldest + self.max_wait_s, self._newest + self.quiet_s)
                left = due - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                else:
                    self._hand_over()

    def _record(self, written: _Written) -> None:
        self.write_ms.inc(written.elapsed_ms)
        self.writes.inc()
        self.last_latency_ms.set(written.elapsed_ms)
        self.written.inc(written.rows)
        if written.retries:
            self.retries.inc(written.retries)

    def _write_with_retries(self, batch: list[Any]) -> _Written:
        """Runs on the writer thread: writes one batch, retrying the sink's retryable errors."""
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
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._client = self._reopen()
                continue
            return _Written(len(batch), int((time.monotonic() - started) * 1000), attempt - 1)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _reopen(self) -> Any:
        """Reopens the client; a failure here is left for the next attempt to meet."""
        if self._client is None:
            return None  # never opened: the next attempt opens it
        try:
            return self.reset_client(self._client)
        except self.RETRYABLE_ERRORS as error:
            logger.warning("%s: reconnect failed: %s", self.SINK, error)
            return None
