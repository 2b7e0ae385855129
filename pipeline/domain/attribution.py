"""One account's history: its transactions attributed and scored in event-time order, exactly.

An :class:`AccountHistory` holds what riskpipe knows of one account: the last few versions of
the account record (with the Kafka timestamp each was produced at), the features of its older
transactions, and a log of its newest transactions kept whole. It is pure Python; the join's
DoFn (:mod:`pipeline.transforms.attribute`) keeps one per account in Beam state.

Rows are emitted at once and **corrected**, so that the final row of every transaction is the
same whatever order the inputs were read in (a replay after a crash, two topics read at
different speeds, an unkeyed producer whose records of one account sit in several partitions):

- a transaction gets the account version produced at or before it (by Kafka timestamps; the
  oldest version when all are newer; a version found by the lookup in PostgreSQL only until
  the topic's own versions arrive), and its score uses the features of the account's
  transactions *earlier in event time* (``datetime_occurred``, then ``transaction_id``), never
  those that merely arrived earlier;
- when an account version arrives after transactions it applies to, or a transaction arrives
  after later ones, every logged transaction whose row changes is emitted again.

Exactness holds within the log: the newest :data:`LOG_SIZE` transactions per account (up to
:data:`PROVISIONAL_LOG_SIZE` while the account's topic has given no version yet), and, when
the owner holds unsettled transactions (``hold_unsettled``, the job's account step), every
transaction the watermark has not passed yet (:meth:`AccountHistory.settle`), up to
:data:`PROVISIONAL_LOG_SIZE`: a whole backlog read from one topic ahead of the other is
still corrected. An input older than all of them (``late`` in the counters) is scored against
what is known and counted.

>>> from datetime import UTC, datetime
>>> from pipeline.records import Account, Transaction
>>> def txn(i, minute):
...     return Transaction(f"t{i}", "a1", None, "payment", 40.0, "EUR", "completed",
...                        datetime(2026, 3, 2, 14, minute, tzinfo=UTC), None, "cleared")
>>> history = AccountHistory()
>>> [row.account for row in history.add_transaction(100, txn(1, 0))]
[None]
>>> [(row.transaction.transaction_id, row.account.account_name)
...  for row in history.add_version(50, Account("a1", "Ada"))]
[('t1', 'Ada')]
>>> history.add_version(50, Account("a1", "Ada"))  # a repeat changes nothing
[]
"""

from __future__ import annotations

import bisect
import functools
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pipeline.domain.account_features import AccountFeatures, facts
from pipeline.domain.scoring import score_transaction
from pipeline.domain.sender_features import sender_vector
from pipeline.records import Account, Transaction

__all__ = ["LOG_SIZE", "MAX_VERSIONS", "SETTLE_AFTER", "AccountHistory", "Scored", "order_key"]

MAX_VERSIONS = 4  # account versions kept per account (the newest ones)
LOG_SIZE = 32  # transactions kept whole per account; older ones live on in the features
# While an account has no version from its topic yet (none at all, or only the lookup's stand-in),
# its rows are provisional: the log keeps up to this many, so that the first real version can
# still correct them even when a whole backlog of transactions was read before the accounts.
PROVISIONAL_LOG_SIZE = 1024
# An owner that holds unsettled transactions asks for settle() once its log has grown past this:
# once per LOG_SIZE // 2 transactions of an account in steady traffic, not per transaction.
SETTLE_AFTER = LOG_SIZE + LOG_SIZE // 2
BEGINNING = -(2**62)  # the production time of a version from the lookup: valid from the start
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Scored(NamedTuple):
    """A transaction, the account version it belongs to (None: unknown), its rules' score
    and reasons, and its :data:`~pipeline.domain.sender_features.SENDER_FEATURES`."""

    transaction: Transaction
    account: Account | None
    risk_score: int
    risk_reasons: tuple[str, ...]
    features: tuple[float, ...] = ()


def order_key(txn: Transaction) -> tuple[int, str]:
    """Event-time order: ``datetime_occurred`` in microseconds, then the transaction id."""
    return (txn.datetime_occurred - _EPOCH) // _MICROSECOND, txn.transaction_id


def _account_signature(account: Account | None, whole: bool) -> int:
    if account is None:
        return 0
    return _fields_signature(account) if whole else _name_signature(account.account_name)


@functools.lru_cache(maxsize=4096)
def _fields_signature(account: Account) -> int:
    return zlib.crc32(repr(account.to_tuple()).encode())


@functools.lru_cache(maxsize=4096)
def _name_signature(name: str | None) -> int:
    # Cached by the name alone: hashing and comparing the whole Account for the cache cost
    # more than the checksum it saves.
    return zlib.crc32(repr(name).encode())


def _signature(account: Account | None, score: int, reasons: tuple[str, ...],
               features: tuple[float, ...], whole_account: bool) -> int:
    """A stable checksum of what a row shows and carries on (not ``hash()``: that is salted
    per process). With the sender's features the account counts whole (its fields reach the
    features); without, only its name is shown."""
    shown = struct.pack(f"<iI{len(features)}d", score,
                        _account_signature(account, whole_account), *features)
    return zlib.crc32("\x1f".join(reasons).encode(), zlib.crc32(shown))


