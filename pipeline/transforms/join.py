"""The stateful LEFT JOIN of transactions to their accounts, per account_id.

Usage::

    joined = (
        (accounts | "KeyAccounts" >> beam.WithKeys(lambda a: a.account_id),
         transactions | "KeyTransactions" >> beam.WithKeys(lambda t: t.account_id))
        | "JoinWithAccounts" >> JoinWithAccounts(lookup_factory, ttl=timedelta(minutes=10))
    )  # PCollection[JoinedTransaction]

The lookup factory protocol: ``lookup_factory`` is a picklable zero-argument callable
(:class:`LookupFactory`) shipped to the workers and called once per DoFn instance in
``setup()``. It returns an :data:`AccountLookup`: ``lookup(account_ids) -> {account_id:
Account}`` that leaves unknown ids out of the result and raises
:class:`~pipeline.errors.LookupUnavailable` when its store is unreachable (the join then
treats the account as not found for now). It should cache. If the returned lookup has a
``close()`` method, ``teardown()`` calls it.

Time: the TTL and the idle-state GC are event-time (watermark) timers. That is
deterministic (a replay joins the same way), testable with TestStream, and a bounded
run (DirectRunner on a slice of the topics) releases every buffered transaction when
its watermark reaches the end. The price: a stalled watermark stalls the release, so the
Kafka source must advance the watermark of idle partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder, TupleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV, Tuple
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline.errors import LookupUnavailable
from pipeline.records import Account, Transaction

__all__ = [
    "ACCOUNT",
    "TRANSACTION",
    "AccountLookup",
    "JoinAccountTransactionsFn",
    "JoinWithAccounts",
    "JoinedTransaction",
    "LookupFactory",
]

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "riskpipe"
ACCOUNT = "account"
TRANSACTION = "transaction"
DEFAULT_TTL = timedelta(minutes=10)
DEFAULT_ACCOUNT_IDLE = timedelta(days=1)
DEFAULT_MAX_BUFFERED = 1000
MAX_VERSIONS = 4  # account versions kept per account (the newest ones)
_BEGINNING = -(2**62)  # the time of a version from the lookup: valid from the start

AccountLookup = Callable[[Sequence[str]], Mapping[str, Account]]
# An element of the join's input: ("account", Account) or ("transaction", Transaction).
Tagged = Tuple[str, Account | Transaction]


class LookupFactory(Protocol):
    """Builds an AccountLookup on a worker; must be picklable."""

    def __call__(self) -> AccountLookup: ...


@dataclass(frozen=True)
class JoinedTransaction:
    """A transaction and its account, or None when the LEFT JOIN found no account."""

    transaction: Transaction
    account: Account | None


def _seconds(value: timedelta | float, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


class JoinAccountTransactionsFn(beam.DoFn):
    """Joins each transaction to its account as of the transaction's time (a LEFT JOIN).

    Input: ``(account_id, (ACCOUNT, Account))`` or ``(account_id, (TRANSACTION,
    Transaction))``, timestamped (the Kafka timestamps: when each was produced). Output:
    :class:`JoinedTransaction`. A transaction gets the newest account version produced at or
    before it (the oldest version kept, if all are newer), so a replay after a restore, whose
    account updates may be read before the transactions that preceded them, attributes every
    transaction as the first run did.

    State and timers (per account_id):
      ACCOUNT: ReadModifyWriteStateSpec, the last MAX_VERSIONS versions as a tuple of
        ``(timestamp_micros, Account)`` by time; one from the lookup counts from the start.
      BUFFER: BagStateSpec of ``(deadline_micros, Transaction)`` waiting for their account.
      PENDING: ReadModifyWriteStateSpec ``(earliest_deadline_micros, count)`` of BUFFER,
        or empty when nothing waits; while set, the lookup is not asked again.
      EXPIRY: event-time timer at the earliest deadline (element time + ttl); it emits
        the expired transactions with account None and re-arms for the rest.
      GC: event-time timer at the last element time + account_idle; it drops ACCOUNT
        (the lookup fetches it again when the account reappears).
    """

    ACCOUNT = ReadModifyWriteStateSpec("account", FastPrimitivesCoder())
    BUFFER = BagStateSpec("buffer", TupleCoder((VarIntCoder(), FastPrimitivesCoder())))
    PENDING = ReadModifyWriteStateSpec("pending", TupleCoder((VarIntCoder(), VarIntCoder())))
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)
    GC = TimerSpec("gc", TimeDomain.WATERMARK)

    def __init__(
        self,
        lookup_factory: LookupFactory | None = None,
        ttl: timedelta | float = DEFAULT_TTL,
        account_idle: timedelta | float = DEFAULT_ACCOUNT_IDLE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ):
        self._lookup_factory = lookup_factory
        self._ttl = Duration.of(_seconds(ttl, "ttl"))
        self._account_idle = Duration.of(_seconds(account_idle, "account_idle"))
        if self._account_idle <= self._ttl:
            raise ValueError("account_idle must be longer than ttl")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered!r}")
        self._max_buffered = max_buffered
        self._lookup: AccountLookup | None = None
        self._counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name)
            for name in (
                "joined",
                "buffered",
                "expired_unjoined",
                "buffer_overflow",
                "lookup_hits",
                "lookup_misses",
                "lookup_errors",
                "accounts_evicted",
            )
        }

    def setup(self):
        self._lookup = self._lookup_factory() if self._lookup_factory else None

    def start_bundle(self):
        # Report every counter from the first bundle on (at 0), so dashboards and
        # alerts see a zero instead of no series before the first event.
        for counter in self._counters.values():
            counter.inc(0)

    def teardown(self):
        close = getattr(self._lookup, "close", None)
        if callable(close):
            close()

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name].inc(n)

    def process(
        self,
        element: tuple[str, tuple[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        account_state=beam.DoFn.StateParam(ACCOUNT),
        buffer=beam.DoFn.StateParam(BUFFER),
        pending=beam.DoFn.StateParam(PENDING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
        gc=beam.DoFn.TimerParam(GC),
    ):
        account_id, (kind, record) = element
        gc.set(timestamp + self._account_idle)
        versions = _versions(account_state.read())
        if kind == ACCOUNT:
            versions = _with_version(versions, timestamp.micros, record)
            account_state.write(versions)
            yield from self._release(versions, buffer, pending, expiry)
            return
        if not versions and pending.read() is None:
            account = self._look_up(account_id)
            if account is not None:
                versions = ((_BEGINNING, account),)
                account_state.write(versions)
        if versions:
            self._count("joined")
            yield JoinedTransaction(record, _version_at(versions, timestamp.micros))
        else:
            yield from self._buffer(record, timestamp, buffer, pending, expiry)

    def _look_up(self, account_id: str) -> Account | None:
        if self._lookup is None:
            return None
        try:
            account = self._lookup([account_id]).get(account_id)
        except LookupUnavailable as exc:
            self._count("lookup_errors")
            logger.warning("account lookup unavailable for %s: %s", account_id, exc)
            return None
        self._count("lookup_hits" if account is not None else "lookup_misses")
        return account

    def _release(self, versions, buffer, pending, expiry):
        """Emits every buffered transaction joined to its version of the account that
        just arrived."""
        if pending.read() is None:
            return
        waiting = list(buffer.read())
        buffer.clear()
        pending.clear()
        expiry.clear()
        self._count("joined", len(waiting))
        for deadline, txn in waiting:
            produced = deadline - self._ttl.micros  # the buffer keeps its deadline
            yield JoinedTransaction(txn, _version_at(versions, produced))

    def _buffer(self, txn: Transaction, timestamp: Timestamp, buffer, pending, expiry):
        """Buffers a transaction until its deadline, or emits it unjoined if BUFFER is full."""
        earliest, count = pending.read() or (None, 0)
        if count >= self._max_buffered:
            self._count("buffer_overflow")
            yield JoinedTransaction(txn, None)
            return
        deadline = (timestamp + self._ttl).micros
        buffer.add((deadline, txn))
        self._count("buffered")
        if earliest is None or deadline < earliest:
            earliest = deadline
            expiry.set(Timestamp(micros=deadline))
        pending.write((earliest, count + 1))

    @on_timer(EXPIRY)
    def _on_expiry(
        self,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        pending=beam.DoFn.StateParam(PENDING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        waiting = list(buffer.read())
        expired = [txn for deadline, txn in waiting if deadline <= fired.micros]
        kept = [entry for entry in waiting if entry[0] > fired.micros]
        buffer.clear()
        for entry in kept:
            buffer.add(entry)
        if kept:
            earliest = min(deadline for deadline, _ in kept)
            expiry.set(Timestamp(micros=earliest))
            pending.write((earliest, len(kept)))
        else:
            pending.clear()
        self._count("expired_unjoined", len(expired))
        for txn in expired:
            yield JoinedTransaction(txn, None)

    @on_timer(GC)
    def _on_gc(self, account_state=beam.DoFn.StateParam(ACCOUNT)):
        if account_state.read() is not None:
            self._count("accounts_evicted")
        account_state.clear()


def _versions(stored) -> tuple:
    """ACCOUNT state as versions; state written before versions were kept held an Account."""
    if stored is None:
        return ()
    if isinstance(stored, Account):
        return ((_BEGINNING, stored),)
    return tuple(stored)


def _with_version(versions: tuple, micros: int, account: Account) -> tuple:
    """``versions`` plus ``(micros, account)`` in time order (a repeat is kept once), trimmed
    to the newest MAX_VERSIONS."""
    if (micros, account) in versions:
        return versions
    merged = sorted((*versions, (micros, account)), key=lambda version: version[0])
    return tuple(merged[-MAX_VERSIONS:])


def _version_at(versions: tuple, micros: int) -> Account:
    """The newest version at or before ``micros``; the oldest one if all are newer."""
    chosen = versions[0][1]
    for at, account in versions:
        if at > micros:
            break
        chosen = account
    return chosen


def _tag(kind: str):
    def tag(keyed: tuple[str, Any]) -> tuple[str, tuple[str, Any]]:
        account_id, record = keyed
        return account_id, (kind, record)

    return tag


class JoinWithAccounts(beam.PTransform):
    """``(accounts, transactions)``, both keyed by account_id → JoinedTransaction.

    Args:
      lookup_factory: builds the account lookup on each worker (see module docstring);
        None joins from the accounts topic alone.
      ttl: how long (event time) a transaction waits for its account before it is
        emitted with account None.
      account_idle: how long (event time) without activity before an account's state is
        dropped; must exceed ttl.
      max_buffered: transactions buffered per account; beyond, they go out unjoined.
    """

    def __init__(
        self,
        lookup_factory: LookupFactory | None = None,
        ttl: timedelta | float = DEFAULT_TTL,
        account_idle: timedelta | float = DEFAULT_ACCOUNT_IDLE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ):
        super().__init__()
        if lookup_factory is not None and not callable(lookup_factory):
            raise ValueError(f"lookup_factory must be callable, got {lookup_factory!r}")
        # Built here so that bad arguments fail at construction, not at expansion.
        self._fn = JoinAccountTransactionsFn(lookup_factory, ttl, account_idle, max_buffered)

    def expand(self, keyed):
        accounts, transactions = keyed
        return (
            (
                accounts | "TagAccounts" >> beam.Map(_tag(ACCOUNT)),
                transactions | "TagTransactions" >> beam.Map(_tag(TRANSACTION)),
            )
            | "Union" >> beam.Flatten().with_output_types(KV[str, Tagged])
            | "Join" >> beam.ParDo(self._fn).with_output_types(JoinedTransaction)
        )
