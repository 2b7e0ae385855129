"""The stateful step: join each transaction to its account and score it, in one DoFn per account.

Usage::

    attributed = (
        (accounts, transactions)   # PCollection[Account], PCollection[Transaction]
        | "AttributeTransactions" >> AttributeTransactions(lookup_factory, ttl=60)
    )  # PCollection[AttributedTransaction], scored; routing and validation decide the rest

One keyed stateful step does the LEFT JOIN, keeps the rolling features and scores (on Flink,
stateful steps never fuse: one step means one shuffle and one state commit per key and
bundle). The logic is the pure :class:`~pipeline.domain.attribution.AccountHistory`: rows leave
at once and are corrected when a late account version or an earlier transaction arrives, so
every transaction's final row is the same whatever order a run (or a replay) read the inputs in.
Element timestamps are the Kafka timestamps: when each record was produced.

The lookup factory protocol: ``lookup_factory`` is a picklable zero-argument callable shipped
to the workers and called once per DoFn instance in ``setup()``. It returns ``lookup(ids) ->
{account_id: Account}`` that leaves unknown ids out and raises
:class:`~pipeline.errors.LookupUnavailable` when its store is unreachable. It should cache.
If the returned lookup has a ``close()`` method, ``teardown()`` calls it.

Time: the TTL and the idle-state GC are event-time (watermark) timers, so a replay joins the
same way and a bounded run releases everything when its watermark reaches the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
from apache_beam.coders import Coder, FastPrimitivesCoder, TupleCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV, Tuple
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.domain.attribution import BEGINNING, AccountHistory, Scored
from pipeline.domain.scoring import is_suspicious
from pipeline.errors import LookupUnavailable
from pipeline.metrics import Counters
from pipeline.records import Account, AttributedTransaction, Transaction
from pipeline.transforms.coders import TransactionCoder
from pipeline.transforms.journal import Change, Journaled, load, record
from pipeline.transforms.journal import JournalCoder as _JournalCoder

__all__ = [
    "ACCOUNT",
    "TRANSACTION",
    "AttributeTransactions",
    "AttributeTransactionsFn",
    "HistoryCoder",
]

logger = logging.getLogger(__name__)

ACCOUNT = "account"
TRANSACTION = "transaction"
DEFAULT_TTL = timedelta(minutes=10)
DEFAULT_ACCOUNT_IDLE = timedelta(days=7)
DEFAULT_MAX_BUFFERED = 1000
# The GC timer is moved only when the idle deadline has moved this much: no timer per element.
GC_SLACK = Duration.of(3600)
_GC_SLACK_MICROS = GC_SLACK.micros
# A lookup that failed (the store unreachable) is tried this many more times, TTL apart,
# before the waiting transactions go on unjoined.
LOOKUP_RETRIES = 5


def keep_alive(state, deadline: int, gc) -> None:
    """Moves the GC timer to ``deadline`` (µs) when it has moved by GC_SLACK (or none is set);
    ``state.gc_at`` (µs) remembers where it is set. Plain integers: this runs for every
    element, and Beam's Timestamp arithmetic cost more than the rest of it."""
    if deadline > state.gc_at + _GC_SLACK_MICROS or not state.gc_at:
        state.gc_at = deadline
        gc.set(Timestamp(micros=deadline))


def arm_settle(state, settle) -> None:
    """Sets the SETTLE timer at ``state.settle_time`` (the history's, µs) unless one is set
    or nothing waits to settle; ``state.settle_at`` (µs, 0: not set) remembers it."""
    if not state.settle_at:
        at = state.settle_time
        if at is not None:
            state.settle_at = at
            settle.set(Timestamp(micros=at))


def timed_outputs(timed_rows: list, window, single: bool):
    """The rows of a keyed step's call, each at the production time (µs) of the input that
    led to it: ``timed_rows`` holds ``(rows, produced)`` per input of the element. With a
    ``single`` input the element's timestamp is already its time. Otherwise a WindowedValue
    in the element's window, not a TimestampedValue: Beam would assign each of those its
    window afresh (a GlobalWindow built per row, about 2 µs)."""
    if single:
        for rows, _ in timed_rows:
            yield from rows
        return
    windows = (window,)
    for rows, produced in timed_rows:
        at = Timestamp(micros=produced)
        for row in rows:
            yield WindowedValue(row, at, windows)