def _version_order(version: tuple[int, Account]) -> tuple[int, str]:
    """Versions by production time; of two produced in the same microsecond, the one whose
    fields sort last counts as the newer (any fixed rule will do: it must not depend on
    which was read first)."""
    produced, account = version
    return produced, repr(account.to_tuple())


def _version_at(versions: list, produced: int) -> Account | None:
    """The newest version produced at or before ``produced``; the oldest one if all are newer."""
    if not versions:
        return None
    chosen = versions[0][1]
    for at, account in versions:
        if at > produced:
            break
        chosen = account
    return chosen


class _Entry:
    """A logged transaction: its order key, when it was produced, what the features keep of
    it (:func:`~pipeline.domain.scoring.facts`) and a signature of the row last emitted."""

    __slots__ = ("emitted", "facts", "key", "produced", "txn", "txn_tuple")

    def __init__(self, produced: int, txn: Transaction, emitted: int = -1,
                 txn_tuple: tuple | None = None):
        self.key = order_key(txn)
        self.produced = produced
        self.txn = txn
        self.txn_tuple = txn_tuple  # txn.to_tuple(), made once (state is written per bundle)
        self.facts = facts(txn)
        self.emitted = emitted

    def stored_txn(self) -> tuple:
        """``txn.to_tuple()``, made once."""
        if self.txn_tuple is None:
            self.txn_tuple = self.txn.to_tuple()
        return self.txn_tuple


