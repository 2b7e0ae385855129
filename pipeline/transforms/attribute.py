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
from apache_beam.runners.worker.statecache import CacheAware
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV, Tuple
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline.domain.attribution import BEGINNING, AccountHistory, Scored
from pipeline.domain.scoring import is_suspicious
from pipeline.errors import LookupUnavailable
from pipeline.metrics import Counters
from pipeline.records import Account, AttributedTransaction, Transaction
from pipeline.transforms.coders import TransactionCoder
from pipeline.transforms.grouping import PerKeyOfBundle

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


def settle_fired(history_state, fired: Timestamp, settle) -> list:
    """The SETTLE timer fired at ``fired``: settles the history and arms the timer again if
    inputs produced since still wait. Returns the rows the history's ``settle()`` returns
    (none for an account)."""
    history = history_state.read()
    if history is None:
        return []  # dropped by GC meanwhile
    history.settle_at = 0
    rows = history.settle(fired.micros) or []
    arm_settle(history, settle)
    history_state.write(history)
    return rows


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
        for row in rows:
            yield windowed_value.create(row, produced, windows)


# An element of the step's input: ("account" | "transaction", ((produced_micros,
# record.to_tuple()), ...)): one account's records of one kind from one bundle, in read order.
Tagged = Tuple[str, Tuple[Any, ...]]
LookupFactory = Callable[[], Callable]


class _History(AccountHistory, CacheAware):
    """An AccountHistory that Beam's state cache weighs by an estimate, not by walking it
    (measuring every object of a history on each write would cost more than the step)."""

    __slots__ = ("deadline", "gc_at", "lookups_failed", "settle_at", "waiting")

    def __init__(self) -> None:
        super().__init__(hold_unsettled=True)
        self.waiting = 0  # transactions in WAITING (no account version yet)
        self.deadline = 0  # earliest expiry of those (µs), when waiting
        self.lookups_failed = 0  # failed lookups since the first one waited
        self.gc_at = 0  # where the GC timer is set (µs)
        self.settle_at = 0  # where the SETTLE timer is set (µs; 0: not set)

    def get_referents_for_cache(self) -> list:
        return []

    def __sizeof__(self) -> int:
        return 1024 + 400 * (len(self.log) + len(self.versions))


class HistoryCoder(Coder):
    """Encodes a history as nested tuples of primitives (no pickling)."""

    _TUPLES = FastPrimitivesCoder()

    def encode(self, history: _History) -> bytes:
        return self._TUPLES.encode((
            history.to_tuple(), history.waiting, history.deadline, history.lookups_failed,
            history.gc_at, history.settle_at,
        ))

    def decode(self, encoded: bytes) -> _History:
        # A history saved before the SETTLE timer existed has no settle_at.
        values, waiting, deadline, lookups_failed, gc_at, *settle_at = self._TUPLES.decode(
            encoded
        )
        history = _History.from_tuple(values)
        history.hold_unsettled = True
        history.waiting, history.deadline = waiting, deadline
        history.lookups_failed, history.gc_at = lookups_failed, gc_at
        history.settle_at = settle_at[0] if settle_at else 0
        return history

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
      HISTORY: the account's :class:`AccountHistory` (versions, features, recent log) plus the
        bookkeeping of WAITING and GC, in one compact value: one state write per key and bundle.
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
            "corrected", "late_beyond_log",
        )

    def setup(self):
        self._lookup = self._lookup_factory() if self._lookup_factory else None

    def start_bundle(self):
        self._counters.report_zero()

    def finish_bundle(self):
        self._counters.flush()

    def teardown(self):
        close = getattr(self._lookup, "close", None)
        if callable(close):
            close()

    def process(
        self,
        element: tuple[str, tuple[str, tuple]],
        history_state=beam.DoFn.StateParam(HISTORY),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
        gc=beam.DoFn.TimerParam(GC),
        settle=beam.DoFn.TimerParam(SETTLE),
        window=beam.DoFn.WindowParam,
    ):
        account_id, (kind, records) = element
        history = history_state.read() or _History()
        history.with_features = self._features
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
        history_state.write(history)
        yield from timed_outputs(timed_rows, window, single=len(records) == 1)

    def _take(self, account_id, kind, produced, values, history, waiting, expiry) -> list:
        """One record (an account version or a transaction) of the account: its rows."""
        if kind == ACCOUNT:
            rows = self._corrections(history.add_version(produced, Account.from_tuple(values)))
            if history.waiting:
                rows += self._release(history, waiting, expiry)
            return rows
        record = Transaction.from_tuple(values)
        if history.has_account:
            return self._rows(history.add_transaction(produced, record, values), joined=True)
        if not history.waiting and self._look_up(account_id, history):
            return self._rows(history.add_transaction(produced, record, values), joined=True)
        if history.waiting >= self._max_buffered:
            self._counters.inc("buffer_overflow")
            return self._rows(history.add_transaction(produced, record, values), joined=False)
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
        history.add_version(BEGINNING, account)
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
            rows += self._rows(history.add_transaction(produced, txn), joined=joined)
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
            rows += self._rows(history.add_transaction(produced, txn), joined=False)
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
        history_state=beam.DoFn.StateParam(HISTORY),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        history = history_state.read()
        if history is None or not history.waiting:
            return
        history.with_features = self._features
        if 0 < history.lookups_failed <= LOOKUP_RETRIES:
            # The store was unreachable: ask again before anything goes on unjoined.
            self._look_up(key, history)
            if 0 < history.lookups_failed <= LOOKUP_RETRIES:
                history.deadline = (fired + self._ttl).micros
                expiry.set(Timestamp(micros=history.deadline))
                history_state.write(history)
                return
        if history.has_account:
            rows = self._release(history, waiting, expiry)
        else:
            rows = self._release_expired(history, fired, waiting, expiry)
        history_state.write(history)
        yield from rows

    @on_timer(SETTLE)
    def _on_settle(
        self,
        fired=beam.DoFn.TimestampParam,
        history_state=beam.DoFn.StateParam(HISTORY),
        settle=beam.DoFn.TimerParam(SETTLE),
    ):
        settle_fired(history_state, fired, settle)

    @on_timer(GC)
    def _on_gc(
        self,
        fired=beam.DoFn.TimestampParam,
        history_state=beam.DoFn.StateParam(HISTORY),
        gc=beam.DoFn.TimerParam(GC),
    ):
        history = history_state.read()
        if history is None:
            return
        history.with_features = self._features
        if history.waiting:  # the expiry comes first; look again later
            gc.set(fired + self._ttl)
            return
        self._counters.inc("accounts_evicted")
        history_state.clear()


class _KeyAndGroupFn(PerKeyOfBundle):
    """Keys records of one kind by account and hands on each account's records of a bundle
    together: ``(account_id, (kind, ((produced, record.to_tuple()), ...)))``, timestamped with
    the earliest of them, at the bundle's end (:mod:`pipeline.transforms.grouping`).

    The stateful step then runs once per account and bundle rather than once per record.
    Records leave the reading stage at its bundle's end anyway (on Flink, and on the
    FnApiRunner, which runs a stage to its end), so holding them until then delays nothing.
    """

    def __init__(self, kind: str):
        self._kind = kind

    def key(self, record):
        return record.account_id

    def group(self, entries: list):
        return self._kind, tuple(entries)


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

