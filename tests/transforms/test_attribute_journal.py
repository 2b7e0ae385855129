"""The account step's state as a journal (:mod:`pipeline.transforms.journal`): its DoFn called
directly, a call per bundle, with its state in memory as Beam's cache holds it and as the
runner holds it (``state_doubles``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from factories import T0, account, transaction
from pipeline.transforms.attribute import (
    ACCOUNT,
    ADD_TRANSACTION,
    ADD_VERSION,
    SETTLED,
    TRANSACTION,
    AttributeTransactionsFn,
    HistoryCoder,
    JournalCoder,
    _Change,
    _History,
)
from pipeline.transforms.journal import COMPACT_AT

from .state_doubles import Bag, Cell, Timer

MINUTE = 60 * 10**6  # µs


class _Step:
    """The account step for account a1 and its state: each method is one bundle."""

    def __init__(self, features: bool = True, journal: Bag | None = None,
                 waiting: Bag | None = None, legacy: Cell | None = None):
        self.fn = AttributeTransactionsFn(None, ttl=600, account_idle=7 * 86400,
                                          features=features)
        self.journal = journal or Bag(JournalCoder())
        self.waiting = waiting or Bag(AttributeTransactionsFn.WAITING.coder)
        self.legacy = legacy or Cell()
        self.expiry, self.gc, self.settle = Timer(), Timer(), Timer()

    def restarted(self) -> _Step:
        """The same step after a restart: its state as the runner holds it, nothing cached."""
        return _Step(self.fn._features, self.journal.stored(), self.waiting.stored())

    def take(self, kind: str, minute: int, record) -> list:
        element = ("a1", (kind, ((minute * MINUTE, record.to_tuple()),)))
        out = list(self.fn.process(element, self.journal, self.legacy, self.waiting,
                                   self.expiry, self.gc, self.settle, GlobalWindow()))
        self._commit()
        return [_shown(row) for row in out]

    def settle_at(self, minute: int) -> None:
        list(self.fn._on_settle(Timestamp(micros=minute * MINUTE), self.journal, self.legacy,
                                self.settle) or ())
        self._commit()

    def expire(self) -> list:
        out = list(self.fn._on_expiry("a1", self.expiry.at, self.journal, self.legacy,
                                      self.waiting, self.expiry) or ())
        self._commit()
        return [_shown(row) for row in out]

    def history(self) -> _History:
        return self.journal.values[0]

    def _commit(self) -> None:
        self.journal.commit()
        self.waiting.commit()


def _shown(row) -> tuple:
    """What a row shows and carries on (repr: NaN-aware)."""
    return (row.transaction_id, row.account_name, row.risk_score, row.risk_reasons,
            repr(row.features), row.correction)


def _txn(i: int, minute: int, amount: float = 40.0):
    return transaction(transaction_id=f"t{i:03d}", datetime_occurred=T0 + timedelta(minutes=minute),
                       amount=amount)


def _shuffled(count: int, first: int = 0) -> list:
    """``count`` transactions a minute apart (amounts vary), read every third after the next
    two: many arrive after later ones and correct them."""
    txns = [(first + i, _txn(first + i, first + i, 20.0 + 7 * (i % 11))) for i in range(count)]
    return [txns[j] for i in range(0, count, 3) for j in (i + 1, i + 2, i) if j < count]


def test_a_bundle_journals_the_records_it_took_not_the_whole_history():
    """One change per record taken; the journal starts again from a snapshot only once the
    changes outnumber max(COMPACT_AT, the logged transactions)."""
    step = _Step()
    step.take(ACCOUNT, 0, account())
    sizes = []
    for minute, txn in _shuffled(200, first=1):
        step.take(TRANSACTION, minute, txn)
        if minute % 40 == 0:
            step.settle_at(minute)  # the watermark moves: the log may shrink
        sizes.append(len(step.journal.values))
    assert isinstance(step.history(), _History)
    assert all(isinstance(v, _Change) for v in step.journal.values[1:])
    assert sizes[:10] == list(range(2, 12))  # the version's snapshot, then a change per record
    assert min(sizes) == 1 and 1 < sizes[-1] <= max(COMPACT_AT, len(step.history().log)) + 1
    assert len(step.history().log) < 200  # settled transactions left the log


@pytest.mark.parametrize("features", [True, False], ids=["with-features", "rules-only"])
def test_a_history_read_back_from_the_runner_replays_its_changes_exactly(features):
    """What the runner holds (the journal encoded) decodes to the history the step holds in
    memory: versions, log, features, the waiting bookkeeping and timers; and the rows after
    that are the same. The changes cover every kind: a transaction that waited for its
    account, transactions read out of order, a version read late, a settle."""
    step = _Step(features)
    assert step.take(TRANSACTION, 0, _txn(0, 0)) == []  # no account yet: it waits
    assert step.history().waiting == 1 and step.expiry.at is not None
    released = step.take(ACCOUNT, 1, account())
    assert [r[0] for r in released] == ["t000"]
    records = _shuffled(120, first=2)
    for minute, txn in records[:60]:
        step.take(TRANSACTION, minute, txn)
    taken = 60
    while taken < 70 or len(step.journal.values) < 9:  # changes after the snapshot
        step.take(TRANSACTION, *records[taken])
        taken += 1
    step.take(ACCOUNT, 50, account(account_name="Ada King"))  # read after later transactions
    step.settle_at(45)
    step.take(TRANSACTION, *records[taken])
    taken += 1
    kinds = {change.values[0] for change in step.journal.stored().values[1:]}
    assert kinds >= {ADD_TRANSACTION, ADD_VERSION, SETTLED}, "changes to replay, of each kind"
    restarted = step.restarted()
    live, restored = step.history(), restarted.fn._load(restarted.journal, restarted.legacy)
    assert restored is not live
    assert repr(restored.to_tuple()) == repr(live.to_tuple())
    assert restored.bookkeeping() == live.bookkeeping()
    assert restored.with_features is features
    later = records[taken:] + [(125, _txn(125, 125, 900.0))]
    assert [step.take(TRANSACTION, m, t) for m, t in later] == [
        restarted.take(TRANSACTION, m, t) for m, t in later]
    assert step.take(ACCOUNT, 110, account(account_name="Ada Byron")) == restarted.take(
        ACCOUNT, 110, account(account_name="Ada Byron"))


def test_a_waiting_transaction_released_by_its_expiry_is_journaled():
    """The expiry timer's release is a change like any other: read back after it, the history
    holds the released transaction and no longer waits."""
    step = _Step()
    step.take(TRANSACTION, 0, _txn(0, 0))
    out = step.expire()
    assert [r[:2] for r in out] == [("t000", None)]  # unjoined: no account came
    restored = step.restarted()
    history = restored.fn._load(restored.journal, restored.legacy)
    assert history.waiting == 0 and [e.txn.transaction_id for e in history.log] == ["t000"]
    assert restored.waiting.values == []


def test_a_history_an_earlier_version_saved_whole_moves_into_the_journal():
    """A savepoint of the version that kept the whole history in one cell: the step reads it,
    moves it into the journal and clears the cell; its transactions still count."""
    old = _History()
    old.add_version(0, account())
    for i in range(3):
        old.add_transaction(i * MINUTE, _txn(i, i))
    encoded = HistoryCoder().encode(old)
    step = _Step(legacy=Cell(HistoryCoder().decode(encoded)))
    out = step.take(TRANSACTION, 5, _txn(5, 5))
    assert [r[:2] for r in out] == [("t005", "Ada Lovelace")]
    assert step.legacy.value is None
    assert isinstance(step.history(), _History)
    restarted = step.restarted()
    restored = restarted.fn._load(restarted.journal, restarted.legacy)
    assert [e.txn.transaction_id for e in restored.log] == ["t000", "t001", "t002", "t005"]


def test_a_history_an_earlier_version_saved_whole_is_kept_by_a_timer_that_changes_nothing():
    """The first call after a restart from the earlier version's savepoint may be a timer that
    changes nothing (an expiry with nothing waiting): the history is in the journal even so."""
    old = _History()
    old.add_version(0, account())
    old.add_transaction(0, _txn(0, 0))
    step = _Step(legacy=Cell(HistoryCoder().decode(HistoryCoder().encode(old))))
    step.expiry.at = Timestamp(micros=10 * MINUTE)
    assert step.expire() == []
    assert step.legacy.value is None
    restarted = step.restarted()
    restored = restarted.fn._load(restarted.journal, restarted.legacy)
    assert restored is not None and [e.txn.transaction_id for e in restored.log] == ["t000"]
