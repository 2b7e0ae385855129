"""Tests of the stateful join-and-score step, driven by TestStream with explicit watermarks."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow, IntervalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from factories import T0, account, transaction
from pipeline.domain.scoring import THRESHOLD, WEIGHTS
from pipeline.domain.sender_features import SENDER_FEATURES
from pipeline.errors import LookupUnavailable
from pipeline.records import AttributedTransaction, KafkaRecord
from pipeline.transforms.attribute import (
    LOOKUP_RETRIES,
    AttributeTransactions,
    HistoryCoder,
    _History,
    _KeyAndGroupFn,
)
from pipeline.transforms.parse import ParseAccounts, ParseTransactions

from .pipelines import batch_pipeline, run_and_count, stream_pipeline

TTL = 60
IDLE = 300
ACCOUNTS, TRANSACTIONS = "accounts", "transactions"
PROCESSED_AT = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
# Every account id the fake lookups were asked for; the runners here are in-process.
LOOKED_UP: list[str] = []


class FakeLookupFactory:
    """A picklable lookup factory serving a fixed dict of accounts (or failing)."""

    def __init__(self, accounts=(), unavailable=False):
        self.accounts = {a.account_id: a for a in accounts}
        self.unavailable = unavailable

    def __call__(self):
        def lookup(account_ids):
            LOOKED_UP.extend(account_ids)
            if self.unavailable:
                raise LookupUnavailable("connection refused")
            return {i: self.accounts[i] for i in account_ids if i in self.accounts}

        return lookup


@pytest.fixture(autouse=True)
def forget_lookups():
    LOOKED_UP.clear()


def fixed_clock() -> datetime:
    return PROCESSED_AT


def acct_at(ts, **fields):
    return ("account", account(**fields), ts)


def txn_at(ts, txn_id, account_id="a1", **fields):
    return ("transaction", transaction(transaction_id=txn_id, account_id=account_id, **fields), ts)


def stream(events) -> BeamTestStream:
    """A TestStream of accounts and transactions; an int event moves both watermarks."""
    test_stream = BeamTestStream()
    for event in events:
        if isinstance(event, int):
            for tag in (ACCOUNTS, TRANSACTIONS):
                test_stream.advance_watermark_to(event, tag=tag)
            continue
        kind, record, ts = event
        tag = ACCOUNTS if kind == "account" else TRANSACTIONS
        test_stream.add_elements([TimestampedValue(record, ts)], tag=tag)
    for tag in (ACCOUNTS, TRANSACTIONS):
        test_stream.advance_watermark_to_infinity(tag=tag)
    return test_stream


def name_and_time(row: AttributedTransaction, ts=beam.DoFn.TimestampParam):
    """(transaction_id, account_name or None, output timestamp in seconds)."""
    return row.transaction_id, row.account_name, float(ts)


def run_step(events, expected, summary=name_and_time, **step_args) -> None:
    """Runs the step over the TestStream ``events`` and checks every row it emits."""
    args = {"ttl": TTL, "account_idle": IDLE, "clock": fixed_clock} | step_args
    with stream_pipeline() as pipeline:
        inputs = pipeline | stream(events)
        rows = (inputs[ACCOUNTS], inputs[TRANSACTIONS]) | AttributeTransactions(**args)
        assert_that(rows | beam.Map(summary), equal_to(expected))


# -- the join ---------------------------------------------------------------------------------
def test_account_first_then_transaction_joins():
    run_step([acct_at(0), 5, txn_at(10, "t1")], [("t1", "Ada Lovelace", 10.0)])


def test_transaction_waits_for_an_account_that_arrives_within_the_ttl():
    run_step([txn_at(10, "t1"), 20, acct_at(30), 200], [("t1", "Ada Lovelace", 30.0)])


def test_an_expired_transaction_goes_on_unjoined_and_is_corrected_when_its_account_comes():
    events = [txn_at(10, "t1"), 69, 70, acct_at(200), txn_at(210, "t2")]
    run_step(
        events,
        [("t1", None, 70.0), ("t1", "Ada Lovelace", 200.0), ("t2", "Ada Lovelace", 210.0)],
    )


def test_each_waiting_transaction_keeps_its_own_deadline():
    events = [txn_at(0, "t1"), txn_at(30, "t2"), 65, acct_at(70)]
    run_step(events, [("t1", None, 60.0), ("t1", "Ada Lovelace", 70.0), ("t2", "Ada Lovelace", 70.0)])


def test_an_updated_account_replaces_the_old_one_for_later_transactions():
    events = [acct_at(0), 5, txn_at(10, "t1"), acct_at(20, account_name="Ada King"),
              txn_at(30, "t2")]
    run_step(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Ada King", 30.0)])


def test_a_replay_that_reads_an_update_first_still_joins_by_time():
    """After a restore the accounts reader may re-read a rename before the transactions that
    preceded it: each transaction still gets the version of its own time."""
    events = [acct_at(0), acct_at(20, account_name="Ada King"), 5, txn_at(10, "t1"),
              txn_at(30, "t2")]
    run_step(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Ada King", 30.0)])


def test_a_replay_that_reads_a_transaction_before_the_update_preceding_it_corrects_the_name():
    events = [acct_at(0), 5, txn_at(30, "t2"), acct_at(20, account_name="Ada King")]
    run_step(events, [("t2", "Ada Lovelace", 30.0), ("t2", "Ada King", 20.0)])


def _backlog(count: int, first_ts: int = 10) -> list:
    """``count`` transactions of a1, a second apart from ``first_ts``, in event-time order."""
    return [txn_at(first_ts + i, f"t{i:03d}", datetime_occurred=T0 + timedelta(seconds=i))
            for i in range(count)]


def test_a_version_read_after_a_long_backlog_corrects_every_transaction_after_it():
    """The transactions topic read far ahead of the accounts topic (a backlog): the rename
    produced at 15 s arrives after 60 transactions. Until the watermark passes them, they stay
    correctable, so every transaction produced from 15 s on is corrected, not only the newest
    LOG_SIZE (32) of them."""
    backlog = _backlog(60)
    events = [acct_at(0), 5, *backlog, acct_at(15, account_name="Ada King")]
    first = [(f"t{i:03d}", "Ada Lovelace", 10.0 + i) for i in range(60)]
    corrected = [(f"t{i:03d}", "Ada King", 15.0) for i in range(5, 60)]
    run_step(events, first + corrected)


def test_the_watermark_settles_a_long_log_and_rows_go_on():
    """Past the settle threshold the SETTLE timer fires when the watermark passes the log;
    later transactions are scored as before."""
    events = [acct_at(0), 5, *_backlog(60), 100,
              txn_at(110, "later", datetime_occurred=T0 + timedelta(minutes=5))]
    expected = [(f"t{i:03d}", "Ada Lovelace", 10.0 + i) for i in range(60)]
    run_step(events, [*expected, ("later", "Ada Lovelace", 110.0)])


def test_a_waiting_transaction_gets_the_version_of_its_time():
    events = [txn_at(10, "t1"), acct_at(5), acct_at(40, account_name="Ada King"), 100]
    run_step(events, [("t1", "Ada Lovelace", 5.0)])


def test_a_history_read_back_from_state_is_the_history_written():
    """The step's state coder: a held backlog read back asks for the same SETTLE time and
    gives the same rows."""
    coder = HistoryCoder()
    written = coder.decode(coder.encode(_history_with_backlog()))
    fresh = _history_with_backlog()
    minute = timedelta(minutes=1) // timedelta(microseconds=1)
    assert written.settle_time == fresh.settle_time == 60 * minute + 1
    assert written.hold_unsettled and len(written.log) == len(fresh.log) == 60
    later = transaction(transaction_id="t999", datetime_occurred=T0 + timedelta(hours=2))
    assert written.add_transaction(61 * minute, later) == fresh.add_transaction(61 * minute, later)


def _history_with_backlog():
    """The step's history of an account with 60 transactions held, produced a minute apart."""
    history = _History()
    history.add_version(0, account())
    minute = timedelta(minutes=1) // timedelta(microseconds=1)
    for i in range(1, 61):
        history.add_transaction(i * minute, transaction(
            transaction_id=f"t{i:03d}", datetime_occurred=T0 + timedelta(minutes=i)))
    return history


