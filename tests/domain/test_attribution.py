"""Tests of AccountHistory: every transaction's final row is the same whatever the arrival order."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import T0, account, transaction, examples
from pipeline.domain.attribution import BEGINNING, LOG_SIZE, AccountHistory
from pipeline.domain.scoring import AccountFeatures, score_transaction


def micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def expected_rows(versions, txns):
    """The definition, by brute force: the version produced at or before the transaction (the
    oldest if all are newer), and the features of every transaction earlier in event time."""
    rows = {}
    for produced, txn in txns:
        earlier = [t for _, t in txns if (t.datetime_occurred, t.transaction_id)
                   < (txn.datetime_occurred, txn.transaction_id)]
        features = AccountFeatures()
        for t in earlier:
            features.add(t)
        by_time = sorted(versions, key=lambda v: (v[0], repr(v[1].to_tuple())))
        fitting = [a for at, a in by_time if at <= produced]
        version = fitting[-1] if fitting else (by_time[0][1] if by_time else None)
        score, reasons = score_transaction(txn, version, features)
        rows[txn.transaction_id] = (version.account_name if version else None, score, reasons)
    return rows


def replay(history, arrivals):
    """Feeds ``arrivals`` in order; returns the last row emitted per transaction id."""
    final = {}
    for kind, produced, record in arrivals:
        add = history.add_version if kind == "account" else history.add_transaction
        for row in add(produced, record):
            name = row.account.account_name if row.account is not None else None
            final[row.transaction.transaction_id] = (name, row.risk_score, row.risk_reasons)
    return final


inputs = st.tuples(
    # transactions: (seconds after T0 it occurred, seconds after it was produced, amount, type)
    st.lists(
        st.tuples(st.integers(0, 7200), st.integers(0, 30), st.floats(1, 20_000),
                  st.sampled_from(["payment", "withdrawal", "transfer"])),
        min_size=1, max_size=LOG_SIZE,
    ),
    # account versions: (seconds after T0 produced, balance)
    st.lists(st.tuples(st.integers(-600, 7200), st.floats(10, 50_000)), min_size=0, max_size=4),
)


def build(inputs):
    txn_specs, version_specs = inputs
    txns = [
        (micros(timedelta(seconds=at + lag)),
         transaction(transaction_id=f"t{i:03d}", amount=round(amount, 2), transaction_type=kind,
                     datetime_occurred=T0 + timedelta(seconds=at)))
        for i, (at, lag, amount, kind) in enumerate(txn_specs)
    ]
    versions = [
        (micros(timedelta(seconds=at)), account(account_name=f"v{i}", balance=round(balance, 2)))
        for i, (at, balance) in enumerate(version_specs)
    ]
    return txns, versions


@settings(max_examples=examples(300), deadline=None)
@given(inputs, st.randoms())
def test_final_rows_do_not_depend_on_the_arrival_order(spec, rng):
    txns, versions = build(spec)
    arrivals = [("account", at, a) for at, a in versions] + [
        ("transaction", at, t) for at, t in txns
    ]
    rng.shuffle(arrivals)
    final = replay(AccountHistory(), arrivals)
    assert final == expected_rows(versions, txns)


@settings(max_examples=examples(100), deadline=None)
@given(inputs, st.randoms())
def test_a_history_restored_from_its_tuple_continues_the_same(spec, rng):
    txns, versions = build(spec)
    arrivals = [("account", at, a) for at, a in versions] + [
        ("transaction", at, t) for at, t in txns
    ]
    rng.shuffle(arrivals)
    cut = len(arrivals) // 2
    straight = replay(AccountHistory(), arrivals)
    history = AccountHistory()
    first = replay(history, arrivals[:cut])
    restored = AccountHistory.from_tuple(history.to_tuple())
    assert restored.to_tuple() == history.to_tuple()
    assert {**first, **replay(restored, arrivals[cut:])} == straight


def test_a_transaction_delivered_twice_is_emitted_once():
    history = AccountHistory()
    txn = transaction()
    assert len(history.add_transaction(1, txn)) == 1
    assert history.add_transaction(1, txn) == []
    assert history.base.seen + len(history.log) == 1


def test_a_version_arriving_late_corrects_only_the_rows_it_applies_to():
    history = AccountHistory()
    early, late = (transaction(transaction_id=f"t{i}", datetime_occurred=T0 + timedelta(minutes=i))
                   for i in (1, 2))
    history.add_version(0, account(account_name="Old"))
    history.add_transaction(micros(timedelta(minutes=1)), early)
    history.add_transaction(micros(timedelta(minutes=3)), late)
    rows = history.add_version(micros(timedelta(minutes=2)), account(account_name="New"))
    assert [(r.transaction.transaction_id, r.account.account_name) for r in rows] == [("t2", "New")]


def test_inputs_older_than_the_log_are_counted_late_not_lost():
    history = AccountHistory()
    history.add_version(0, account())
    for i in range(LOG_SIZE + 5):
        history.add_transaction(i, transaction(transaction_id=f"t{i:03d}",
                                               datetime_occurred=T0 + timedelta(minutes=i)))
    old = transaction(transaction_id="old", datetime_occurred=T0 - timedelta(days=1))
    rows = history.add_transaction(0, old)
    assert [r.transaction.transaction_id for r in rows] == ["old"]
    assert history.late == 1 and history.base.seen == 6 and len(history.log) == LOG_SIZE


def test_a_looked_up_version_stands_in_only_until_the_topics_versions_come():
    from pipeline.domain.attribution import BEGINNING

    history = AccountHistory()
    history.add_version(BEGINNING, account(account_name="Today's name in the table"))
    rows = history.add_transaction(micros(timedelta(minutes=1)), transaction())
    assert [r.account.account_name for r in rows] == ["Today's name in the table"]
    corrected = history.add_version(micros(timedelta(minutes=5)), account(account_name="First"))
    # Produced before the first version on the topic: it gets that (oldest) version.
    assert [r.account.account_name for r in corrected] == ["First"]
    assert history.add_version(BEGINNING, account(account_name="Looked up again")) == []
    assert [name for _, name in [(v[0], v[1].account_name) for v in history.versions]] == ["First"]


def test_a_backlog_read_before_its_account_is_corrected_whole():
    """A bounded run may read every transaction before any account: the first real version
    still corrects every row, not just the last LOG_SIZE."""
    from pipeline.domain.attribution import BEGINNING

    history = AccountHistory()
    history.add_version(BEGINNING, account(account_name="Today's name in the table"))
    for i in range(3 * LOG_SIZE):
        history.add_transaction(micros(timedelta(minutes=i + 1)),
                                transaction(transaction_id=f"t{i:03d}",
                                            datetime_occurred=T0 + timedelta(minutes=i)))
    corrected = history.add_version(0, account(account_name="First"))
    assert len(corrected) == 3 * LOG_SIZE
    assert {r.account.account_name for r in corrected} == {"First"}
    assert len(history.log) == LOG_SIZE


def _history_with_a_long_past(first_version_at: int):
    """One version, then LOG_SIZE + 8 transactions a minute apart (8 of them leave the log)."""
    history = AccountHistory()
    history.add_version(first_version_at, account(account_name="First"))
    for i in range(LOG_SIZE + 8):
        history.add_transaction(micros(timedelta(minutes=i + 1)),
                                transaction(transaction_id=f"t{i:03d}",
                                            datetime_occurred=T0 + timedelta(minutes=i)))
    return history


def test_a_version_for_transactions_that_left_the_log_is_counted_late():
    """The second version was produced after t002: t002..t007 (out of the log) should have
    it, and their rows can no longer be corrected. The loss is counted, not silent."""
    history = _history_with_a_long_past(0)
    assert history.late == 0
    rows = history.add_version(micros(timedelta(minutes=3)), account(account_name="Second"))
    assert history.late == 1
    # The logged transactions are still corrected.
    assert len(rows) == LOG_SIZE and {r.account.account_name for r in rows} == {"Second"}


def test_a_version_newer_than_every_transaction_that_left_the_log_is_not_late():
    history = _history_with_a_long_past(0)
    # Produced after t007, the newest transaction that left the log (produced at minute 8).
    history.add_version(micros(timedelta(minutes=8, seconds=30)), account(account_name="Second"))
    assert history.late == 0


def test_the_late_count_and_its_bound_survive_the_tuple_form():
    history = _history_with_a_long_past(0)
    restored = AccountHistory.from_tuple(history.to_tuple())
    restored.add_version(micros(timedelta(minutes=3)), account(account_name="Second"))
    assert restored.late == 1


def _backlog(history: AccountHistory, count: int, first_minute: int = 1) -> None:
    """``count`` transactions a minute apart, produced from ``first_minute`` on."""
    for i in range(count):
        history.add_transaction(micros(timedelta(minutes=first_minute + i)),
                                transaction(transaction_id=f"t{i:03d}",
                                            datetime_occurred=T0 + timedelta(minutes=i)))


def test_held_transactions_are_corrected_by_a_version_read_after_many_of_them():
    """The transactions topic read far ahead of the accounts topic: the version produced
    after t002 arrives after 3 * LOG_SIZE transactions. Held until the watermark passes them,
    every transaction from t002 on is corrected, and nothing is counted late."""
    history = AccountHistory(hold_unsettled=True)
    history.add_version(0, account(account_name="First"))
    _backlog(history, 3 * LOG_SIZE)
    rows = history.add_version(micros(timedelta(minutes=3)), account(account_name="Second"))
    assert history.late == 0
    assert sorted(r.transaction.transaction_id for r in rows) == [
        f"t{i:03d}" for i in range(2, 3 * LOG_SIZE)
    ]
    assert {r.account.account_name for r in rows} == {"Second"}


def test_without_holding_the_same_version_is_counted_late():
    history = AccountHistory()
    history.add_version(0, account(account_name="First"))
    _backlog(history, 3 * LOG_SIZE)
    rows = history.add_version(micros(timedelta(minutes=3)), account(account_name="Second"))
    assert history.late == 1 and len(rows) == LOG_SIZE


def test_settle_lets_the_transactions_the_watermark_passed_leave_the_log():
    history = AccountHistory(hold_unsettled=True)
    history.add_version(0, account(account_name="First"))
    _backlog(history, 3 * LOG_SIZE)
    assert len(history.log) == 3 * LOG_SIZE
    assert history.settle_time == micros(timedelta(minutes=3 * LOG_SIZE)) + 1
    # The watermark passed the first 50 transactions (produced at minutes 1..50).
    history.settle(micros(timedelta(minutes=50, seconds=30)))
    assert [e.txn.transaction_id for e in history.log][:1] == ["t050"]
    assert len(history.log) == 3 * LOG_SIZE - 50
    history.settle(micros(timedelta(minutes=3 * LOG_SIZE + 1)))
    assert len(history.log) == LOG_SIZE and history.settle_time is None
    # What left the log lives on in the features: the next row counts all of them.
    assert history.base.seen == 2 * LOG_SIZE


def test_settled_to_survives_the_tuple_form_and_old_tuples_still_load():
    history = AccountHistory(hold_unsettled=True)
    history.add_version(0, account(account_name="First"))
    history.settle(12345)
    assert AccountHistory.from_tuple(history.to_tuple()).settled_to == 12345
    assert AccountHistory.from_tuple(history.to_tuple()[:5]).settled_to == BEGINNING
