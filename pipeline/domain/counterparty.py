"""One counterparty's inflows: the receiver's side of the features, exact and order-free.

A :class:`CounterpartyHistory` holds what riskpipe knows of the money flowing *into* one
account (or merchant): the :class:`InflowFeatures` of its older inflows and a log of its newest
inflows kept whole, each with the row the account step emitted for it. It is pure Python; the
counterparty step's DoFn (:mod:`pipeline.transforms.counterparties`) keeps one per
counterparty id in Beam state. It follows :mod:`pipeline.domain.attribution`:

- each inflow's :data:`COUNTERPARTY_FEATURES` are those of the inflows *earlier in event time*
  (``datetime_occurred``, then ``transaction_id``), whatever order they arrived in;
- rows leave at once, with the features of the earlier inflows known so far; when an inflow
  arrives after later ones, the later ones are marked stale, not re-scored: the next
  :meth:`CounterpartyHistory.settle` (the watermark has moved) scores them again in one pass
  and returns those whose features changed (their latest row with the new features). An
  inflow the watermark has already passed re-scores the later ones at once;
- a row that corrects an earlier one (``correction``: the account step re-scored it) replaces
  the logged row and leaves with the features already computed for it.

An inflow stays in the log until it is **settled** (:meth:`CounterpartyHistory.settle`: the
step's watermark has passed the time it was produced, so every input produced before it has
been read) *and* it is neither among the newest :data:`LOG_SIZE` inflows nor within
:data:`LOG_HORIZON_S` of the newest one; at most :data:`MAX_LOG` stay in any case (memory).
The counterparty step is fed by every sender's partition, so its inputs are out of event-time
order by as much as the partitions are read apart; holding unsettled inflows makes the final
rows independent of that order, and a bounded run, whose watermark moves only at the end of
its input, exact up to :data:`MAX_LOG` inflows per counterparty. An input older than every
logged inflow is counted ``late``: a new inflow is then judged against everything known and
folded in; a correction of an inflow that has left the log is judged against everything
known, and not folded in again.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.records import AttributedTransaction, Transaction
>>> def row(i, sender, minute):
...     txn = Transaction(f"t{i}", sender, "mule", "transfer", 100.0, "EUR", "completed",
...                       datetime(2026, 3, 2, 14, minute, tzinfo=UTC), None, "unidentified")
...     return AttributedTransaction(txn, None, 0, features=(1.0,))
>>> history = CounterpartyHistory()
>>> first = history.add(row(1, "a1", 0))[0]
>>> second = history.add(row(2, "a2", 5))[0]
>>> named = dict(zip(COUNTERPARTY_FEATURES, second.features[1:]))
>>> named["cp_inflows"], named["cp_senders_6h"], named["cp_new_senders_24h"]
(1.0, 1.0, 1.0)
>>> # t0 occurred before t2 but arrives after it: t0 leaves; t2's correction waits for the
>>> # watermark to move, then leaves once however many earlier inflows arrived late
>>> [r.transaction.transaction_id for r in history.add(row(0, "a3", 1), produced=10)]
['t0']
>>> [r.transaction.transaction_id for r in history.settle(10)]
['t2']
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import struct
import zlib
from typing import NamedTuple

from pipeline.domain.account_features import (
    amount_cents,
    amount_level,
    counterparty_key,
    least_recent,
)
from pipeline.domain.attribution import order_key
from pipeline.domain.surprise import poisson_surprise
from pipeline.records import AttributedTransaction, Transaction

__all__ = [
    "COUNTERPARTY_FEATURES",
    "LOG_HORIZON_S",
    "LOG_SIZE",
    "MAX_LOG",
    "NO_COUNTERPARTY_VECTOR",
    "CounterpartyHistory",
    "Inflow",
    "InflowFeatures",
    "counterparty_vector",
    "inflow",
]

LOG_SIZE = 32  # settled inflows kept whole (with their rows) per counterparty
LOG_HORIZON_S = 86_400.0  # ...and only while within a day of the newest inflow
MAX_LOG = 1024  # inflows kept whole in any case, settled or not (a bound on memory)
MARK_STRIDE = 16  # a copy of the running features every so many logged inflows (in memory)
_LONG_AGO = -(2**62)  # µs: "settled from the start" (an inflow) and "nothing settled yet"
MAX_LATEST = 64  # newest inflows kept (their facts) for the windows
MAX_SENDERS = 64  # senders kept, the most recent ones
HOUR, DAY = 3600.0, 86400.0
MIN_AMOUNTS = 3  # earlier inflow amounts before an amount can be judged against them
LEVEL_STD_FLOOR = 200
NAN = math.nan

COUNTERPARTY_FEATURES: tuple[str, ...] = (
    "cp_inflows",  # earlier inflows into the counterparty
    "cp_age_days",  # since its first inflow known
    "cp_usual_per_day",  # its own rate of inflows
    "cp_inflows_1h", "cp_inflows_6h", "cp_inflows_24h",
    "cp_inflows_24h_vs_usual",
    "cp_senders_6h", "cp_senders_24h",  # distinct senders
    # -log10 of the chance of so many distinct senders in 6 h / 24 h at the usual rate
    "cp_senders_6h_surprise", "cp_senders_24h_surprise",
    "cp_new_senders_6h", "cp_new_senders_24h",  # senders whose first inflow is that recent
    "cp_sender_inflows",  # earlier inflows from this sender (0: a first-time sender)
    "cp_amount_z",  # this amount against the counterparty's inflows, in std of log-amounts
    "cp_eur_24h_log",  # ln(1 + EUR received in 24 h)
    "cp_eur_24h_vs_usual",  # EUR received in 24 h against the usual EUR a day
)
# The counterparty features of a transaction without a counterparty: missing.
NO_COUNTERPARTY_VECTOR = (NAN,) * len(COUNTERPARTY_FEATURES)


class Inflow(NamedTuple):
    """What the counterparty features keep of an inflow: its time (epoch seconds), the
    sender's :func:`~pipeline.domain.account_features.counterparty_key`, the amount in EUR
    cents and its level (both -1: failed)."""

    seen: float
    sender: int
    cents: int
    level: int


def inflow(txn: Transaction) -> Inflow:
    """The :class:`Inflow` of a transaction into its counterparty."""
    cents = -1 if txn.transaction_status == "failed" else amount_cents(txn)
    return Inflow(txn.datetime_occurred.timestamp(), counterparty_key(txn.account_id), cents,
                  amount_level(cents))


class InflowFeatures:
    """Features of a counterparty's inflows, folded in place by :meth:`add`: counts, sums
    and min/max (commutative), the newest MAX_LATEST inflows (the top of a set by time), and
    the senders table (the MAX_SENDERS most recent senders by event time, ties by key; a
    function of the set when folded in event-time order, as the history does).

    Attributes:
      count, first_seen, last_seen: how many inflows over which span.
      cents: the EUR cents received (failed inflows moved none).
      amounts, levels, levels_sq: how many inflow amounts have a level, their sum and sum
        of squares.
      latest: the newest :class:`Inflow` s, ascending.
      senders: sender key -> ``(first_seen, last_seen, count)``.
    """

    __slots__ = ("amounts", "cents", "count", "first_seen", "last_seen", "latest", "levels",
                 "levels_sq", "senders")

    def __init__(self) -> None:
        self.count = 0
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.cents = self.amounts = self.levels = self.levels_sq = 0
        self.latest: list[Inflow] = []
        self.senders: dict[int, tuple[float, float, int]] = {}

    def add(self, item: Inflow) -> None:
        seen, sender, cents, level = item
        self.count += 1
        if cents > 0:
            self.cents += cents
        if self.first_seen is None or seen < self.first_seen:
            self.first_seen = seen
        if self.last_seen is None or seen > self.last_seen:
            self.last_seen = seen
        if level >= 0:
            self.amounts += 1
            self.levels += level
            self.levels_sq += level * level
        latest = self.latest
        if not latest or item >= latest[-1]:
            latest.append(item)
        else:
            bisect.insort(latest, item)
        if len(latest) > MAX_LATEST:
            del latest[0]
        senders = self.senders
        known = senders.get(sender)
        if known is None:
            senders[sender] = (seen, seen, 1)
            if len(senders) > MAX_SENDERS:
                del senders[least_recent(senders)]
        else:
            first, last, n = known
            senders[sender] = (min(first, seen), max(last, seen), n + 1)

    def copy(self) -> "InflowFeatures":
        other = InflowFeatures.__new__(InflowFeatures)
        other.count, other.first_seen, other.last_seen = self.count, self.first_seen, self.last_seen
        other.amounts, other.levels, other.levels_sq = self.amounts, self.levels, self.levels_sq
        other.cents = self.cents
        other.latest = list(self.latest)
        other.senders = dict(self.senders)
        return other

    def to_tuple(self) -> tuple:
        """The features as a tuple of primitives (for a state coder); see :meth:`from_tuple`."""
        return (self.count, self.first_seen, self.last_seen, self.cents, self.amounts,
                self.levels, self.levels_sq, tuple(tuple(i) for i in self.latest),
                tuple((key, *value) for key, value in sorted(self.senders.items())))

    @classmethod
    def from_tuple(cls, values: tuple) -> "InflowFeatures":
        features = cls.__new__(cls)
        (features.count, features.first_seen, features.last_seen, features.cents,
         features.amounts, features.levels, features.levels_sq, latest, senders) = values
        features.latest = [Inflow(*i) for i in latest]
        features.senders = {key: tuple(value) for key, *value in senders}
        return features

    def __eq__(self, other) -> bool:
        return isinstance(other, InflowFeatures) and self.to_tuple() == other.to_tuple()


def counterparty_vector(item: Inflow, f: InflowFeatures) -> tuple[float, ...]:
    """The :data:`COUNTERPARTY_FEATURES` of an inflow against the features ``f`` of the
    counterparty's earlier inflows.

    >>> f = InflowFeatures()
    >>> for minute, sender in ((0, 1), (10, 2), (20, 2)):
    ...     f.add(Inflow(1_000_000.0 + 60 * minute, sender, 8103, 9000))
    >>> named = dict(zip(COUNTERPARTY_FEATURES, counterparty_vector(
    ...     Inflow(1_000_000.0 + 1800, 3, 8103, 9000), f)))
    >>> named["cp_inflows_1h"], named["cp_senders_6h"], named["cp_sender_inflows"]
    (3.0, 2.0, 0.0)
    """
    if not f.count:
        return FIRST_INFLOW_VECTOR
    at = item.seen
    span_days = max((f.last_seen - f.first_seen) / DAY, 1.0)
    usual = f.count / span_days
    latest = f.latest
    day = latest[bisect.bisect_right(latest, (at - DAY, 1 << 40)):]  # (t, 2**40) > (t, key)
    hour_ago, six_hours_ago = at - HOUR, at - 6 * HOUR
    in_1h = in_6h = cents_24h = 0
    senders_6h: set[int] = set()
    senders_24h: set[int] = set()
    for seen, sender, cents, _ in day:
        senders_24h.add(sender)
        if cents > 0:
            cents_24h += cents
        if seen > six_hours_ago:
            in_6h += 1
            senders_6h.add(sender)
            if seen > hour_ago:
                in_1h += 1
    new_6h = new_24h = 0
    for first, _, _ in f.senders.values():
        if first > at - DAY:
            new_24h += 1
            if first > six_hours_ago:
                new_6h += 1
    known = f.senders.get(item.sender)
    if f.amounts >= MIN_AMOUNTS and item.level >= 0:
        n, levels = f.amounts, f.levels
        variance = (n * f.levels_sq - levels * levels) / (n * (n - 1))
        amount_z = (item.level - levels / n) / max(math.sqrt(max(variance, 0.0)), LEVEL_STD_FLOOR)
    else:
        amount_z = NAN
    usual_cents = f.cents / span_days
    return (
        float(f.count), (at - f.first_seen) / DAY, usual,
        float(in_1h), float(in_6h), float(len(day)), len(day) / max(usual, 0.5),
        float(len(senders_6h)), float(len(senders_24h)),
        poisson_surprise(len(senders_6h), usual / 4), poisson_surprise(len(senders_24h), usual),
        float(new_6h), float(new_24h),
        float(known[2]) if known else 0.0, amount_z, math.log1p(cents_24h / 100),
        cents_24h / usual_cents if usual_cents else NAN,
    )


# The features of a counterparty's first inflow known: nothing before it.
FIRST_INFLOW_VECTOR = (0.0, NAN, NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                       NAN, 0.0, NAN)


def _signature(vector: tuple[float, ...]) -> int:
    return zlib.crc32(struct.pack(f"{len(vector)}d", *vector))


class _Entry:
    """A logged inflow: its order key, its :class:`Inflow`, when it was produced (µs), the
    latest row received for it (and that row's ``to_tuple()`` once made: state is written
    after every bundle that touches the counterparty, and most logged rows have not
    changed since the last write), its counterparty features and their signature as last
    emitted."""

    __slots__ = ("emitted", "inflow", "key", "produced", "row", "row_tuple", "vector")

    def __init__(self, row: AttributedTransaction, produced: int, vector: tuple = (),
                 emitted: int = -1, row_tuple: tuple | None = None):
        self.key = order_key(row.transaction)
        self.inflow = inflow(row.transaction)
        self.produced = produced
        self.row = row
        self.row_tuple = row_tuple
        self.vector = vector
        self.emitted = emitted

    def stored_row(self) -> tuple:
        """``row.to_tuple()``, made once per row."""
        if self.row_tuple is None:
            self.row_tuple = self.row.to_tuple()
        return self.row_tuple


class CounterpartyHistory:
    """The features of older inflows and a log of the newest ones, with their rows.

    Attributes:
      base: features of the inflows that left the log (all older than the logged ones).
      log: the newest inflows by event time: the unsettled ones, and of the settled ones at
        most LOG_SIZE within LOG_HORIZON_S (module docstring); at most MAX_LOG in all.
      late: how many inputs arrived too late to be placed exactly (older than the log).
      settled: inflows produced at or before this time (µs) are settled.
      stale: the order key of an unsettled inflow that arrived after later ones: the logged
        inflows after it wait to be scored again by :meth:`settle` (None: none wait).
    """

    __slots__ = ("_marks", "_total", "base", "late", "log", "settled", "stale")

    def __init__(self) -> None:
        self.base = InflowFeatures()
        self.log: list[_Entry] = []
        self.late = 0
        self.settled = _LONG_AGO
        self.stale: tuple | None = None
        self._total: InflowFeatures | None = None
        self._marks: list[tuple[int, InflowFeatures]] = []

    def _features(self) -> InflowFeatures:
        """Features of every inflow known (base and log), kept up to date in place."""
        if self._total is None:
            self._total = self._prefix(len(self.log))
        return self._total

    # -- marks: the running features at every MARK_STRIDE-th logged inflow -----------------
    # An inflow read after later ones is scored against the inflows before it, and the
    # features are rebuilt after it: each a fold from the start of the log, which a bounded
    # run (read partition by partition) or a busy counterparty pays for most of its inflows.
    # ``_marks`` holds ``(p, features of base and log[:p])``, p ascending, so a fold starts
    # at the last mark before where it must end. They are exact (the same folds in the same
    # order), live in memory only (a history read from state has none until its next fold),
    # and are dropped where an insertion or a change of base makes them wrong.

    def _prefix(self, end: int) -> InflowFeatures:
        """A fresh copy of the features of base and ``log[:end]``, marking on the way."""
        marks = self._marks
        j = bisect.bisect_right(marks, end, key=lambda m: m[0])
        start, running = (marks[j - 1][0], marks[j - 1][1].copy()) if j else (0, self.base.copy())
        log = self.log
        for i in range(start, end):
            running.add(log[i].inflow)
            self._mark(i + 1, running)
        return running

    def _mark(self, p: int, running: InflowFeatures) -> None:
        """Keeps a copy of ``running`` (the features of base and ``log[:p]``) when p is a
        stride past the last mark."""
        if p % MARK_STRIDE == 0 and p > (self._marks[-1][0] if self._marks else 0):
            self._marks.append((p, running.copy()))

    def _unmark_after(self, index: int) -> None:
        """An inflow was inserted at ``index``: the marks past it do not count it."""
        marks = self._marks
        del marks[bisect.bisect_right(marks, index, key=lambda m: m[0]):]

    def add(self, row: AttributedTransaction,
            produced: int = _LONG_AGO) -> list[AttributedTransaction]:
        """Takes the account step's row of a transaction into this counterparty, produced at
        ``produced`` (µs; by default settled at once); returns its row with the counterparty
        features appended (and, for an input the watermark has passed, the corrections of
        later ones; others wait for :meth:`settle`)."""
        key = order_key(row.transaction)
        log = self.log
        index = bisect.bisect_left(log, key, key=lambda e: e.key)
        if index < len(log) and log[index].key == key:
            entry = log[index]  # a corrected (or repeated) row of a logged inflow
            entry.row, entry.row_tuple = row, None
            return [_with(row, entry.vector)]
        if row.correction:
            # Its first row was logged and has left the log (or the state was dropped since):
            # judged against what is known, not folded in a second time.
            self.late += 1
            return [_with(row, counterparty_vector(inflow(row.transaction), self._features()))]
        entry = _Entry(row, produced)
        total = self._features()
        if not log or key > log[-1].key:  # in order: the common case
            rows = [self._score(entry, total)]
            total.add(entry.inflow)
            log.append(entry)
            self._mark(len(log), total)
            if len(log) > MAX_LOG and self.stale is not None:
                rows += self._rescore(self._stale_index())  # before the oldest leave the log
            self._trim()
            return rows
        if index == 0 and self.base.count:
            self.late += 1  # older than every logged inflow: its exact place is lost
            emitted = self._score(entry, self.base.copy())
            self.base.add(entry.inflow)
            self._total = None  # folded out of order: rebuilt in event-time order when needed
            self._marks.clear()
            return [emitted]
        log.insert(index, entry)
        self._unmark_after(index)
        if produced <= self.settled or len(log) > MAX_LOG:
            # No SETTLE will come for it, or the log is full: the later ones at once.
            rows = self._rescore(min(index, self._stale_index()), index)
            self._trim()
            return rows
        # Scored against the inflows before it; the later ones wait for settle().
        emitted = self._score(entry, self._prefix(index))
        if self.stale is None or key < self.stale:
            self.stale = key
        self._fold_out_of_order(entry.inflow)
        return [emitted]

    def _fold_out_of_order(self, item: Inflow) -> None:
        """Keeps the features of every inflow known up to date after ``item`` was placed
        before later ones. While no sender has been evicted from the table, and none is by
        this one, every part of InflowFeatures is a function of the set (sums, minima and
        maxima, the top MAX_LATEST by time, each sender's first, last and count), so folding
        it in last ends where folding in event-time order would; otherwise the features are
        rebuilt in event-time order when next needed (from the last mark before the end)."""
        total = self._total
        if total is not None and len(total.senders) < MAX_SENDERS:
            total.add(item)
        else:
            self._total = None

    def settle(self, until: int) -> list[AttributedTransaction]:
        """Every input produced at or before ``until`` (µs) has been read: the logged
        inflows after one that arrived late are scored again, in one pass, and those whose
        features changed are returned; inflows produced by then may leave the log."""
        rows = self._rescore(self._stale_index()) if self.stale is not None else []
        if until > self.settled:
            self.settled = until
            self._trim()
        return rows

    def _stale_index(self) -> int:
        """Where the stale inflows start in the log (its length when none are)."""
        if self.stale is None:
            return len(self.log)
        return bisect.bisect_right(self.log, self.stale, key=lambda e: e.key)

    @property
    def settle_time(self) -> int | None:
        """The watermark a settle() should wait for (µs): the production time of the newest
        unsettled inflow in the log; None when all are settled."""
        settled = self.settled
        newest = max((e.produced for e in self.log), default=settled)
        return newest if newest > settled else None

    def _trim(self) -> None:
        log, settled = self.log, self.settled
        left = 0
        while log and (
            len(log) > MAX_LOG
            or log[0].produced <= settled
            and (len(log) > LOG_SIZE or log[0].inflow.seen < log[-1].inflow.seen - LOG_HORIZON_S)
        ):
            self.base.add(log.pop(0).inflow)
            left += 1
        if left and self._marks:  # base and log[:p] hold the same inflows, folded alike
            self._marks = [(p - left, f) for p, f in self._marks if p > left]

    def _score(self, entry: _Entry, features: InflowFeatures) -> AttributedTransaction:
        self._rescore_entry(entry, features)
        return _with(entry.row, entry.vector)

    @staticmethod
    def _rescore_entry(entry: _Entry, features: InflowFeatures) -> bool:
        """Computes the entry's features against ``features``; True when they changed."""
        shown = entry.emitted
        entry.vector = counterparty_vector(entry.inflow, features)
        entry.emitted = _signature(entry.vector)
        return entry.emitted != shown

    def _rescore(self, start: int, new: int = -1) -> list[AttributedTransaction]:
        """Scores the log entries from ``start`` on again; returns the row of the new one
        (at ``new``) and of those whose features changed. The pass folds every logged inflow
        in event-time order, so it leaves the features of all inflows known up to date as
        well, and none stale."""
        running = self._prefix(start)
        rows = []
        log = self.log
        for i in range(start, len(log)):
            entry = log[i]
            if self._rescore_entry(entry, running) or i == new:
                rows.append(_with(entry.row, entry.vector))
            running.add(entry.inflow)
            self._mark(i + 1, running)
        self._total = running
        self.stale = None
        return rows

    # -- a compact form for Beam state ---------------------------------------------------
    def to_tuple(self) -> tuple:
        """The history as nested tuples of primitives; see :meth:`from_tuple`."""
        return (
            self.base.to_tuple(),
            tuple((e.stored_row(), e.produced, e.vector, e.emitted) for e in self.log),
            self.late,
            self.settled,
            self.stale,
        )

    @classmethod
    def from_tuple(cls, values: tuple) -> "CounterpartyHistory":
        """Inverse of :meth:`to_tuple`."""
        # A history saved before corrections waited for settle() has no stale key.
        base, log, late, settled, *stale = values
        history = cls.__new__(cls)
        history.base = InflowFeatures.from_tuple(base)
        history.log = [
            _Entry(AttributedTransaction.from_tuple(row), produced, tuple(vector), emitted, row)
            for row, produced, vector, emitted in log
        ]
        history.late = late
        history.settled = settled
        history.stale = tuple(stale[0]) if stale and stale[0] is not None else None
        history._total = None
        history._marks = []
        return history


def _with(row: AttributedTransaction, vector: tuple[float, ...]) -> AttributedTransaction:
    """The row with the counterparty features appended to the sender's."""
    return dataclasses.replace(row, features=row.features + vector)