def test_an_unknown_account_is_found_with_the_lookup_and_kept_in_state():
    lookup = FakeLookupFactory([account(account_name="From Postgres")])
    run_step([txn_at(10, "t1"), txn_at(20, "t2")],
             [("t1", "From Postgres", 10.0), ("t2", "From Postgres", 20.0)],
             lookup_factory=lookup)
    assert LOOKED_UP == ["a1"]


def test_a_lookup_miss_waits_without_asking_again_until_the_account_arrives():
    run_step([txn_at(10, "t1"), txn_at(20, "t2"), acct_at(30)],
             [("t1", "Ada Lovelace", 30.0), ("t2", "Ada Lovelace", 30.0)],
             lookup_factory=FakeLookupFactory())
    assert LOOKED_UP == ["a1"]


def test_an_unreachable_lookup_is_asked_again_before_anything_goes_on_unjoined():
    released = 10 + TTL * LOOKUP_RETRIES
    run_step([txn_at(10, "t1")], [("t1", None, float(released))],
             lookup_factory=FakeLookupFactory(unavailable=True))
    assert LOOKED_UP == ["a1"] * (1 + LOOKUP_RETRIES)


def test_idle_account_state_is_dropped_and_fetched_again_by_the_lookup():
    lookup = FakeLookupFactory([account(account_name="From Postgres")])
    run_step([acct_at(0), 400, txn_at(500, "t1")], [("t1", "From Postgres", 500.0)],
             lookup_factory=lookup)
    assert LOOKED_UP == ["a1"]


