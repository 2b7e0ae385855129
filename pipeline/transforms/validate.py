"""Fraud validation of `unidentified` transactions, batched, never dropping one.

Usage::

    routed = scored | "RouteByEvaluation" >> RouteByEvaluation()
    validated = routed.unidentified | "ValidateUnidentified" >> ValidateUnidentified(
        validator_url, api_key, batch_size=200, timeout_s=5.0,
        lookup_factory=lookup_factory(dsn),
    )
    validated.records        # AttributedTransactions with their verdict
    validated.dead_letters   # DeadLetters of transactions the validator refused to judge

The decision: ``is_fraudulent`` is the validator's verdict, or the fraud model's alert when a
model scored the row (``ScoreWithModel`` sets ``is_fraudulent`` on alerts before routing):
either one makes an ``unidentified`` transaction fraudulent. The validator receives the
row's ``risk_score`` (with a model: its probability on the 0-100 scale) among its inputs.

How: each transaction is keyed by a stable shard (crc32 of its id modulo :data:`NUM_SHARDS`),
and a bundle's transactions of one shard travel together (:class:`_GroupByShardFn`), handed on
when the bundle ends. :class:`_ValidateFn` calls the validator as soon as such a group
arrives, in calls of at most ``batch_size``: no timer between a transaction and its call. On
Flink that saves the validating stage a wait for a processing-time timer and then for the
bundle that delivers its firing (docs/flink-notes.md, "The validator's detour"). Each call is
one HTTP attempt; there is one retry mechanism, this one:

- the validator is *unavailable* (no answer, timeout, 5xx, 408, 429, a garbled answer): the
  transactions stay in state and a processing-time timer fires after a capped exponential
  backoff (:func:`pipeline.domain.validation.retry_delay_s`, 0.5 s doubling up to 30 s). They
  are validated when the service returns; never dropped, never cleared by default. Groups
  that arrive meanwhile wait behind them in the same state, so a shard's transactions are
  decided in the order they arrived.
- the validator *rejects* the request (any other 4xx): the transactions are decided by the
  policy of :mod:`pipeline.domain.validation`: ``is_fraudulent=False`` (unless the fraud
  model alerted), ``validated_by="none"``, a ``"review: validator rejected the request (HTTP
  …: …)"`` reason,
  a dead letter with the validator's message, and the counter ``validator_rejected``. A 401
  or 403 refuses the caller, so the whole batch is decided at once; any other rejection
  (422 invalid, 413 too large, 400) may come from one transaction, so the batch is sent again
  once, one transaction per request, and only the refused ones are decided by the policy.

A transaction whose row the join corrects (an account version read after it) is buffered
again; only its newest version (by ``processed_at``) is validated and emitted, never a stale
version after the correction (:func:`newest_versions`): the Kafka results keep the last
record written.

End of input (the watermark passing the window's end: a bounded run, or a drain) fires an
event-time timer. Neither runner waits for a processing-time timer then: the FnApiRunner ends
its loop when nothing is ready and fails with "time-pending bundles did not execute", and
Flink fires pending processing-time timers at once when the operator closes and fails if any
remain (docs/flink-notes.md). So
the end-of-input timer makes the last attempt itself: at once, or, when a retry is already
scheduled, at that retry's time (a wait of at most :data:`END_WAIT_CAP_S`). If the validator
still does not answer, it raises :class:`~pipeline.io.validator_client.ValidatorUnavailable`
naming the step, the count and the cause: a bounded run never finishes "successfully" with
transactions that were not validated.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import FastPrimitivesCoder, TupleCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.typehints import KV, Any, Tuple
from apache_beam.utils.timestamp import Timestamp

from pipeline import metrics
from pipeline.domain.validation import (
    MAX_BACKOFF_S,
    decide_rejected,
    rejection_dead_letter,
    retry_delay_s,
)
from pipeline.errors import LookupUnavailable
from pipeline.io.validator_client import (
    ValidatorClient,
    ValidatorRejected,
    ValidatorUnavailable,
    build_validation_request,
)
from pipeline.records import AttributedTransaction, DeadLetter
from pipeline.transforms.grouping import PerKeyOfBundle

__all__ = ["DEAD_LETTERS", "NUM_SHARDS", "ValidateUnidentified", "newest_versions", "shard_of"]

logger = logging.getLogger(__name__)

DEAD_LETTERS = "dead_letters"
RECORDS = "records"
# Keys the batches are spread over: the parallelism of the step.
NUM_SHARDS = 4
# The longest the end-of-input attempt waits for a retry that is already scheduled.
END_WAIT_CAP_S = MAX_BACKOFF_S
# The step's name in dead letters (main.py applies it under this label).
STEP = "ValidateUnidentified"

LookupFactory = Callable[[], Any]
# A buffered transaction: (event timestamp in micros, the transaction).
Pending = tuple[int, AttributedTransaction]


def shard_of(transaction_id: str, num_shards: int = NUM_SHARDS) -> int:
    """A shard that is the same in every process (unlike ``hash()``, salted per process).

    >>> shard_of("t-1", 4) == shard_of("t-1", 4)
    True
    """
    return zlib.crc32(transaction_id.encode("utf-8")) % num_shards


def newest_versions(pending: Iterable[Pending]) -> list[Pending]:
    """The newest version of each buffered transaction, by timestamp (then id).

    The join emits a transaction again when it corrects the row, with the timestamp of the
    input that caused the correction (an account version produced before the transaction),
    so the correction may sort before the row it replaces. The version with the latest
    ``processed_at`` wins (of equal ones, the one buffered last); the others need no verdict.

    >>> from datetime import datetime, UTC
    >>> from pipeline.records import Transaction
    >>> t = Transaction("t1", "a1", None, "payment", 5.0, "EUR", "completed",
    ...                 datetime(2026, 1, 1, tzinfo=UTC), None, "unidentified")
    >>> first = AttributedTransaction(t, "Ann", 25, processed_at=datetime(2026, 1, 1, 9, tzinfo=UTC))
    >>> fixed = AttributedTransaction(t, "Ann", 0, processed_at=datetime(2026, 1, 1, 10, tzinfo=UTC))
    >>> [record.risk_score for _, record in newest_versions([(20, first), (10, fixed)])]
    [0]
    """
    newest: dict[str, Pending] = {}
    for item in pending:
        kept = newest.get(item[1].transaction_id)
        if kept is None or not item[1].version < kept[1].version:
            newest[item[1].transaction_id] = item
    return sorted(newest.values(), key=lambda item: (item[0], item[1].transaction_id))


class ValidateUnidentified(beam.PTransform):
    """Asks the fraud validator about each transaction, a bundle's transactions per shard at
    once, in batches bounded by size.

    Returns a DoOutputsTuple: ``records`` (AttributedTransaction) and ``dead_letters``
    (DeadLetter).

    Args:
        validator_url: base URL of the validator, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` (None: no key).
        batch_size: transactions per call at most.
        timeout_s: connect and read timeout of one HTTP attempt.
        lookup_factory: optional picklable zero-argument callable returning an account
            lookup (``ids -> {id: Account}``, see ``pipeline.transforms.attribute``); with it the
            request carries the sender's and receiver's details.
    """

    def __init__(
        self,
        validator_url: str,
        api_key: str | None = None,
        batch_size: int = 200,
        timeout_s: float = 5.0,
        lookup_factory: LookupFactory | None = None,
    ):
        super().__init__()
        if not validator_url:
            raise ValueError("ValidateUnidentified: validator_url must not be empty")
        if batch_size < 1:
            raise ValueError(f"ValidateUnidentified: batch_size must be >= 1, got {batch_size}")
        if timeout_s <= 0:
            raise ValueError(f"ValidateUnidentified: timeout_s must be > 0, got {timeout_s}")
        self.fn = _ValidateFn(validator_url, api_key, batch_size, timeout_s, lookup_factory)

    def expand(self, unidentified):
        return (
            unidentified
            | "GroupByShard"
            >> beam.ParDo(_GroupByShardFn()).with_output_types(KV[int, Tuple[Any, ...]])
            | "CallValidator"
            >> beam.ParDo(self.fn)
            .with_output_types(AttributedTransaction, **{DEAD_LETTERS: DeadLetter})
            .with_outputs(DEAD_LETTERS, main=RECORDS)
        )


class _GroupByShardFn(PerKeyOfBundle):
    """A bundle's rows per shard, handed on together at the bundle's end:
    ``(shard, ((timestamp_micros, row.to_tuple()), ...))``, in the order they came, timestamped
    with the earliest of them (:mod:`pipeline.transforms.grouping`).

    The validating step then calls the validator once per group as it arrives, instead of
    buffering rows one by one until a timer says the batch has waited long enough. The rows
    leave the deciding stage at its bundle's end, as the counterparty step's do
    (:class:`pipeline.transforms.counterparties._KeyAndGroupFn`).
    """

    def key(self, row: AttributedTransaction):
        return shard_of(row.transaction_id)


class _ValidateFn(beam.DoFn):
    """Validates a shard's groups of transactions (:class:`_GroupByShardFn`) as they arrive.

    State and timers, per shard key (and window):

    - ``BUFFER``: bag of ``(timestamp_micros, AttributedTransaction)`` waiting for a verdict:
      a group while it is decided, and what the validator did not answer until a retry does.
      FastPrimitivesCoder pickles the dataclass (a few hundred bytes per transaction).
    - ``COUNT``: how many are in ``BUFFER`` (read without reading the bag).
    - ``RETRY``: ``(consecutive failures, micros by which every runner has fired the scheduled
      retry)`` while the validator is unavailable; cleared when a call works.
    - ``FLUSH``: processing-time timer: the next retry while the validator is unavailable.
      (State saved by an earlier version may have it set ``max_wait_s`` after a buffered
      transaction: it fires and validates the buffer as a retry would.)
    - ``END``: event-time timer at the window's end: the last attempt at end of input.
    """

    BUFFER = BagStateSpec("buffer", TupleCoder((VarIntCoder(), FastPrimitivesCoder())))
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
    RETRY = ReadModifyWriteStateSpec("retry", TupleCoder((VarIntCoder(), VarIntCoder())))
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(self, validator_url, api_key, batch_size, timeout_s, lookup_factory):
        self.validator_url = validator_url
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.lookup_factory = lookup_factory
        self.client: ValidatorClient | None = None
        self.lookup = None
        self.counters = metrics.Counters(
            "validator_calls",
            "validator_failures",
            "validator_retries",
            "validator_rejected",
            "validated_fraudulent",
            "validated_clean",
        )
        self.waiting = metrics.gauge("validator_waiting")

    def setup(self):
        self.client = ValidatorClient(
            self.validator_url,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            max_batch_size=self.batch_size,
        )
        self.lookup = self.lookup_factory() if self.lookup_factory is not None else None

    def start_bundle(self):
        self.counters.report_zero()

    def finish_bundle(self):
        self.counters.flush()

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
        retry=beam.DoFn.StateParam(RETRY),
        flush=beam.DoFn.TimerParam(FLUSH),
        end=beam.DoFn.TimerParam(END),
    ):
        _, group = element
        size = count.read() or 0
        if not size:
            end.set(window.max_timestamp())
        for micros, values in group:
            buffer.add((micros, AttributedTransaction.from_tuple(values)))
        size += len(group)
        count.write(size)
        self.waiting.set(size)
        # While the validator is unavailable the FLUSH timer paces the retries, not arrivals:
        # the group waits behind the transactions already waiting, and is decided with them.
        if not retry.read():
            yield from self._flush(buffer, count, retry, flush, timestamp)

    @on_timer(FLUSH)
    def on_flush(
        self,
        timestamp=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        retry=beam.DoFn.StateParam(RETRY),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        yield from self._flush(buffer, count, retry, flush, timestamp)

    @on_timer(END)
    def on_end(
        self,
        timestamp=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        count=beam.DoFn.StateParam(COUNT),
        retry=beam.DoFn.StateParam(RETRY),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        """End of input: the last attempt, no earlier than a retry already scheduled."""
        scheduled = retry.read()
        if scheduled and count.read():
            wait_s = (scheduled[1] - Timestamp.now().micros) / 1e6
            time.sleep(min(max(wait_s, 0.0), END_WAIT_CAP_S))
        yield from self._flush(buffer, count, retry, flush, timestamp, final=True)

    def _flush(self, buffer, count, retry, flush, timestamp, final=False):
        """Decides the whole buffer in batches; keeps what the validator did not answer."""
        pending = newest_versions(buffer.read())
        if not pending:
            retry.clear()
            return
        scheduled = retry.read()
        if scheduled:
            self.counters.inc("validator_retries")
        outputs, waiting, error = self._decide_all(pending)
        if error is not None and final:
            raise ValidatorUnavailable(
                f"{STEP}: end of input with {len(waiting)} transactions not validated: the "
                f"validator at {self.validator_url} did not answer ({error}). Failing the run "
                "instead of finishing without them; rerun when the validator is back."
            )
        yield from outputs
        buffer.clear()
        for item in waiting:
            buffer.add(item)
        count.write(len(waiting))
        self.waiting.set(len(waiting))
        if error is None:
            retry.clear()
            return
        attempt = (scheduled[0] if scheduled else 0) + 1
        due = Timestamp.now() + retry_delay_s(attempt)
        flush.set(due)
        # The FnApiRunner also holds a processing-time timer until the timestamp of the input
        # that set it (a timer's, or an element's): on_end waits for the later of the two.
        retry.write((attempt, max(due.micros, timestamp.micros)))
        logger.warning(
            "%s: validator unavailable (attempt %d); %d transactions wait, next try in %.1fs: %s",
            STEP,
            attempt,
            len(waiting),
            retry_delay_s(attempt),
            error,
        )

    def _decide_all(self, pending: list[Pending]):
        """``(outputs, still waiting, error)``: batch after batch until the validator fails."""
        outputs: list = []
        for start in range(0, len(pending), self.batch_size):
            decided, rest, error = self._decide(pending[start : start + self.batch_size])
            outputs.extend(decided)
            if error is not None:
                return outputs, rest + pending[start + self.batch_size :], error
        return outputs, [], None

    def _decide(self, items: list[Pending]):
        """``(outputs, still waiting, error)`` for one batch: verdicts, or the rejection policy
        (split once into single requests unless the caller itself was refused), or nothing
        decided and the ValidatorUnavailable that stopped it."""
        try:
            verdicts = self._call([record for _, record in items])
        except ValidatorRejected as rejection:
            if rejection.rejects_the_caller or len(items) == 1:
                return self._rejected(items, rejection), [], None
            logger.warning(
                "%s: %s for a batch of %d; sending them one by one",
                STEP,
                rejection,
                len(items),
            )
            return self._decide_one_by_one(items)
        except ValidatorUnavailable as error:
            return [], items, error
        return self._validated(items, verdicts), [], None

    def _decide_one_by_one(self, items: list[Pending]):
        outputs: list = []
        for index, item in enumerate(items):
            try:
                verdicts = self._call([item[1]])
            except ValidatorRejected as rejection:
                outputs.extend(self._rejected([item], rejection))
            except ValidatorUnavailable as error:
                return outputs, items[index:], error
            else:
                outputs.extend(self._validated([item], verdicts))
        return outputs, [], None

    def _validated(self, items: list[Pending], verdicts: list[bool]) -> list:
        outputs = []
        for (micros, record), verdict in zip(items, verdicts):
            self.counters.inc("validated_fraudulent" if verdict else "validated_clean")
            # The fraud model's alert (is_fraudulent already set) stands beside the verdict.
            validated = dataclasses.replace(
                record, is_fraudulent=verdict or record.is_fraudulent, validated_by="validator"
            )
            outputs.append(TimestampedValue(validated, Timestamp(micros=micros)))
        return outputs

    def _rejected(self, items: list[Pending], rejection: ValidatorRejected) -> list:
        reason = str(rejection)
        logger.warning("%s: %s; %d transactions go to review", STEP, reason, len(items))
        self.counters.inc("validator_rejected", len(items))
        outputs = []
        for micros, record in items:
            at = Timestamp(micros=micros)
            outputs.append(TimestampedValue(decide_rejected(record, reason), at))
            letter = rejection_dead_letter(record, reason, STEP)
            outputs.append(pvalue.TaggedOutput(DEAD_LETTERS, TimestampedValue(letter, at)))
        return outputs

    def _call(self, records: list[AttributedTransaction]) -> list[bool]:
        """One validator call; raises ValidatorUnavailable or ValidatorRejected."""
        accounts = self._accounts(records)
        requests = [
            build_validation_request(
                record,
                receiver=accounts.get(record.transaction.counterparty_account_id),
                sender=accounts.get(record.account_id),
            )
            for record in records
        ]
        self.counters.inc("validator_calls")
        try:
            results = self.client.validate_batch(requests)
        except ValidatorUnavailable:
            self.counters.inc("validator_failures")
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