# An element of the step's input: ("account" | "transaction", ((produced_micros,
# record.to_tuple()), ...)): one account's records of one kind from one bundle, in read order.
Tagged = Tuple[str, Tuple[Any, ...]]
LookupFactory = Callable[[], Callable]


class _History(AccountHistory, Journaled):
    """An AccountHistory kept in a journal (:mod:`pipeline.transforms.journal`), with the
    step's bookkeeping of WAITING and its timers. ``pending``: the changes made in the current
    call, journaled when it ends (not stored)."""

    __slots__ = ("applied", "deadline", "gc_at", "lookups_failed", "pending", "settle_at",
                 "waiting")

    def __init__(self) -> None:
        super().__init__(hold_unsettled=True)
        self.waiting = 0  # transactions in WAITING (no account version yet)
        self.deadline = 0  # earliest expiry of those (µs), when waiting
        self.lookups_failed = 0  # failed lookups since the first one waited
        self.gc_at = 0  # where the GC timer is set (µs)
        self.settle_at = 0  # where the SETTLE timer is set (µs; 0: not set)
        self.applied = -1
        self.pending: list[tuple] = []

    def __sizeof__(self) -> int:
        return 1024 + 400 * (len(self.log) + len(self.versions))

    # -- the changes, each noted for the journal -------------------------------------------
    def take_version(self, produced: int, account: Account, values: tuple | None = None):
        """add_version, noted; ``values``: ``account.to_tuple()`` when the caller has it."""
        self.pending.append((ADD_VERSION, produced, values or account.to_tuple()))
        return self.add_version(produced, account)

    def take_transaction(self, produced: int, txn: Transaction, values: tuple | None = None):
        """add_transaction, noted; ``values``: ``txn.to_tuple()`` when the caller has it."""
        self.pending.append((ADD_TRANSACTION, produced, values or txn.to_tuple()))
        return self.add_transaction(produced, txn)

    def take_settle(self, watermark: int) -> None:
        self.pending.append((SETTLED, watermark, None))
        self.settle(watermark)

    # -- the journal's snapshot ------------------------------------------------------------
    def bookkeeping(self) -> tuple:
        return self.waiting, self.deadline, self.lookups_failed, self.gc_at, self.settle_at

    def snapshot(self) -> tuple:
        return (self.to_tuple(), *self.bookkeeping(), self.applied)

    @classmethod
    def from_snapshot(cls, values: tuple) -> "_History":
        history_values, *bookkeeping, applied = values
        return cls.restored(history_values, *bookkeeping, applied=applied)

    @classmethod
    def restored(cls, values: tuple, waiting: int, deadline: int, lookups_failed: int,
                 gc_at: int, settle_at: int = 0, applied: int = -1) -> "_History":
        history = cls.from_tuple(values)
        history.hold_unsettled = True
        history.waiting, history.deadline = waiting, deadline
        history.lookups_failed, history.gc_at, history.settle_at = lookups_failed, gc_at, settle_at
        history.applied, history.pending = applied, []
        return history


# What a change in an account's journal did, its two arguments, then the bookkeeping after
# it (waiting, deadline, lookups_failed, gc_at, settle_at).
ADD_VERSION = 1  # the version's production time (µs; BEGINNING from the lookup) and Account tuple
ADD_TRANSACTION = 2  # the transaction's production time (µs) and Transaction tuple
SETTLED = 3  # the watermark it settled at (µs), unused
BOOKKEEPING = 4  # only the bookkeeping moved (both unused)


class _Change(Change):
    """One change in an account's journal (the values above)."""

    __slots__ = ()
    RECORDS = frozenset((ADD_VERSION, ADD_TRANSACTION))

    def apply(self, history: _History) -> None:
        kind, first, second, *bookkeeping = self.values
        if kind == ADD_TRANSACTION:
            history.add_transaction(first, Transaction.from_tuple(second))
        elif kind == ADD_VERSION:
            history.add_version(first, Account.from_tuple(second))
        elif kind == SETTLED:
            history.settle(first)
        (history.waiting, history.deadline, history.lookups_failed, history.gc_at,
         history.settle_at) = bookkeeping


