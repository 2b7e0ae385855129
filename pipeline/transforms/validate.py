"""Fraud validation of `unidentified` transactions, batched, never dropping one.

Usage::

    routed = scored | "RouteByEvaluation" >> RouteByEvaluation()
    validated = routed.unidentified | "ValidateUnidentified" >> ValidateUnidentified(
        validator_url, api_key, batch_size=200, max_wait_s=1.0, timeout_s=5.0,
        lookup_factory=lookup_factory(dsn),
    )  # AttributedTransactions with is_fraudulent set and validated_by="validator"

How: each transaction is keyed by a stable shard (crc32 of its id modulo ``num_shards``)
and buffered in the state of :class:`_ValidateFn`. A batch goes to the validator when
the buffer reaches ``batch_size`` or ``max_wait_s`` after its first transaction
(a processing-time timer). While the validator is down (connection errors, timeouts,
5xx, circuit breaker open) the transactions stay in state and the timer is set again
with exponential backoff: they are validated when the service returns, never dropped
and never cleared by default.

End of input (the watermark passing the window's end: a bounded run, or a drain) fires an
event-time timer that flushes what is left. If the validator is still down then, it
retries for ``drain_timeout_s`` and then fails the bundle loudly with
:class:`~pipeline.io.validator_client.ValidatorUnavailable`: a bounded run never finishes
"successfully" with transactions that were not validated.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from pipeline.errors import LookupUnavailable
from pipeline.io.breaker import CircuitBreaker
from pipeline.io.validator_client import (
    ValidatorClient,
    ValidatorUnavailable,
    build_validation_request,
)
from pipeline.records import AttributedTransaction

__all__ = ["ValidateUnidentified", "shard_of"]

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 4
# Delay before the first retry while the validator is down; doubles per failed attempt.
INITIAL_BACKOFF_S = 0.5
# HTTP attempts inside one call (the client's own quick retries); the step retries the rest.
CLIENT_RETRIES = 2

LookupFactory = Callable[[], Any]


def shard_of(transaction_id: str, num_shards: int) -> int:
    """A shard that is the same in every process (unlike ``hash()``, salted per process).

    >>> shard_of("t-1", 4) == shard_of("t-1", 4)
    True
    """
    return zlib.crc32(transaction_id.encode("utf-8")) % num_shards


class ValidateUnidentified(beam.PTransform):
    """Asks the fraud validator about each transaction, in batches bounded by size and time.

    Args:
        validator_url: base URL of the validator, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` (None: no key).
        batch_size: transactions per call at most; a full buffer is sent at once.
        max_wait_s: how long a transaction waits for its batch to fill.
        timeout_s: connect and read timeout of one HTTP attempt.
        lookup_factory: optional picklable zero-argument callable returning an account
            lookup (``ids -> {id: Account}``, see ``pipeline.transforms.attribute``); with it the
            request carries the sender's and receiver's details.
        num_shards: keys the batches are spread over (parallelism of the step).
        max_backoff_s: cap of the delay between attempts while the validator is down.
        drain_timeout_s: how long the end-of-input flush keeps retrying before it fails.
        breaker_threshold, breaker_reset_s: the circuit breaker's failure threshold and
            how long it stays open.
    """

    def __init__(
        self,
        validator_url: str,
        api_key: str | None = None,
        batch_size: int = 200,
        max_wait_s: float = 1.0,
        timeout_s: float = 5.0,
        lookup_factory: LookupFactory | None = None,
        num_shards: int = DEFAULT_SHARDS,
        max_backoff_s: float = 30.0,
        drain_timeout_s: float = 300.0,
        breaker_threshold: int = 5,
        breaker_reset_s: float = 10.0,
    ):
        super().__init__()
        if not validator_url:
            raise ValueError("ValidateUnidentified: validator_url must not be empty")
        for name, value in (("batch_size", batch_size), ("num_shards", num_shards)):
            if value < 1:
                raise ValueError(f"ValidateUnidentified: {name} must be >= 1, got {value}")
        for name, value in (
            ("max_wait_s", max_wait_s),
            ("timeout_s", timeout_s),
            ("max_backoff_s", max_backoff_s),
            ("drain_timeout_s", drain_timeout_s),
        ):
            if value <= 0:
                raise ValueError(f"ValidateUnidentified: {name} must be > 0, got {value}")
        self.num_shards = num_shards
        self.fn = _ValidateFn(
            validator_url=validator_url,
            api_key=api_key,
            batch_size=batch_size,
            max_wait_s=max_wait_s,
            timeout_s=timeout_s,
            lookup_factory=lookup_factory,
            max_backoff_s=max_backoff_s,
            drain_timeout_s=drain_timeout_s,
            breaker_threshold=breaker_threshold,
            breaker_reset_s=breaker_reset_s,
        )

    def expand(self, unidentified):
        shards = self.num_shards
        return (
            unidentified
            | "KeyByShard"
            >> beam.Map(lambda r: (shard_of(r.transaction_id, shards), r)).with_output_types(
                tuple[int, AttributedTransaction]
            )
            | "CallValidator" >> beam.ParDo(self.fn).with_output_types(AttributedTransaction)
        )


class _ValidateFn(beam.DoFn):
    """Buffers ``(shard, AttributedTransaction)`` per shard and validates them in batches.

    State and timers, per shard key (and window):

    - ``BUFFER``: bag of ``(timestamp_micros, AttributedTransaction)`` waiting for a verdict.
    - ``COUNT``: how many are in ``BUFFER`` (read without reading the bag).
    - ``FAILURES``: consecutive failed calls; sets the backoff, 0 when the last call worked.
    - ``FLUSH``: processing-time timer: ``max_wait_s`` after the first buffered element, or
      the next retry while the validator is down.
    - ``END``: event-time timer at the window's end: flushes what is left at end of input.
    """

    BUFFER = BagStateSpec("buffer", PickleCoder())
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
    FAILURES = ReadModifyWriteStateSpec("failures", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(
        self,
        validator_url,
        api_key,
        batch_size,
        max_wait_s,
        timeout_s,
        lookup_factory,
        max_backoff_s,
        drain_timeout_s,
        breaker_threshold,
        breaker_reset_s,
    ):
        self.validator_url = validator_url
        self.api_key = api_key
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.lookup_factory = lookup_factory
        self.max_backoff_s = max_backoff_s
        self.drain_timeout_s = drain_timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.client: ValidatorClient | None = None
        self.lookup = None
        self.calls = Metrics.counter("riskpipe", "validator_calls")
        self.failures = Metrics.counter("riskpipe", "validator_failures")
        self.retries = Metrics.counter("riskpipe", "validator_retries")
        self.fraudulent = Metrics.counter("riskpipe", "validated_fraudulent")
        self.clean = Metrics.counter("riskpipe", "validated_clean")
        self.waiting = Metrics.gauge("riskpipe", "validator_waiting")

    def setup(self):
        breaker = CircuitBreaker(self.breaker_threshold, self.breaker_reset_s)
        self.client = ValidatorClient(
            self.validator_url,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            max_retries=CLIENT_RETRIES,
            breaker=breaker,
            max_batch_size=self.batch_size,
        )
        self.lookup = self.lookup_factory() if self.lookup_factory is not None else None

    def start_bundle(self):
        # Report every counter from the first bundle on (at 0), so dashboards and
        # alerts see a zero instead of no series before the first event.
        for counter in (self.calls, self.failures, self.retries, self.fraudulent, self.clean):
            counter.inc(0)

    def teardown(self):
        if self.client is not None:
            self.client.close()
        close = getattr(self.lookup, "close", None)
        if close is not None:
            close()

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        failures=beam.DoFn.StateParam(FAILURES),
        flush=beam.DoFn.TimerParam(FLUSH),
        end=beam.DoFn.TimerParam(END),
    ):
        _, record = element
        buffer.add((timestamp.micros, record))
        size = (count.read() or 0) + 1
        count.write(size)
        self.waiting.set(size)
        if size == 1:
            flush.set(Timestamp.now() + self.max_wait_s)
            end.set(window.max_timestamp())
        # While the validator is down the FLUSH timer paces the retries, not new arrivals.
        if size >= self.batch_size and not failures.read():
            yield from self._flush(buffer, count, failures, flush)

    @on_timer(FLUSH)
    def on_flush(
        self,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        failures=beam.DoFn.StateParam(FAILURES),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        yield from self._flush(buffer, count, failures, flush)

    @on_timer(END)
    def on_end(
        self,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        failures=beam.DoFn.StateParam(FAILURES),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        """End of input: retry until the validator answers or drain_timeout_s, then fail."""
        deadline = time.monotonic() + self.drain_timeout_s
        while count.read():
            yield from self._flush(buffer, count, failures, flush, rearm=False)
            if not count.read():
                break
            if time.monotonic() > deadline:
                raise ValidatorUnavailable(
                    f"ValidateUnidentified: the validator at {self.validator_url} was still "
                    f"unavailable {self.drain_timeout_s:.0f}s after the end of input; "
                    f"{count.read()} transactions are not validated. Failing instead of "
                    "dropping or clearing them; rerun when the validator is back."
                )
            time.sleep(self._backoff(failures.read() or 1))
        flush.clear()

    def _flush(self, buffer, count, failures, flush, rearm=True):
        """Validates the whole buffer in batches; keeps what the validator did not answer."""
        pending = sorted(buffer.read(), key=lambda item: item[0])
        if not pending:
            return
        if failures.read():
            self.retries.inc()
        done = 0
        try:
            for start in range(0, len(pending), self.batch_size):
                chunk = pending[start : start + self.batch_size]
                verdicts = self._call([record for _, record in chunk])
                for (micros, record), verdict in zip(chunk, verdicts):
                    (self.fraudulent if verdict else self.clean).inc()
                    validated = dataclasses.replace(
                        record, is_fraudulent=verdict, validated_by="validator"
                    )
                    yield TimestampedValue(validated, Timestamp(micros=micros))
                done += len(chunk)
        except ValidatorUnavailable as error:
            attempt = (failures.read() or 0) + 1
            failures.write(attempt)
            delay = self._backoff(attempt)
            logger.warning(
                "validator unavailable (attempt %d); %d transactions wait, next try in %.1fs: %s",
                attempt,
                len(pending) - done,
                delay,
                error,
            )
            if rearm:
                flush.set(Timestamp.now() + delay)
        else:
            failures.clear()
        buffer.clear()
        for item in pending[done:]:
            buffer.add(item)
        count.write(len(pending) - done)
        self.waiting.set(len(pending) - done)

    def _call(self, records: list[AttributedTransaction]) -> list[bool]:
        """One validator call; raises ValidatorUnavailable (or CircuitOpen) on failure."""
        accounts = self._accounts(records)
        requests = [
            build_validation_request(
                record,
                receiver=accounts.get(record.transaction.counterparty_account_id),
                sender=accounts.get(record.account_id),
            )
            for record in records
        ]
        self.calls.inc()
        try:
            results = self.client.validate_batch(requests)
        except ValidatorUnavailable:
            self.failures.inc()
            raise
        return [result.is_fraudulent for result in results]

    def _accounts(self, records: list[AttributedTransaction]) -> dict:
        """Sender and receiver accounts by id, when a lookup is configured and reachable."""
        if self.lookup is None:
            return {}
        ids = {r.account_id for r in records}
        ids.update(r.transaction.counterparty_account_id for r in records)
        ids.discard(None)
        try:
            return self.lookup(sorted(ids))
        except LookupUnavailable as error:
            logger.warning("account lookup unavailable, validating without details: %s", error)
            return {}

    def _backoff(self, attempt: int) -> float:
        """Delay before the next attempt: exponential, capped, never before the breaker opens."""
        delay = min(self.max_backoff_s, INITIAL_BACKOFF_S * 2 ** (attempt - 1))
        return max(delay, self.client.breaker.retry_after_s())
