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
    """Joins each transaction to the latest account seen for its key (a LEFT JOIN).

    Input: ``(account_id, (ACCOUNT, Account))`` or ``(account_id, (TRANSACTION,
    Transaction))``. Output: :class:`JoinedTransaction`.

    State and timers (per account_id):
      ACCOUNT: ReadModifyWriteStateSpec, the latest Account (from the topic or the lookup).
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
        if kind == ACCOUNT:
            account_state.write(record)
            yield from self._release(record, buffer, pending, expiry)
            return
        account = account_state.read()
        if account is None and pending.read() is None:
            account = self._look_up(account_id)
            if account is not None:
                account_state.write(account)
        if account is not None:
            self._count("joined")
            yield JoinedTransaction(record, account)
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

    def _release(self, account: Account, buffer, pending, expiry):
        """Emits every buffered transaction joined to the account that just arrived."""
        if pending.read() is None:
            return
        waiting = [txn for _, txn in buffer.read()]
        buffer.clear()
        pending.clear()
        expiry.clear()
        self._count("joined", len(waiting))
        for txn in waiting:
            yield JoinedTransaction(txn, account)

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