class JournalCoder(_JournalCoder):
    """The account journal's coder."""

    def __init__(self):
        super().__init__(_History, _Change)


class HistoryCoder(Coder):
    """Encodes a history as nested tuples of primitives (no pickling): the whole-history cell
    of an earlier version."""

    _TUPLES = FastPrimitivesCoder()

    def encode(self, history: _History) -> bytes:
        return self._TUPLES.encode((history.to_tuple(), *history.bookkeeping()))

    def decode(self, encoded: bytes) -> _History:
        # A history saved before the SETTLE timer existed has no settle_at.
        return _History.restored(*self._TUPLES.decode(encoded))

    def is_deterministic(self) -> bool:
        return True


def _seconds(value: timedelta | float, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AttributeTransactionsFn(beam.DoFn):
    """Joins, scores and corrects the transactions of one account (see the module docstring).

    Input: ``(account_id, (kind, ((produced, record.to_tuple()), ...)))`` with ``kind``
    "account" or "transaction" and ``produced`` the record's Kafka timestamp (µs): the records
    of one account and kind read in one bundle (:class:`_KeyAndGroupFn`), timestamped with the
    earliest of them. Each record is taken in turn, as if it had come alone, and its rows carry
    its own timestamp. Output:
    :class:`AttributedTransaction` (``validated_by="none"``) with the sender's features
    (:data:`~pipeline.domain.sender_features.SENDER_FEATURES`); ``correction`` is set on every
    row but the first of a transaction.

    State and timers (per account_id):
      JOURNAL: the account's :class:`AccountHistory` (versions, features, recent log) with the
        bookkeeping of WAITING and the timers, and the changes made to it since
        (:mod:`pipeline.transforms.journal`): a bundle appends the records it took.
      HISTORY: the whole history, as an earlier version kept it; moved into JOURNAL when
        next read.
      WAITING: ``(produced_micros, Transaction)`` of transactions that arrived before any
        version of their account; the lookup found none (or could not be asked).
      EXPIRY: event-time timer at the earliest deadline of WAITING (time + ttl): a lookup is
        tried again if it failed, else they go on unjoined (and are corrected when the
        account arrives).
      GC: event-time timer after ``account_idle`` without activity; it drops the state (the
        lookup fetches the account again when it reappears). It is moved only when the
        deadline has moved by GC_SLACK.
      SETTLE: event-time timer set when the log has grown past SETTLE_AFTER, just after its
        newest production time: when it fires, no account version produced before those
        transactions is still to come, and the log shrinks to LOG_SIZE
        (:meth:`~pipeline.domain.attribution.AccountHistory.settle`). Until then a transaction
        read far ahead of its account's versions stays correctable. One firing per
        SETTLE_AFTER - LOG_SIZE transactions of an account in steady traffic.
    """

    JOURNAL = BagStateSpec("journal", JournalCoder())
    HISTORY = ReadModifyWriteStateSpec("history", HistoryCoder())
    WAITING = BagStateSpec("waiting", TupleCoder((VarIntCoder(), TransactionCoder())))
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)
    GC = TimerSpec("gc", TimeDomain.WATERMARK)
    SETTLE = TimerSpec("settle", TimeDomain.WATERMARK)

    def __init__(
        self,
        lookup_factory: LookupFactory | None = None,
        ttl: timedelta | float = DEFAULT_TTL,
        account_idle: timedelta | float = DEFAULT_ACCOUNT_IDLE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        clock: Callable[[], datetime] | None = None,
        features: bool = True,
    ):
        self._lookup_factory = lookup_factory
        self._features = features
        self._ttl = Duration.of(_seconds(ttl, "ttl"))
        self._account_idle = Duration.of(_seconds(account_idle, "account_idle"))
        if self._account_idle <= self._ttl:
            raise ValueError("account_idle must be longer than ttl")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered!r}")
        self._max_buffered = max_buffered
        self._clock = clock or _utcnow
        self._lookup = None
        self._counters = Counters(
            "joined", "buffered", "expired_unjoined", "buffer_overflow", "lookup_hits",
            "lookup_misses", "lookup_errors", "accounts_evicted", "scored", "high_risk",
            "corrected", "late_beyond_log", "account_changes", "account_snapshots",
            "account_changes_replayed",
        )

    def setup(self):
        self._lookup = self._lookup_factory() if self._lookup_factory else None

    def start_bundle(self):
        self._counters.report_zero()

    def teardown(self):
        close = getattr(self._lookup, "close", None)
        if callable(close):
            close()

    def process(
        self,
        element: tuple[str, tuple[str, tuple]],
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
        window=beam.DoFn.WindowParam,
    ):
        account_id, (kind, records) = element
        history = self._load(journal, legacy) or self._new()
        late = history.late
        timed_rows = []  # (rows, produced) per record, in order
        for produced, values in records:
            rows = self._take(account_id, kind, produced, values, history, waiting, expiry)
            if rows:
                timed_rows.append((rows, produced))
        if history.late > late:
            self._counters.inc("late_beyond_log", history.late - late)
        newest = max(produced for produced, _ in records)
        keep_alive(history, newest + self._account_idle.micros, gc)
        arm_settle(history, settle)
        self._record(journal, history)
        yield from timed_outputs(timed_rows, window, single=len(records) == 1)

    def _take(self, account_id, kind, produced, values, history, waiting, expiry) -> list:
        """One record (an account version or a transaction) of the account: its rows."""
        if kind == ACCOUNT:
            rows = self._corrections(
                history.take_version(produced, Account.from_tuple(values), values)
            )
            if history.waiting:
                rows += self._release(history, waiting, expiry)
            return rows
        record = Transaction.from_tuple(values)
        if history.has_account:
            return self._rows(history.take_transaction(produced, record, values), joined=True)
        if not history.waiting and self._look_up(account_id, history):
            return self._rows(history.take_transaction(produced, record, values), joined=True)
        if history.waiting >= self._max_buffered:
            self._counters.inc("buffer_overflow")
            return self._rows(history.take_transaction(produced, record, values), joined=False)
        self._wait(history, produced, record, waiting, expiry)
        return []

    # -- the steps -----------------------------------------------------------------------
    def _look_up(self, account_id: str, history: _History) -> bool:
        """Asks the lookup for an account with no version in state; True if it found one."""
        if self._lookup is None:
            return False
        try:
            account = self._lookup([account_id]).get(account_id)
        except LookupUnavailable as exc:
            self._counters.inc("lookup_errors")
            history.lookups_failed += 1
            logger.warning("account lookup unavailable for %s: %s", account_id, exc)
            return False
        history.lookups_failed = 0
        self._counters.inc("lookup_hits" if account is not None else "lookup_misses")
        if account is None:
            return False
        history.take_version(BEGINNING, account)
        return True

    def _wait(self, history, produced, txn, waiting, expiry) -> None:
        deadline = produced + self._ttl.micros
        waiting.add((produced, txn))
        self._counters.inc("buffered")
        if not history.waiting or deadline < history.deadline:
            history.deadline = deadline
            expiry.set(Timestamp(micros=deadline))
        history.waiting += 1

    def _release(self, history: _History, waiting, expiry, joined: bool = True) -> list:
        """Adds every waiting transaction to the history (joined if it has an account now)."""
        rows = []
        for produced, txn in sorted(waiting.read(), key=lambda item: item[0]):
            rows += self._rows(history.take_transaction(produced, txn), joined=joined)
        waiting.clear()
        expiry.clear()
        history.waiting = history.deadline = history.lookups_failed = 0
        return rows

    def _release_expired(self, history: _History, fired: Timestamp, waiting, expiry) -> list:
        """Sends the waiting transactions whose deadline has passed on unjoined; the others
        keep waiting, under a timer at the earliest of their deadlines."""
        ttl = self._ttl.micros
        items = sorted(waiting.read(), key=lambda item: item[0])
        expired = [item for item in items if item[0] + ttl <= fired.micros]
        kept = items[len(expired):]
        rows = []
        for produced, txn in expired:
            rows += self._rows(history.take_transaction(produced, txn), joined=False)
        waiting.clear()
        for item in kept:
            waiting.add(item)
        history.waiting = len(kept)
        history.lookups_failed = 0
        if kept:
            history.deadline = kept[0][0] + ttl
            expiry.set(Timestamp(micros=history.deadline))
        else:
            history.deadline = 0
        return rows

    # -- rows ----------------------------------------------------------------------------
    def _rows(self, scored: list[Scored], joined: bool) -> list[AttributedTransaction]:
        """The first row of a transaction (the first of ``scored``) and any corrections."""
        if not scored:
            return []
        self._counters.inc("joined" if joined else "expired_unjoined")
        self._counters.inc("scored")
        if is_suspicious(scored[0].risk_score):
            self._counters.inc("high_risk")
        if len(scored) > 1:
            self._counters.inc("corrected", len(scored) - 1)
        return [self._attributed(row, correction=i > 0) for i, row in enumerate(scored)]

    def _corrections(self, scored: list[Scored]) -> list[AttributedTransaction]:
        if scored:
            self._counters.inc("corrected", len(scored))
        return [self._attributed(row, correction=True) for row in scored]

    def _attributed(self, row: Scored, correction: bool) -> AttributedTransaction:
        return AttributedTransaction(
            transaction=row.transaction,
            account_name=row.account.account_name if row.account is not None else None,
            risk_score=row.risk_score,
            risk_reasons=row.risk_reasons,
            is_fraudulent=False,
            validated_by="none",
            processed_at=self._clock(),
            account=row.account,
            features=row.features,
            correction=correction,
        )

    # -- timers --------------------------------------------------------------------------
    @on_timer(EXPIRY)
    def _on_expiry(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        history = self._load(journal, legacy)
        if history is None or not history.waiting:
            return
        if 0 < history.lookups_failed <= LOOKUP_RETRIES:
            # The store was unreachable: ask again before anything goes on unjoined.
            self._look_up(key, history)
            if 0 < history.lookups_failed <= LOOKUP_RETRIES:
                history.deadline = (fired + self._ttl).micros
                expiry.set(Timestamp(micros=history.deadline))
                self._record(journal, history)
                return
        if history.has_account:
            rows = self._release(history, waiting, expiry)
        else:
            rows = self._release_expired(history, fired, waiting, expiry)
        self._record(journal, history)
        yield from rows

    @on_timer(SETTLE)
    def _on_settle(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        """The watermark passed the log's newest transaction: it may shrink (no row changes);
        the timer is armed again if transactions produced since still wait."""
        history = self._load(journal, legacy)
        if history is None:
            return  # dropped by GC meanwhile
        history.settle_at = 0
        history.take_settle(fired.micros)
        arm_settle(history, settle)
        self._record(journal, history)

    @on_timer(GC)
    def _on_gc(
        self,
        fired=beam.DoFn.TimestampParam,
        journal=beam.DoFn.StateParam(JOURNAL),
        legacy=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
    ):
        history = self._load(journal, legacy)
        if history is None:
            return
        if history.waiting:  # the expiry comes first; look again later
            gc.set(fired + self._ttl)
            return
        self._counters.inc("accounts_evicted")
        journal.clear()

    # -- the journal ---------------------------------------------------------------------
    def _new(self) -> _History:
        history = _History()
        history.with_features = self._features
        return history

    def _prepare(self, history: _History) -> None:
        history.with_features = self._features  # before changes are replayed: rows depend on it
        history.pending = []

    def _load(self, journal, legacy) -> _History | None:
        history, replayed = load(journal, legacy, self._prepare)
        if replayed:  # read back from the runner: after a restart, or evicted from the cache
            self._counters.inc("account_changes_replayed", replayed)
        return history

    def _record(self, journal, history: _History) -> None:
        """Journals the changes the call made (or, if none, its bookkeeping), each with the
        bookkeeping as the call leaves it."""
        bookkeeping = history.bookkeeping()
        changes = history.pending or [(BOOKKEEPING, None, None)]
        snapshots = 0
        for change in changes:
            snapshots += record(journal, history, _Change((*change, *bookkeeping)))
        history.pending = []
        self._counters.inc("account_changes", len(changes) - snapshots)
        if snapshots:
            self._counters.inc("account_snapshots", snapshots)


class _KeyAndGroupFn(beam.DoFn):
    """Keys records of one kind by account and hands on each account's records of a bundle
    together: ``(account_id, (kind, ((produced, record.to_tuple()), ...)))``, timestamped with
    the earliest of them, at the bundle's end.

    The stateful step then runs once per account and bundle rather than once per record: Beam's
    work per call of a stateful step (the shuffle's decoding, its state and timer parameters, a
    state read and write) was a large part of its cost (docs/flink-notes.md). Records leave
    the reading stage at its bundle's end anyway (on Flink, and on the FnApiRunner, which runs
    a stage to its end), so holding them until then delays nothing. Tuples of primitives: the
    shuffle encodes them without pickling.
    """

    def __init__(self, kind: str):
        self._kind = kind
        self._groups: dict = {}

    def start_bundle(self):
        self._groups = {}

    def process(self, record, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        produced = timestamp.micros
        key = (record.account_id, window)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = group = [produced, []]  # [earliest, records]
        elif produced < group[0]:
            group[0] = produced
        group[1].append((produced, record.to_tuple()))

    def finish_bundle(self):
        kind, groups = self._kind, self._groups
        self._groups = {}
        for (account_id, window), (earliest, records) in groups.items():
            yield WindowedValue(
                (account_id, (kind, tuple(records))), Timestamp(micros=earliest), (window,)
            )


class AttributeTransactions(beam.PTransform):
    """``(accounts, transactions)`` → scored AttributedTransactions, per account_id.

    ``accounts`` is a PCollection of Account, or a tuple of them (one per source).

    Args:
      lookup_factory: builds the account lookup on each worker (see the module docstring);
        None joins from the accounts topic alone.
      ttl: how long (event time) a transaction with no account waits for one before it goes
        on unjoined (it is corrected if the account arrives later).
      account_idle: how long (event time) without activity before an account's state (its
        versions and history) is dropped; must exceed ttl.
      max_buffered: transactions waiting per account; beyond, they go on unjoined at once.
      clock: returns ``processed_at``; defaults to the UTC clock.
      features: whether rows carry the sender's features (for the fraud model); without, the
        step does not compute them, rows leave with none, and a row is emitted again only
        when what it shows changes.
    """

    def __init__(
        self,
        lookup_factory: LookupFactory | None = None,
        ttl: timedelta | float = DEFAULT_TTL,
        account_idle: timedelta | float = DEFAULT_ACCOUNT_IDLE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        clock: Callable[[], datetime] | None = None,
        features: bool = True,
    ):
        super().__init__()
        if lookup_factory is not None and not callable(lookup_factory):
            raise ValueError(f"lookup_factory must be callable, got {lookup_factory!r}")
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        # Built here so that bad arguments fail at construction, not at expansion.
        self._fn = AttributeTransactionsFn(
            lookup_factory, ttl, account_idle, max_buffered, clock, features
        )

    def expand(self, records):
        accounts, transactions = records
        if isinstance(accounts, beam.PCollection):
            accounts = (accounts,)
        # Each source keyed on its own and all of them flattened once: a Flatten of sources
        # from different stages is a barrier on the FnApiRunner, so flattening the account
        # sources first held every account version until the transactions topic was read.
        keyed = [
            source | ("KeyAccounts" if i == 0 else f"KeyAccounts{i}") >> beam.ParDo(
                _KeyAndGroupFn(ACCOUNT)).with_output_types(KV[str, Tagged])
            for i, source in enumerate(accounts)
        ]
        keyed.append(transactions | "KeyTransactions" >> beam.ParDo(
            _KeyAndGroupFn(TRANSACTION)).with_output_types(KV[str, Tagged]))
        return (
            keyed
            | "Union" >> beam.Flatten().with_output_types(KV[str, Tagged])
            | "JoinAndScore" >> beam.ParDo(self._fn).with_output_types(AttributedTransaction)
        )