def test_idle_account_state_without_lookup_leaves_later_transactions_unjoined():
    run_step([acct_at(0), 400, txn_at(500, "t1")], [("t1", None, 560.0)])


def test_a_full_buffer_lets_transactions_through_unjoined():
    events = [txn_at(10, "t1"), txn_at(11, "t2"), txn_at(12, "t3")]
    # All three occurred at T0, so t1 and t2 come before t3 in event time: when each is
    # released, t3's features (its earlier transactions) change and its row is corrected.
    run_step(events, [("t1", None, 70.0), ("t2", None, 71.0), ("t3", None, 12.0),
                      ("t3", None, 70.0), ("t3", None, 71.0)],
             max_buffered=2)


def test_keys_are_joined_independently():
    events = [acct_at(0), acct_at(0, account_id="a2", account_name="Bob"), 5,
              txn_at(10, "t1"), txn_at(10, "t2", account_id="a2"), txn_at(10, "t3", "a3")]
    run_step(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Bob", 10.0), ("t3", None, 70.0)])


# -- the score --------------------------------------------------------------------------------
def score_summary(row: AttributedTransaction):
    return row.transaction_id, row.risk_score, row.risk_reasons


def burst(count, start=0):
    """Transactions one minute apart in event time, produced when they occurred."""
    return [
        txn_at(60 * i, f"t{i}", datetime_occurred=T0 + timedelta(minutes=i))
        for i in range(start, start + count)
    ]


def test_scores_with_the_features_of_earlier_transactions():
    weight = WEIGHTS["velocity"]
    run_step(
        [acct_at(-1), *burst(6)],
        [("t0", 0, ()), ("t1", 0, ()), ("t2", 0, ()), ("t3", 0, ()),
         ("t4", weight, (f"velocity: 5 transactions in 10 min (+{weight})",)),
         ("t5", weight, (f"velocity: 6 transactions in 10 min (+{weight})",))],
        summary=score_summary,
    )


def test_a_late_earlier_transaction_corrects_the_rows_after_it():
    weight = WEIGHTS["velocity"]
    first, *rest = burst(5)
    # t1-t3 keep their score, but each gains an earlier transaction (t0): their features,
    # which the rows carry on to the model, change, so they are corrected too.
    run_step(
        [acct_at(-1), *rest, first],  # t0 occurred first but arrives last
        [("t1", 0, ()), ("t2", 0, ()), ("t3", 0, ()), ("t4", 0, ()), ("t0", 0, ()),
         ("t1", 0, ()), ("t2", 0, ()), ("t3", 0, ()),
         ("t4", weight, (f"velocity: 5 transactions in 10 min (+{weight})",))],
        summary=score_summary,
    )


def test_emits_attributed_transactions_not_yet_validated():
    txn = transaction()
    expected = AttributedTransaction(
        transaction=txn, account_name="Ada Lovelace", risk_score=0, risk_reasons=(),
        is_fraudulent=False, validated_by="none", processed_at=PROCESSED_AT, account=account(),
    )
    # The sender's features go on with the row (their values: tests/domain).
    run_step([acct_at(0), ("transaction", txn, 10)], [(expected, len(SENDER_FEATURES))],
             summary=lambda row: (dataclasses.replace(row, features=()), len(row.features)))


def test_without_a_model_rows_leave_without_features():
    """``features=False`` (the job with --model_path=''): the same rows, carrying none."""
    weight = WEIGHTS["velocity"]
    run_step(
        [acct_at(-1), *burst(5)],
        [("t0", 0, (), 0), ("t1", 0, (), 0), ("t2", 0, (), 0), ("t3", 0, (), 0),
         ("t4", weight, (f"velocity: 5 transactions in 10 min (+{weight})",), 0)],
        summary=lambda row: (row.transaction_id, row.risk_score, row.risk_reasons,
                             len(row.features)),
        features=False,
    )


@pytest.mark.parametrize("idle_gap, outlier", [(timedelta(days=1), True), (timedelta(days=8), False)])
def test_idle_history_is_dropped(idle_gap, outlier):
    hours = [txn_at(3600 * i, f"h{i}", datetime_occurred=T0 + timedelta(hours=i))
             for i in range(5)]
    later = 4 * 3600 + int(idle_gap.total_seconds())
    big = txn_at(later, "big", amount=900.0, datetime_occurred=T0 + timedelta(seconds=later))

    def flagged(row):
        return row.transaction_id, any(
            r.startswith(("amount_outlier", "amount_extreme")) for r in row.risk_reasons)

    run_step(
        [acct_at(-1), *hours, later - 1, big],
        [(f"h{i}", False) for i in range(5)] + [("big", outlier)],
        summary=flagged, account_idle=timedelta(days=7),
    )


def test_counts_scored_high_risk_and_corrections():
    night_drain = transaction(transaction_id="bad", account_id="a3", amount=4_900.0,
                              transaction_type="withdrawal", datetime_occurred=T0.replace(hour=3))
    lookup = FakeLookupFactory([account(account_id="a5", account_name="From Postgres")])
    pipeline = batch_pipeline()
    accounts = pipeline | "Accounts" >> beam.Create(
        [account(), account(account_id="a3", created_at=T0)])
    transactions = pipeline | "Transactions" >> beam.Create([
        transaction(),
        night_drain,
        transaction(transaction_id="t5", account_id="a5"),
        transaction(transaction_id="t9", account_id="a9"),
    ])
    rows = (accounts, transactions) | AttributeTransactions(lookup, ttl=timedelta(minutes=10))
    assert_that(
        rows | beam.Map(lambda r: (r.transaction_id, r.account_name is not None,
                                   r.risk_score >= THRESHOLD)),
        equal_to([("t1", True, False), ("bad", True, True), ("t5", True, False),
                  ("t9", False, False)]),
    )
    # At the end of the input the watermark jumps to +inf: every timer fires, so t9 goes on
    # unjoined and every account's state is dropped.
    counts = run_and_count(pipeline)
    assert counts["scored"] == 4 and counts["high_risk"] == 1
    assert counts["joined"] == 3 and counts["expired_unjoined"] == 1
    # a9 misses; a1 and a3 miss too when their transaction is read before their account.
    assert counts["lookup_hits"] == 1 and 1 <= counts["lookup_misses"] <= 3
    assert LOOKED_UP.count("a5") == 1 and LOOKED_UP.count("a9") == 1
    assert counts["accounts_evicted"] == 4


def kafka(topic: str, offset: int, payload: dict) -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, 0, payload["account_id"].encode(),
                       json.dumps(payload).encode())


