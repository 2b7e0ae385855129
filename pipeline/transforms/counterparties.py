"""The counterparty step: the receiver's side of the features, in one DoFn per counterparty.

Usage::

    profiled = (
        attributed  # PCollection[AttributedTransaction], from AttributeTransactions
        | "ProfileCounterparties" >> ProfileCounterparties()
    )  # the same rows, their features extended by COUNTERPARTY_FEATURES

Rows with a counterparty are keyed by ``counterparty_account_id`` and go through one stateful
step whose logic is the pure :class:`~pipeline.domain.counterparty.CounterpartyHistory`: each
row leaves at once with the features of the counterparty's *earlier* inflows (event time)
known so far, and the rows after an earlier inflow that arrived late are corrected when the
SETTLE timer fires (once per watermark step, however many arrived late), so a transaction's
final row does not depend on the order a run read its inputs in. The account step's own
corrections replace the row logged for their transaction. Rows without a counterparty skip the
shuffle and get :data:`~pipeline.domain.counterparty.NO_COUNTERPARTY_VECTOR`.

State is one compact value per counterparty (tuples of primitives, weighed by an estimate in
Beam's state cache); an event-time GC timer drops it after ``idle`` without inflows (when
a runner fires both at once and GC first, GC waits for SETTLE: the corrections leave at
SETTLE's timestamp, not ``idle`` ahead at GC's), moved only
when its deadline has moved by ``GC_SLACK`` (:func:`~pipeline.transforms.attribute.keep_alive`;
no timer per element). A second event-time timer, SETTLE, tells the history when the
watermark has moved past its unsettled inflows: it emits the corrections that waited for it,
and until the watermark passes them the inflows stay in the log, so an earlier inflow still to
be read from another partition is placed exactly (:mod:`pipeline.domain.counterparty`). It is
set only when none is set, at the newest unsettled inflow, so one firing settles a batch; not
per element. The corrections leave at the timer's timestamp, at or after their transaction's
own.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.coders import Coder, FastPrimitivesCoder
from apache_beam.runners.worker.statecache import CacheAware
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV, Any, Tuple
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline.domain.counterparty import NO_COUNTERPARTY_VECTOR, CounterpartyHistory
from pipeline.metrics import Counters
from pipeline.records import AttributedTransaction
from pipeline.transforms.attribute import (
    DEFAULT_ACCOUNT_IDLE,
    _seconds,
    arm_settle,
    keep_alive,
    settle_fired,
)

__all__ = ["CounterpartyHistoryCoder", "ProfileCounterparties", "ProfileCounterpartiesFn"]

WITH, WITHOUT = "with_counterparty", "without_counterparty"


class _History(CounterpartyHistory, CacheAware):
    """A CounterpartyHistory that Beam's state cache weighs by an estimate, not by walking it."""

    __slots__ = ("gc_at", "settle_at")

    def __init__(self) -> None:
        super().__init__()
        self.gc_at = 0  # where the GC timer is set (µs)
        self.settle_at = 0  # where the SETTLE timer is set (µs; 0: not set)

    def get_referents_for_cache(self) -> list:
        return []

    def __sizeof__(self) -> int:
        return 2048 + 1200 * len(self.log) + 4096 * len(self._marks)


class CounterpartyHistoryCoder(Coder):
    """Encodes a counterparty history as nested tuples of primitives (no pickling)."""

    _TUPLES = FastPrimitivesCoder()

    def encode(self, history: _History) -> bytes:
        return self._TUPLES.encode((history.to_tuple(), history.gc_at, history.settle_at))

    def decode(self, encoded: bytes) -> _History:
        values, gc_at, settle_at = self._TUPLES.decode(encoded)
        restored = CounterpartyHistory.from_tuple(values)
        history = _History()
        history.base, history.log, history.late = restored.base, restored.log, restored.late
        history.settled, history.stale = restored.settled, restored.stale
        history.gc_at, history.settle_at = gc_at, settle_at
        return history

    def is_deterministic(self) -> bool:
        return True


