"""The counterparty step: the receiver's side of the features, in one DoFn per counterparty.

Usage::

    profiled = (
        attributed  # PCollection[AttributedTransaction], from AttributeTransactions
        | "ProfileCounterparties" >> ProfileCounterparties()
    )  # the same rows, their features extended by COUNTERPARTY_FEATURES

Rows with a counterparty are keyed by ``counterparty_account_id``, a counterparty's rows of a
bundle handed on together in event-time order (:class:`_KeyAndGroupFn`), and go through one
stateful step whose logic is the pure
:class:`~pipeline.domain.counterparty.CounterpartyHistory`: each row leaves at once with the
features of the counterparty's *earlier* inflows (event time) known so far, and the rows
after an earlier inflow that arrived late are corrected when the SETTLE timer fires (once per
watermark step, however many arrived late), so a transaction's final row does not depend on
the order a run read its inputs in. The account step's own corrections replace the row logged
for their transaction. Rows without a counterparty skip the shuffle and get
:data:`~pipeline.domain.counterparty.NO_COUNTERPARTY_VECTOR`.

State is a journal per counterparty (:mod:`pipeline.transforms.journal`): a snapshot of its
:class:`CounterpartyHistory`, then the changes made since (an inflow added, the watermark
settled, a timer moved), so a bundle writes about the size of its inflows rather than the
whole log. Replaying is exact: the history is a function of its inputs in the order
received (:mod:`pipeline.domain.counterparty`). A counterparty history saved whole by an
earlier version (the ``history`` cell) is read once and moved into the journal.

An event-time GC timer drops the state after ``idle`` without inflows (when
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
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV, Any, Tuple
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline.domain.attribution import order_key
from pipeline.domain.counterparty import NO_COUNTERPARTY_VECTOR, CounterpartyHistory
from pipeline.metrics import Counters
from pipeline.records import AttributedTransaction
from pipeline.transforms.attribute import (
    DEFAULT_ACCOUNT_IDLE,
    _seconds,
    arm_settle,
    keep_alive,
    timed_outputs,
)
from pipeline.transforms.grouping import PerKeyOfBundle
from pipeline.transforms.journal import Change, Journaled, load, record
from pipeline.transforms.journal import JournalCoder as _JournalCoder

__all__ = [
    "CounterpartyHistoryCoder", "JournalCoder", "ProfileCounterparties", "ProfileCounterpartiesFn",
]


class _History(CounterpartyHistory, Journaled):
    """A CounterpartyHistory kept in a journal (:mod:`pipeline.transforms.journal`), with
    where its timers are set."""

    __slots__ = ("applied", "gc_at", "settle_at")

    def __init__(self) -> None:
        super().__init__()
        self.gc_at = 0  # where the GC timer is set (µs)
        self.settle_at = 0  # where the SETTLE timer is set (µs; 0: not set)
        self.applied = -1

    def __sizeof__(self) -> int:
        return 2048 + 1200 * len(self.log) + 4096 * len(self._marks)

    def snapshot(self) -> tuple:
        return (self.to_tuple(), self.gc_at, self.settle_at, self.applied)

    @classmethod
    def from_snapshot(cls, values: tuple) -> "_History":
        return _restored(*values)


# What a journal's change did; its two arguments; then gc_at and settle_at after it.
ADD = 1  # the row (``AttributedTransaction.to_tuple()``) and when it was produced (µs)
SETTLE = 2  # the watermark it settled at (µs), unused
TIMERS = 3  # only the timers moved (both unused)


class _Change(Change):
    """One change in a counterparty's journal: ``(kind, first, second, gc_at, settle_at)``."""

    __slots__ = ()
    RECORDS = frozenset((ADD,))

    def apply(self, history: _History) -> None:
        kind, first, second, history.gc_at, history.settle_at = self.values
        if kind == ADD:
            history.add(AttributedTransaction.from_tuple(first), second)
        elif kind == SETTLE:
            history.settle(first)


class CounterpartyHistoryCoder(Coder):
    """Encodes a counterparty history as nested tuples of primitives (no pickling): the
    whole-history cell of an earlier version."""

    _TUPLES = FastPrimitivesCoder()

    def encode(self, history: _History) -> bytes:
        return self._TUPLES.encode((history.to_tuple(), history.gc_at, history.settle_at))

    def decode(self, encoded: bytes) -> _History:
        values, gc_at, settle_at = self._TUPLES.decode(encoded)
        return _restored(values, gc_at, settle_at)

    def is_deterministic(self) -> bool:
        return True


def _restored(values: tuple, gc_at: int, settle_at: int, applied: int = -1) -> _History:
    restored = CounterpartyHistory.from_tuple(values)
    history = _History()
    history.base, history.log, history.late = restored.base, restored.log, restored.late
    history.settled, history.stale = restored.settled, restored.stale
    history.gc_at, history.settle_at, history.applied = gc_at, settle_at, applied
    return history


class JournalCoder(_JournalCoder):
    """The counterparty journal's coder."""

    def __init__(self):
        super().__init__(_History, _Change)