def test_parse_and_attribute_fit_together():
    txn = transaction(datetime_occurred=datetime.now(UTC) - timedelta(hours=1))
    pipeline = batch_pipeline()
    accounts = (pipeline | "ReadAccounts" >> beam.Create([kafka("accounts", 0, account().to_dict())])
                | "ParseAccounts" >> ParseAccounts())
    transactions = (pipeline
                    | "ReadTransactions" >> beam.Create([kafka("transactions", 0, txn.to_dict())])
                    | "ParseTransactions" >> ParseTransactions())
    rows = (accounts.records, transactions.records) | AttributeTransactions(
        ttl=timedelta(minutes=10))
    assert_that(rows | beam.Map(lambda r: (r.transaction, r.account_name)),
                equal_to([(txn, "Ada Lovelace")]))
    assert run_and_count(pipeline)["scored"] == 1


@pytest.mark.parametrize(
    "args",
    [{"ttl": 0}, {"ttl": timedelta(seconds=-1)}, {"ttl": 60, "account_idle": 60},
     {"max_buffered": 0}, {"lookup_factory": "postgres://"}, {"clock": "now"}],
)
def test_bad_arguments_fail_at_construction(args):
    with pytest.raises(ValueError):
        AttributeTransactions(**args)


def test_a_bundles_records_reach_the_account_step_as_one_element_per_account():
    # The reading stage's bundle: a1's records out of time order, one record of a2.
    records = [(account(), 50), (account(account_id="a2"), 70),
               (account(account_name="Ann B."), 20), (account(account_name="Ann C."), 90)]
    fn = _KeyAndGroupFn("account")
    fn.start_bundle()
    for record, seconds in records:
        element = WindowedValue(record, Timestamp(seconds), (GlobalWindow(),))
        assert list(fn.process(record, element) or ()) == []
    out = {wv.value[0]: wv for wv in fn.finish_bundle()}
    assert sorted(out) == ["a1", "a2"]
    kind, a1 = out["a1"].value[1]
    assert kind == "account"
    # In read order, each with its own time; the element at the earliest of them.
    assert [(produced, values[1]) for produced, values in a1] == [
        (50_000_000, "Ada Lovelace"), (20_000_000, "Ann B."), (90_000_000, "Ann C.")]
    assert out["a1"].timestamp == Timestamp(20) and out["a2"].timestamp == Timestamp(70)
    assert out["a1"].windows == (GlobalWindow(),)
    fn.start_bundle()
    assert list(fn.finish_bundle()) == []  # a new bundle starts empty