class ProfileCounterpartiesFn(beam.DoFn):
    """Adds the counterparty features to the rows of one counterparty (module docstring).

    Input: ``(counterparty_account_id, AttributedTransaction.to_tuple())``, timestamped with
    the Kafka timestamp. Output: :class:`AttributedTransaction` with ``COUNTERPARTY_FEATURES``
    appended to its features.

    State and timers (per counterparty_account_id):
      HISTORY: the counterparty's :class:`CounterpartyHistory` and where GC is set.
      GC: event-time timer after ``idle`` without inflows; it drops the state, or, while
        SETTLE is still due, sets itself again just after it.
      SETTLE: event-time timer at the production time of the newest unsettled inflow when set;
        emits the corrections of the rows after an inflow that arrived late.
    """

    HISTORY = ReadModifyWriteStateSpec("history", CounterpartyHistoryCoder())
    # Named apart from the account step's "gc" and "settle": the FnApiRunner delivers a
    # bundle's timers by name, not by step (docs/flink-notes.md, "Timers on the FnApiRunner").
    GC = TimerSpec("counterparty-gc", TimeDomain.WATERMARK)
    SETTLE = TimerSpec("counterparty-settle", TimeDomain.WATERMARK)

    def __init__(self, idle: Duration):
        self._idle = idle
        self._counters = Counters(
            "counterparty_rows", "counterparty_corrected", "counterparty_late_beyond_log",
            "counterparties_evicted",
        )

    def start_bundle(self):
        self._counters.report_zero()

    def process(
        self,
        element: tuple[str, tuple],
        timestamp=beam.DoFn.TimestampParam,
        history_state=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        _, values = element
        history = history_state.read() or _History()
        late = history.late
        rows = history.add(AttributedTransaction.from_tuple(values), timestamp.micros)
        arm_settle(history, settle)
        self._counters.inc("counterparty_rows")
        if len(rows) > 1:
            self._counters.inc("counterparty_corrected", len(rows) - 1)
        if history.late > late:
            self._counters.inc("counterparty_late_beyond_log", history.late - late)
        keep_alive(history, timestamp.micros + self._idle.micros, gc)
        history_state.write(history)
        yield from rows

    @on_timer(SETTLE)
    def _on_settle(
        self,
        fired=beam.DoFn.TimestampParam,
        history_state=beam.DoFn.StateParam(HISTORY),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        # At the timer's timestamp: never behind the watermark.
        yield from self._corrected(settle_fired(history_state, fired, settle))

    @on_timer(GC)
    def _on_gc(
        self,
        fired=beam.DoFn.TimestampParam,
        history_state=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        history = history_state.read()
        if history is None:
            return
        if history.settle_at:
            # A runner may fire both timers of a key at once (a bounded run's watermark jumps
            # to the end), GC first. The corrections waiting for SETTLE leave with it, at its
            # earlier timestamp: emitted here they would carry GC's, ``idle`` ahead, and hold
            # downstream processing-time timers until then. SETTLE is due (it is earlier; set
            # again, should it be lost), so GC comes back just after it.
            settle.set(Timestamp(micros=history.settle_at))
            history.gc_at = fired.micros + 1
            gc.set(Timestamp(micros=history.gc_at))
            history_state.write(history)
            return
        self._counters.inc("counterparties_evicted")
        history_state.clear()

    def _corrected(self, rows: list) -> list:
        if rows:
            self._counters.inc("counterparty_corrected", len(rows))
        return rows


def _route(row: AttributedTransaction, _partitions: int) -> int:
    return 0 if row.transaction.counterparty_account_id is not None else 1


def _key(row: AttributedTransaction) -> tuple[str, tuple]:
    """Keyed by counterparty, as a tuple of primitives: the shuffle encodes it unpickled."""
    return row.transaction.counterparty_account_id, row.to_tuple()


def _no_counterparty(row: AttributedTransaction) -> AttributedTransaction:
    return dataclasses.replace(row, features=row.features + NO_COUNTERPARTY_VECTOR)


class ProfileCounterparties(beam.PTransform):
    """AttributedTransactions → the same rows with the counterparty features appended.

    Args:
      idle: how long (event time) without inflows before a counterparty's state is dropped.
    """

    def __init__(self, idle=DEFAULT_ACCOUNT_IDLE):
        super().__init__()
        self._idle = Duration.of(_seconds(idle, "idle"))

    def expand(self, rows):
        with_cp, without_cp = rows | "SplitByCounterparty" >> beam.Partition(_route, 2)
        profiled = (
            with_cp
            | "KeyByCounterparty" >> beam.Map(_key).with_output_types(KV[str, Tuple[Any, ...]])
            | "Profile" >> beam.ParDo(ProfileCounterpartiesFn(self._idle))
            .with_output_types(AttributedTransaction)
        )
        passed = without_cp | "NoCounterparty" >> beam.Map(_no_counterparty).with_output_types(
            AttributedTransaction
        )
        return (profiled, passed) | "Merge" >> beam.Flatten()