class AccountHistory:
    """Account versions, the features of older transactions, and a log of the newest ones.

    Attributes:
      versions: ``[(produced_micros, Account)]`` by production time, at most MAX_VERSIONS.
      base: features of the transactions that left the log (all older than the logged ones).
      log: the newest transactions by event time, at most LOG_SIZE.
      late: how many inputs arrived too late to be placed exactly: a transaction older than
        the log, or an account version produced before a transaction already in ``base``.
      base_produced: the newest production time among the transactions in ``base``.
      settled_to: the newest watermark given to :meth:`settle` (µs): nothing produced before
        it is still to come.
      with_features: whether rows carry the sender's features (a fraud model reads them);
        without, ``Scored.features`` is empty and a row is emitted again only when what it
        shows changes. Not part of the state: its owner sets it.
      hold_unsettled: whether the log keeps, past LOG_SIZE, the transactions produced at or
        after ``settled_to`` (an account version produced before them may still come); the
        owner then calls :meth:`settle` as the watermark moves. Not part of the state.
    """

    __slots__ = (
        "_newest", "_total", "base", "base_produced", "hold_unsettled", "late", "log",
        "settled_to", "versions", "with_features",
    )

    def __init__(self, with_features: bool = True, hold_unsettled: bool = False) -> None:
        self.versions: list[tuple[int, Account]] = []
        self.base = AccountFeatures()
        self.log: list[_Entry] = []
        self.late = 0
        self.with_features = with_features
        self.hold_unsettled = hold_unsettled
        self.base_produced = BEGINNING
        self.settled_to = BEGINNING
        self._total: AccountFeatures | None = None
        self._newest: int | None = BEGINNING  # the log's newest production time; None: unknown

    @property
    def has_account(self) -> bool:
        return bool(self.versions)

    def _features(self) -> AccountFeatures:
        """Features of every transaction known (base and log), kept up to date in place."""
        if self._total is None:
            total = self.base.copy()
            for entry in self.log:
                total.add_facts(entry.facts)
            self._total = total
        return self._total

    def add_version(self, produced: int, account: Account) -> list[Scored]:
        """Takes an account version produced at ``produced`` (µs); returns corrected rows."""
        version = (produced, account)
        if version in self.versions:
            return []
        if produced != BEGINNING and produced <= self.base_produced:
            # Transactions that left the log may have taken another version: their rows
            # cannot be corrected any more.
            self.late += 1
        before = [_version_at(self.versions, entry.produced) for entry in self.log]
        if produced != BEGINNING:
            # A version from the lookup (the table's row today, valid "from the start") only
            # stands in until the topic's own versions come: kept, it would give earlier
            # transactions a later version whenever the lookup happened to run first.
            self.versions = [v for v in self.versions if v[0] != BEGINNING]
        elif any(at != BEGINNING for at, _ in self.versions):
            return []  # the topic's versions are known: the lookup's adds nothing
        bisect.insort(self.versions, version, key=_version_order)
        del self.versions[:-MAX_VERSIONS]
        changed = {
            i for i, entry in enumerate(self.log)
            if _version_at(self.versions, entry.produced) != before[i]
        }
        rows = self._rescore(changed) if changed else []
        self._trim()  # a first real version ends the provisional rows' longer stay
        return rows

    def add_transaction(
        self, produced: int, txn: Transaction, txn_tuple: tuple | None = None
    ) -> list[Scored]:
        """Takes a transaction produced at ``produced`` (µs); returns its row and corrections.
        ``txn_tuple``: ``txn.to_tuple()`` when the caller has it already (kept for the state)."""
        entry = _Entry(produced, txn, txn_tuple=txn_tuple)
        log = self.log
        total = self._features()  # before the log changes: it is built from the log
        if not log or entry.key > log[-1].key:  # in order: the common case
            scored = self._score(entry, total)
            total.add_facts(entry.facts)
            log.append(entry)
            self._logged(produced)
            self._trim()
            return [scored]
        index = bisect.bisect_left(log, entry.key, key=lambda e: e.key)
        if index < len(log) and log[index].key == entry.key:
            return []  # delivered twice: the row is written already
        if index == 0 and self.base.seen:
            # Older than every logged transaction: its exact place is lost with the base.
            self.late += 1
            scored = self._score(entry, self.base.copy())
            self.base.add_facts(entry.facts)
            self.base_produced = max(self.base_produced, produced)
            self._total = None  # folded out of order: rebuilt in event-time order when needed
            return [scored]
        log.insert(index, entry)
        self._logged(produced)
        self._total = None
        rows = self._rescore(range(index, len(log)))
        self._trim()
        return rows

    def settle(self, watermark: int) -> None:
        """The watermark has reached ``watermark`` (µs): transactions produced before it can
        leave the log (beyond the newest LOG_SIZE)."""
        if watermark > self.settled_to:
            self.settled_to = watermark
            self._trim()

    @property
    def settle_time(self) -> int | None:
        """When the log has grown past SETTLE_AFTER with transactions not yet settled: the
        watermark a settle() should wait for (µs), just after the newest production time in
        the log, since a version produced in that same microsecond may still come. Else None."""
        if len(self.log) <= SETTLE_AFTER:
            return None
        if self._newest is None:
            self._newest = max(entry.produced for entry in self.log)
        newest = self._newest
        return newest + 1 if newest >= self.settled_to else None

    def _logged(self, produced: int) -> None:
        """A transaction produced at ``produced`` joined the log."""
        if self._newest is not None and produced > self._newest:
            self._newest = produced

    def _trim(self) -> None:
        log = self.log
        if len(log) <= LOG_SIZE:
            return  # the common case: nothing to trim, whatever the versions
        # Versions are in production order and the lookup's come first (BEGINNING): all of
        # them are the lookup's when the newest is.
        provisional = not self.versions or self.versions[-1][0] == BEGINNING
        keep = PROVISIONAL_LOG_SIZE if provisional else LOG_SIZE
        while len(log) > keep:
            if (
                self.hold_unsettled
                and log[0].produced >= self.settled_to
                and len(log) <= PROVISIONAL_LOG_SIZE
            ):
                break  # an account version produced before it may still come
            entry = log.pop(0)
            self.base.add_facts(entry.facts)
            self.base_produced = max(self.base_produced, entry.produced)
            if entry.produced == self._newest:
                self._newest = None  # another logged one may be as new: found when asked

    def _score(self, entry: _Entry, features: AccountFeatures) -> Scored:
        account = _version_at(self.versions, entry.produced)
        score, reasons = score_transaction(entry.txn, account, features)
        vector = (sender_vector(entry.txn, account, features, score, entry.facts)
                  if self.with_features else ())
        entry.emitted = _signature(account, score, reasons, vector, self.with_features)
        return Scored(entry.txn, account, score, reasons, vector)

    def _rescore(self, indexes) -> list[Scored]:
        """Scores the log entries at ``indexes`` again; returns those whose row changed."""
        wanted = set(indexes)
        running = self.base.copy()
        rows = []
        for i, entry in enumerate(self.log[: max(wanted) + 1]):
            if i in wanted:
                shown = entry.emitted
                scored = self._score(entry, running)
                if entry.emitted != shown:
                    rows.append(scored)
            running.add_facts(entry.facts)
        return rows

    # -- a compact form for Beam state ---------------------------------------------------
    def to_tuple(self) -> tuple:
        """The history as nested tuples of primitives; see :meth:`from_tuple`."""
        return (
            tuple((at, account.to_tuple()) for at, account in self.versions),
            self.base.to_tuple(),
            tuple((e.produced, e.stored_txn(), e.emitted) for e in self.log),
            self.late,
            self.base_produced,
            self.settled_to,
        )

    @classmethod
    def from_tuple(cls, values: tuple) -> "AccountHistory":
        """Inverse of :meth:`to_tuple` (a history saved before ``settled_to`` has five
        values)."""
        versions, base, log, late, base_produced, *settled = values
        history = cls.__new__(cls)
        history.versions = [(at, Account.from_tuple(account)) for at, account in versions]
        history.base = AccountFeatures.from_tuple(base)
        history.log = [
            _Entry(produced, Transaction.from_tuple(txn), emitted, txn)
            for produced, txn, emitted in log
        ]
        history.late = late
        history.with_features = True
        history.hold_unsettled = False
        history.base_produced = base_produced
        history.settled_to = settled[0] if settled else BEGINNING
        history._total = None
        history._newest = None
        return history