def test_a_record_in_two_windows_joins_each_windows_group():
    # Grouping takes Beam's WindowedValue whole; a record in two windows (not the job's
    # global window, but a sliding one would do it) belongs to a group per window.
    first, second = IntervalWindow(0, 60), IntervalWindow(30, 90)
    fn = _KeyAndGroupFn("account")
    fn.start_bundle()
    fn.process(account(), WindowedValue(account(), Timestamp(40), (first, second)))
    fn.process(account(account_name="Ann B."),
               WindowedValue(account(account_name="Ann B."), Timestamp(50), (second,)))
    out = {wv.windows: [values[1] for _, values in wv.value[1][1]] for wv in fn.finish_bundle()}
    assert out == {(first,): ["Ada Lovelace"], (second,): ["Ada Lovelace", "Ann B."]}


def test_each_row_keeps_its_own_transactions_timestamp():
    # One bundle of a1's transactions: they reach the account step together, and each row
    # must still carry its transaction's time (downstream event-time steps read it).
    pipeline = batch_pipeline()
    accounts = pipeline | "Accounts" >> beam.Create([TimestampedValue(account(), 5)])
    times = {"t1": 10, "t2": 40, "t3": 25}
    transactions = pipeline | "Transactions" >> beam.Create([
        TimestampedValue(transaction(transaction_id=txn_id, datetime_occurred=T0 + timedelta(
            seconds=seconds)), seconds)
        for txn_id, seconds in times.items()
    ])
    rows = (accounts, transactions) | AttributeTransactions(ttl=TTL, clock=fixed_clock)
    # t3 happened before t2 but is read after it: t2's row is corrected, at t3's time (the
    # input that caused it), as when each transaction came alone.
    assert_that(
        rows | beam.Map(lambda r, ts=beam.DoFn.TimestampParam: (r.transaction_id, r.correction,
                                                                ts)),
        equal_to([("t1", False, Timestamp(10)), ("t2", False, Timestamp(40)),
                  ("t3", False, Timestamp(25)), ("t2", True, Timestamp(25))]),
    )
    pipeline.run().wait_until_finish()