class ProfileCounterpartiesFn(beam.DoFn):
    """Adds the counterparty features to the rows of one counterparty (module docstring).

    Input: ``(counterparty_account_id, ((produced, AttributedTransaction.to_tuple()), ...))``,
    one counterparty's rows of a bundle in event-time order (:class:`_KeyAndGroupFn`),
    timestamped with the earliest Kafka timestamp (``produced``, µs). Output:
    :class:`AttributedTransaction` with ``COUNTERPARTY_FEATURES`` appended to its features,
    each at its own ``produced``.

    State and timers (per counterparty_account_id):
      JOURNAL: the counterparty's :class:`CounterpartyHistory` (with where its timers are
        set) and the changes made to it since (module docstring).
      HISTORY: the whole history, as an earlier version kept it; moved into JOURNAL when
        next read.
      GC: event-time timer after ``idle`` without inflows; it drops the state, or, while
        SETTLE is still due, sets itself again just after it.
      SETTLE: event-time timer at the production time of the newest unsettled inflow when set;
        emits the corrections of the rows after an inflow that arrived late.
    """

    JOURNAL = BagStateSpec("journal", JournalCoder())
    HISTORY = ReadModifyWriteStateSpec("history", CounterpartyHistoryCoder())
    # Named apart from the account step's "gc" and "settle": the FnApiRunner delivers a
    # bundle's timers by name, not by step (docs/flink-notes.md, "Timers on the FnApiRunner").
    GC = TimerSpec("counterparty-gc", TimeDomain.WATERMARK)
    SETTLE = TimerSpec("counterparty-settle", TimeDomain.WATERMARK)

    def __init__(self, idle: Duration):
        self._idle = idle
        self._counters = Counters(
            "counterparty_rows", "counterparty_corrected", "counterparty_late_beyond_log",
            "counterparties_evicted", "counterparty_changes", "counterparty_snapshots",
            "counterparty_changes_replayed",
        )

    def start_bundle(self):
        self._counters.report_zero()

    def finish_bundle(self):
        self._counters.flush()

    def process(
        self,
        element: tuple[str, tuple],
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
        window=beam.DoFn.WindowParam,
    ):
        _, inflows = element
        history = self._load(journal, legacy) or _History()
        late = history.late
        timed_rows = []  # (rows, produced) per inflow, in order
        for produced, values in inflows:
            rows = history.add(AttributedTransaction.from_tuple(values), produced)
            if len(rows) > 1:
                self._counters.inc("counterparty_corrected", len(rows) - 1)
            timed_rows.append((rows, produced))
        self._counters.inc("counterparty_rows", len(inflows))
        if history.late > late:
            self._counters.inc("counterparty_late_beyond_log", history.late - late)
        arm_settle(history, settle)
        keep_alive(history, max(p for p, _ in inflows) + self._idle.micros, gc)
        for produced, values in inflows:  # each with the timers as they are now
            self._record(journal, history, ADD, values, produced)
        yield from timed_outputs(timed_rows, window, single=len(inflows) == 1)

    @on_timer(SETTLE)
    def _on_settle(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        history = self._load(journal, legacy)
        if history is None:
            return  # dropped by GC meanwhile
        history.settle_at = 0
        rows = history.settle(fired.micros)
        arm_settle(history, settle)
        self._record(journal, history, SETTLE, fired.micros)
        # At the timer's timestamp: never behind the watermark.
        yield from self._corrected(rows)

    @on_timer(GC)
    def _on_gc(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        history = self._load(journal, legacy)
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
            self._record(journal, history, TIMERS)
            return
        self._counters.inc("counterparties_evicted")
        journal.clear()

    def _load(self, state, legacy) -> _History | None:
        history, replayed = load(state, legacy)
        if replayed:  # read back from the runner: after a restart, or evicted from the cache
            self._counters.inc("counterparty_changes_replayed", replayed)
        return history

    def _record(self, state, history: _History, kind: int, first=None, second=None) -> None:
        snapshot = record(
            state, history, _Change((kind, first, second, history.gc_at, history.settle_at))
        )
        self._counters.inc("counterparty_snapshots" if snapshot else "counterparty_changes")

    def _corrected(self, rows: list) -> list:
        if rows:
            self._counters.inc("counterparty_corrected", len(rows))
        return rows


def _route(row: AttributedTransaction, _partitions: int) -> int:
    return 0 if row.transaction.counterparty_account_id is not None else 1


class _KeyAndGroupFn(PerKeyOfBundle):
    """Keys rows by counterparty and hands on each counterparty's rows of a bundle together,
    in event-time order: ``(counterparty_account_id, ((produced, row.to_tuple()), ...))``,
    timestamped with the earliest of them, at the bundle's end (:mod:`pipeline.transforms.grouping`).

    As for the account step (:class:`pipeline.transforms.attribute._KeyAndGroupFn`): the
    counterparty step then runs once per counterparty and bundle rather than once per row.
    And the account step emits a bundle's rows account by account, so one counterparty's
    inflows from several senders come out of event-time order; sorted here, they reach its
    history in order and fewer rows are corrected (each correction is a row more through the
    model and every sink). The account stage's output leaves at its bundle's end anyway on
    Flink when its input is a backlog; at a low rate a row may wait for it (a bundle lasts
    up to ``--max_bundle_time_mills``).
    """

    def key(self, row: AttributedTransaction):
        return row.transaction.counterparty_account_id

    def entry(self, row: AttributedTransaction, micros: int):
        return order_key(row.transaction), micros, row

    def group(self, entries: list):
        entries.sort(key=lambda entry: entry[0])
        return tuple((produced, row.to_tuple()) for _, produced, row in entries)


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
            | "KeyByCounterparty" >> beam.ParDo(_KeyAndGroupFn())
            .with_output_types(KV[str, Tuple[Any, ...]])
            | "Profile" >> beam.ParDo(ProfileCounterpartiesFn(self._idle))
            .with_output_types(AttributedTransaction)
        )
        passed = without_cp | "NoCounterparty" >> beam.Map(_no_counterparty).with_output_types(
            AttributedTransaction
        )
        return (profiled, passed) | "Merge" >> beam.Flatten()
