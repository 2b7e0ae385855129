"""The counterparty step: the receiver's side of the features, in one DoFn per shard of counterparties.

Usage::

    profiled = (
        attributed  # PCollection[AttributedTransaction], from AttributeTransactions
        | "ProfileCounterparties" >> ProfileCounterparties()
    )  # the same rows, their features extended by COUNTERPARTY_FEATURES

Rows with a counterparty are keyed by a **shard** of ``counterparty_account_id``
(:func:`shard_of`: a CRC-32 of the id, modulo ``shards``), a shard's rows of a bundle handed
on together in event-time order (:class:`_KeyAndGroupFn`), and go through one stateful step
that keeps, per shard, the pure
:class:`~pipeline.domain.counterparty.CounterpartyHistory` of each of its counterparties
(:class:`_Shard`). Each row leaves at once with the features of its counterparty's *earlier*
inflows (event time) known so far, and the rows after an earlier inflow that arrived late are
corrected when the SETTLE timer fires (once per watermark step, however many arrived late),
so a transaction's final row does not depend on the order a run read its inputs in. The
account step's own corrections replace the row logged for their transaction. Rows without a
counterparty skip the shuffle and get
:data:`~pipeline.domain.counterparty.NO_COUNTERPARTY_VECTOR`.

Why shards rather than one key per counterparty: Beam's work per element and per bundle of a
keyed stage (the shuffle, the state and timer requests, the call itself) was about half of
the SDK workers' time on the model path, and nearly every row reached a counterparty of its
own in its bundle, so the stage cost one element, one state commit and often one timer per
row (``docs/flink-notes.md``, "The fraud model's cost on Flink"). Keyed by shard, a bundle's
rows reach the step in at most ``shards`` elements, each shard commits one journal append per
bundle, and each shard has two timers, not each counterparty. How many shards
(``--counterparty_shards``, default :data:`DEFAULT_SHARDS`) trades that against the size of a
shard's state, which holds every one of its counterparties' logs: keep a few thousand
counterparties per shard at most.

State is a journal per shard (:mod:`pipeline.transforms.journal`): a snapshot of the shard's
histories, then the changes made since (an inflow added, the watermark settled at, idle
counterparties dropped, a timer moved), so a bundle writes about the size of its inflows
rather than the whole shard. Replaying is exact: each history is a function of its inputs in
the order received, and a shard's settle and drop are functions of its histories and the
time (:mod:`pipeline.domain.counterparty`).

Timers, per shard. SETTLE (event time) tells the histories that the watermark has moved past
their unsettled inflows: it emits the corrections that waited for it, and until the watermark
passes them the inflows stay in the logs, so an earlier inflow still to be read from another
partition is placed exactly. It is set only when none is set, at the newest inflow of the
shard, so one firing settles a batch. GC (event time) drops the counterparties with no inflow
for ``idle``: a firing of either timer drops those past their deadline, and GC, set at the
shard's newest inflow plus ``idle`` and moved only by ``GC_SLACK``
(:func:`~pipeline.transforms.attribute.keep_alive`), drops the shard's state when all are idle
(when a runner fires both at once and GC first, GC waits for SETTLE: the corrections leave at
SETTLE's timestamp, not ``idle`` ahead at GC's). The corrections leave at the timer's
timestamp, at or after their transaction's own.

A savepoint taken while counterparties were keyed one by one (before shards) does not
restore into this step: its state was per counterparty (``docs/flink-notes.md``,
"Restarting a job").
"""

from __future__ import annotations

import dataclasses
import zlib

import apache_beam as beam
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
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
    "DEFAULT_SHARDS", "JournalCoder", "ProfileCounterparties", "ProfileCounterpartiesFn",
    "shard_of",
]

DEFAULT_SHARDS = 64  # shards of the counterparty ids (--counterparty_shards)


def shard_of(counterparty_id: str, shards: int) -> int:
    """The shard of a counterparty: the same in every process (unlike ``hash``)."""
    return zlib.crc32(counterparty_id.encode()) % shards


class _Counterparty(CounterpartyHistory):
    """A counterparty's history in a shard, with the production time (µs) of its newest
    inflow: its idle deadline is that plus ``idle``."""

    __slots__ = ("newest",)

    def __init__(self) -> None:
        super().__init__()
        self.newest = 0


class _Shard(Journaled):
    """The counterparties of one shard, kept in a journal, with where its timers are set.

    Attributes:
      histories: counterparty id → its :class:`_Counterparty`.
      pending: the counterparties with inflows produced after they last settled.
      newest: the production time (µs) of the shard's newest inflow.
      gc_at, settle_at: where the timers are set (µs; settle_at 0: not set).
      size: the logged inflows of all its histories when the journal last started again
        from a snapshot (how long the changes after it may grow).
    """

    __slots__ = ("applied", "gc_at", "histories", "newest", "pending", "settle_at", "size")
    # Beam's state cache weighs the journal by this value alone (``__sizeof__`` counts the
    # changes after it): pipeline/runners/sdk_worker.py.
    WEIGHS_WHAT_FOLLOWS = True

    def __init__(self) -> None:
        self.histories: dict[str, _Counterparty] = {}
        self.pending: set[str] = set()
        self.newest = 0
        self.gc_at = 0
        self.settle_at = 0
        self.applied = -1
        self.size = 0

    # -- what the step does to it (and a replay of its journal does again) ----------------
    def add(self, row: AttributedTransaction, produced: int) -> tuple[list, int]:
        """Takes a row into its counterparty's history; returns the rows to emit and how
        many inputs arrived too late to be placed exactly (0 or 1)."""
        cp = row.transaction.counterparty_account_id
        history = self.histories.get(cp)
        if history is None:
            self.histories[cp] = history = _Counterparty()
        late = history.late
        rows = history.add(row, produced)
        if produced > history.newest:
            history.newest = produced
        if produced > self.newest:
            self.newest = produced
        if produced > history.settled:
            self.pending.add(cp)
        return rows, history.late - late

    def settle(self, until: int, idle: int) -> tuple[list[AttributedTransaction], int]:
        """Every input produced at or before ``until`` (µs) has been read: settles each
        counterparty that waited for it, then drops the idle ones (:meth:`drop_idle`);
        returns the corrections and how many were dropped."""
        rows = []
        for cp in sorted(self.pending):  # sorted: the same order in a replay
            history = self.histories[cp]
            rows += history.settle(until)
            if history.newest <= until:
                self.pending.discard(cp)
        return rows, self.drop_idle(until, idle)

    def drop_idle(self, until: int, idle: int) -> int:
        """Drops the counterparties whose newest inflow is ``idle`` µs or more before
        ``until`` and that wait for no settle; returns how many."""
        idle_ones = [cp for cp, history in self.histories.items()
                     if history.newest + idle <= until and cp not in self.pending]
        for cp in idle_ones:
            del self.histories[cp]
        return len(idle_ones)

    @property
    def settle_time(self) -> int | None:
        """When a SETTLE should fire (µs): the shard's newest inflow while any waits, else
        None (the interface of :func:`~pipeline.transforms.attribute.arm_settle`)."""
        return self.newest if self.pending else None

    # -- the journal ----------------------------------------------------------------------
    def journal_size(self) -> int:
        return self.size

    def snapshotted(self) -> None:
        self.size = sum(len(h.log) for h in self.histories.values())

    def __sizeof__(self) -> int:
        return 2048 + 1200 * (self.size + max(self.applied, 0)) + 512 * len(self.histories)

    def snapshot(self) -> tuple:
        histories = tuple(
            (cp, h.to_tuple(), h.newest) for cp, h in self.histories.items()
        )
        return (histories, tuple(sorted(self.pending)), self.newest, self.gc_at,
                self.settle_at, self.applied)

    @classmethod
    def from_snapshot(cls, values: tuple) -> "_Shard":
        histories, pending, newest, gc_at, settle_at, applied = values
        shard = cls()
        for cp, history_values, cp_newest in histories:
            history = _Counterparty.from_tuple(history_values)
            history.newest = cp_newest
            shard.histories[cp] = history
        shard.pending = set(pending)
        shard.newest, shard.gc_at, shard.settle_at, shard.applied = (
            newest, gc_at, settle_at, applied)
        shard.snapshotted()
        return shard


# What a journal's change did; its two arguments; then gc_at and settle_at after it.
ADD = 1  # the row (``AttributedTransaction.to_tuple()``) and when it was produced (µs)
SETTLE = 2  # the watermark it settled at (µs), and the idle time (µs) it dropped by
TIMERS = 3  # only the timers moved (both unused)
DROP = 4  # GC fired: the time (µs) and the idle time (µs) it dropped by


class _Change(Change):
    """One change in a shard's journal: ``(kind, first, second, gc_at, settle_at)``."""

    __slots__ = ()
    RECORDS = frozenset((ADD,))

    def apply(self, shard: _Shard) -> None:
        kind, first, second, shard.gc_at, shard.settle_at = self.values
        if kind == ADD:
            shard.add(AttributedTransaction.from_tuple(first), second)
        elif kind == SETTLE:
            shard.settle(first, second)
        elif kind == DROP:
            shard.drop_idle(first, second)


class JournalCoder(_JournalCoder):
    """The counterparty shards' journal coder."""

    def __init__(self):
        super().__init__(_Shard, _Change)


class ProfileCounterpartiesFn(beam.DoFn):
    """Adds the counterparty features to the rows of one shard of counterparties (module
    docstring).

    Input: ``(shard, ((produced, AttributedTransaction.to_tuple()), ...))``, one shard's rows
    of a bundle in event-time order (:class:`_KeyAndGroupFn`), timestamped with the earliest
    Kafka timestamp (``produced``, µs). Output: :class:`AttributedTransaction` with
    ``COUNTERPARTY_FEATURES`` appended to its features, each at its own ``produced``.

    State and timers (per shard):
      JOURNAL: the shard's :class:`_Shard` (its counterparties' histories, where its timers
        are set) and the changes made to it since (module docstring).
      GC: event-time timer at the shard's newest inflow plus ``idle``; it drops the idle
        counterparties and the state once none is left, or, while SETTLE is still due, sets
        itself again just after it.
      SETTLE: event-time timer at the production time of the shard's newest inflow when set;
        emits the corrections of the rows after an inflow that arrived late, and drops the
        idle counterparties.
    """

    JOURNAL = BagStateSpec("shard-journal", JournalCoder())
    # Named apart from the account step's "gc" and "settle": the FnApiRunner delivers a
    # bundle's timers by name, not by step (docs/flink-notes.md, "Timers on the FnApiRunner").
    GC = TimerSpec("counterparty-shard-gc", TimeDomain.WATERMARK)
    SETTLE = TimerSpec("counterparty-shard-settle", TimeDomain.WATERMARK)

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
        element: tuple[int, tuple],
        journal=beam.DoFn.StateParam(JOURNAL),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
        window=beam.DoFn.WindowParam,
    ):
        _, inflows = element
        shard = self._load(journal) or _Shard()
        timed_rows = []  # (rows, produced) per inflow, in order
        late = corrected = 0
        for produced, values in inflows:
            rows, late_one = shard.add(AttributedTransaction.from_tuple(values), produced)
            late += late_one
            corrected += len(rows) - 1
            timed_rows.append((rows, produced))
        self._counters.inc("counterparty_rows", len(inflows))
        if corrected:
            self._counters.inc("counterparty_corrected", corrected)
        if late:
            self._counters.inc("counterparty_late_beyond_log", late)
        arm_settle(shard, settle)
        keep_alive(shard, shard.newest + self._idle.micros, gc)
        for produced, values in inflows:  # each with the timers as they are now
            self._record(journal, shard, ADD, values, produced)
        yield from timed_outputs(timed_rows, window, single=len(inflows) == 1)

    @on_timer(SETTLE)
    def _on_settle(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        shard = self._load(journal)
        if shard is None:
            return  # dropped by GC meanwhile
        shard.settle_at = 0
        rows, dropped = shard.settle(fired.micros, self._idle.micros)
        self._evicted(dropped)
        arm_settle(shard, settle)
        self._record(journal, shard, SETTLE, fired.micros, self._idle.micros)
        # At the timer's timestamp: never behind the watermark.
        yield from self._corrected(rows)

    @on_timer(GC)
    def _on_gc(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        shard = self._load(journal)
        if shard is None:
            return
        if shard.settle_at:
            # A runner may fire both timers of a key at once (a bounded run's watermark jumps
            # to the end), GC first. The corrections waiting for SETTLE leave with it, at its
            # earlier timestamp: emitted here they would carry GC's, ``idle`` ahead, and hold
            # downstream processing-time timers until then. SETTLE is due (it is earlier; set
            # again, should it be lost), so GC comes back just after it.
            settle.set(Timestamp(micros=shard.settle_at))
            shard.gc_at = fired.micros + 1
            gc.set(Timestamp(micros=shard.gc_at))
            self._record(journal, shard, TIMERS)
            return
        self._evicted(shard.drop_idle(fired.micros, self._idle.micros))
        if not shard.histories:
            journal.clear()
            return
        # Some had inflows since the timer was set (it moves only by GC_SLACK).
        shard.gc_at = shard.newest + self._idle.micros
        gc.set(Timestamp(micros=shard.gc_at))
        self._record(journal, shard, DROP, fired.micros, self._idle.micros)

    def _load(self, journal) -> _Shard | None:
        shard, replayed = load(journal)
        if replayed:  # read back from the runner: after a restart, or evicted from the cache
            self._counters.inc("counterparty_changes_replayed", replayed)
        return shard

    def _record(self, journal, shard: _Shard, kind: int, first=None, second=None) -> None:
        snapshot = record(
            journal, shard, _Change((kind, first, second, shard.gc_at, shard.settle_at))
        )
        self._counters.inc("counterparty_snapshots" if snapshot else "counterparty_changes")

    def _evicted(self, count: int) -> None:
        if count:
            self._counters.inc("counterparties_evicted", count)

    def _corrected(self, rows: list) -> list:
        if rows:
            self._counters.inc("counterparty_corrected", len(rows))
        return rows


def _route(row: AttributedTransaction, _partitions: int) -> int:
    return 0 if row.transaction.counterparty_account_id is not None else 1


class _KeyAndGroupFn(PerKeyOfBundle):
    """Keys rows by the shard of their counterparty and hands on each shard's rows of a bundle
    together, in event-time order: ``(shard, ((produced, row.to_tuple()), ...))``,
    timestamped with the earliest of them, at the bundle's end
    (:mod:`pipeline.transforms.grouping`).

    The counterparty step then runs once per shard and bundle rather than once per row. And
    the account step emits a bundle's rows account by account, so one counterparty's inflows
    from several senders come out of event-time order; sorted here, they reach its history in
    order and fewer rows are corrected (each correction is a row more through the model and
    every sink). The account stage's output leaves at its bundle's end anyway on Flink when
    its input is a backlog; at a low rate a row may wait for it (a bundle lasts up to
    ``--max_bundle_time_mills``).
    """

    def __init__(self, shards: int):
        self._shards = shards

    def key(self, row: AttributedTransaction):
        return shard_of(row.transaction.counterparty_account_id, self._shards)

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
      shards: how many keys the counterparty ids are spread over (module docstring).
    """

    def __init__(self, idle=DEFAULT_ACCOUNT_IDLE, shards: int = DEFAULT_SHARDS):
        super().__init__()
        self._idle = Duration.of(_seconds(idle, "idle"))
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        self._shards = shards

    def expand(self, rows):
        with_cp, without_cp = rows | "SplitByCounterparty" >> beam.Partition(_route, 2)
        profiled = (
            with_cp
            | "KeyByCounterpartyShard" >> beam.ParDo(_KeyAndGroupFn(self._shards))
            .with_output_types(KV[int, Tuple[Any, ...]])
            | "ProfileShard" >> beam.ParDo(ProfileCounterpartiesFn(self._idle))
            .with_output_types(AttributedTransaction)
        )
        passed = without_cp | "NoCounterparty" >> beam.Map(_no_counterparty).with_output_types(
            AttributedTransaction
        )
        return (profiled, passed) | "Merge" >> beam.Flatten()
