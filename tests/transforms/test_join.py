"""Tests of the stateful account join, driven by TestStream with explicit watermarks."""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.errors import LookupUnavailable
from pipeline.transforms.join import JoinedTransaction, JoinWithAccounts

from factories import account, transaction
from .pipelines import batch_pipeline, run_and_count, stream_pipeline

TTL = 60
IDLE = 300
ACCOUNTS, TRANSACTIONS = "accounts", "transactions"
# Every account id the fake lookups were asked for; the runners here are in-process.
LOOKED_UP: list[str] = []


class FakeLookupFactory:
    """A picklable LookupFactory serving a fixed dict of accounts (or failing)."""

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


def acct_at(ts, **fields):
    return ("account", account(**fields), ts)


def txn_at(ts, txn_id, account_id="a1"):
    return ("transaction", transaction(transaction_id=txn_id, account_id=account_id), ts)


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
        test_stream.add_elements([TimestampedValue((record.account_id, record), ts)], tag=tag)
    for tag in (ACCOUNTS, TRANSACTIONS):
        test_stream.advance_watermark_to_infinity(tag=tag)
    return test_stream


def summary(joined: JoinedTransaction, ts=beam.DoFn.TimestampParam):
    """(transaction_id, account_name or None, output timestamp in seconds)."""
    name = joined.account.account_name if joined.account else None
    return joined.transaction.transaction_id, name, float(ts)


def run_join(events, expected, **join_args) -> None:
    """Runs the join over the TestStream ``events`` and checks its output summaries."""
    with stream_pipeline() as pipeline:
        inputs = pipeline | stream(events)
        joined = (inputs[ACCOUNTS], inputs[TRANSACTIONS]) | JoinWithAccounts(
            ttl=TTL, account_idle=IDLE, **join_args
        )
        assert_that(joined | beam.Map(summary), equal_to(expected))


def test_account_first_then_transaction_joins():
    run_join([acct_at(0), 5, txn_at(10, "t1")], [("t1", "Ada Lovelace", 10.0)])


def test_transaction_waits_for_an_account_that_arrives_within_the_ttl():
    events = [txn_at(10, "t1"), 20, acct_at(30), 200]
    run_join(events, [("t1", "Ada Lovelace", 30.0)])


def test_transaction_expires_unjoined_after_the_ttl_and_is_not_emitted_twice():
    events = [txn_at(10, "t1"), 69, 70, acct_at(200), txn_at(210, "t2")]
    run_join(events, [("t1", None, 70.0), ("t2", "Ada Lovelace", 210.0)])


def test_each_buffered_transaction_keeps_its_own_deadline():
    events = [txn_at(0, "t1"), txn_at(30, "t2"), 65, acct_at(70)]
    run_join(events, [("t1", None, 60.0), ("t2", "Ada Lovelace", 70.0)])


def test_an_updated_account_replaces_the_old_one_for_later_transactions():
    events = [
        acct_at(0),
        5,
        txn_at(10, "t1"),
        acct_at(20, account_name="Ada King"),
        txn_at(30, "t2"),
    ]
    run_join(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Ada King", 30.0)])


def test_a_replay_that_reads_an_update_first_still_joins_by_time():
    """After a restore, the accounts reader may re-read a rename before the transactions
    that preceded it: each transaction still gets the version of its own time."""
    events = [
        acct_at(0),
        acct_at(20, account_name="Ada King"),  # read first, produced after t1
        5,
        txn_at(10, "t1"),
        txn_at(30, "t2"),
    ]
    run_join(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Ada King", 30.0)])


def test_a_buffered_transaction_gets_the_version_of_its_time():
    # t1 waits for its account; a first version and a later rename arrive in one go.
    events = [txn_at(10, "t1"), acct_at(5), acct_at(40, account_name="Ada King"), 100]
    run_join(events, [("t1", "Ada Lovelace", 5.0)])


def test_versions_are_trimmed_to_the_newest_and_a_repeat_is_kept_once():
    from pipeline.transforms.join import MAX_VERSIONS, _version_at, _with_version

    versions = ()
    for i in range(MAX_VERSIONS + 2):
        versions = _with_version(versions, i * 10, account(account_name=f"v{i}"))
    versions = _with_version(versions, 50, account(account_name="v5"))  # a replay's repeat
    assert [a.account_name for _, a in versions] == [f"v{i}" for i in range(2, MAX_VERSIONS + 2)]
    assert _version_at(versions, 35).account_name == "v3"
    assert _version_at(versions, 0).account_name == "v2"  # older than all kept: the oldest


def test_unknown_account_is_found_with_the_lookup_and_kept_in_state():
    lookup = FakeLookupFactory([account(account_name="From Postgres")])
    events = [txn_at(10, "t1"), txn_at(20, "t2")]
    run_join(
        events,
        [("t1", "From Postgres", 10.0), ("t2", "From Postgres", 20.0)],
        lookup_factory=lookup,
    )
    assert LOOKED_UP == ["a1"]


def test_lookup_miss_buffers_without_asking_again_until_the_account_arrives():
    events = [txn_at(10, "t1"), txn_at(20, "t2"), acct_at(30)]
    run_join(
        events,
        [("t1", "Ada Lovelace", 30.0), ("t2", "Ada Lovelace", 30.0)],
        lookup_factory=FakeLookupFactory(),
    )
    assert LOOKED_UP == ["a1"]


def test_unavailable_lookup_buffers_and_then_releases_unjoined():
    run_join(
        [txn_at(10, "t1")], [("t1", None, 70.0)], lookup_factory=FakeLookupFactory(unavailable=True)
    )
    assert LOOKED_UP == ["a1"]


def test_idle_account_state_is_dropped_and_fetched_again_by_the_lookup():
    lookup = FakeLookupFactory([account(account_name="From Postgres")])
    events = [acct_at(0), 400, txn_at(500, "t1")]
    run_join(events, [("t1", "From Postgres", 500.0)], lookup_factory=lookup)
    assert LOOKED_UP == ["a1"]


def test_idle_account_state_without_lookup_leaves_later_transactions_unjoined():
    run_join([acct_at(0), 400, txn_at(500, "t1")], [("t1", None, 560.0)])


def test_a_full_buffer_lets_transactions_through_unjoined():
    events = [txn_at(10, "t1"), txn_at(11, "t2"), txn_at(12, "t3")]
    run_join(events, [("t1", None, 70.0), ("t2", None, 71.0), ("t3", None, 12.0)], max_buffered=2)


def test_keys_are_joined_independently():
    events = [
        acct_at(0),
        acct_at(0, account_id="a2", account_name="Bob"),
        5,
        txn_at(10, "t1"),
        txn_at(10, "t2", account_id="a2"),
        txn_at(10, "t3", "a3"),
    ]
    run_join(events, [("t1", "Ada Lovelace", 10.0), ("t2", "Bob", 10.0), ("t3", None, 70.0)])


def test_bounded_input_releases_buffered_transactions_at_the_end_and_counts():
    lookup = FakeLookupFactory([account(account_id="a5", account_name="From Postgres")])
    pipeline = batch_pipeline()
    accounts = pipeline | "Accounts" >> beam.Create([("a1", account())])
    transactions = pipeline | "Transactions" >> beam.Create(
        [
            ("a5", transaction(transaction_id="t5", account_id="a5")),
            ("a5", transaction(transaction_id="t6", account_id="a5")),
            ("a9", transaction(transaction_id="t9", account_id="a9")),
        ]
    )
    joined = (accounts, transactions) | "JoinWithAccounts" >> JoinWithAccounts(
        lookup, ttl=timedelta(minutes=10)
    )
    assert_that(
        joined | beam.Map(lambda j: (j.transaction.transaction_id, j.account is not None)),
        equal_to([("t5", True), ("t6", True), ("t9", False)]),
    )
    # At the end of the input the watermark jumps to +inf: every timer fires, so the
    # buffered t9 goes out unjoined and both accounts in state are evicted.
    assert run_and_count(pipeline) == {
        "lookup_hits": 1,
        "joined": 2,
        "lookup_misses": 1,
        "buffered": 1,
        "expired_unjoined": 1,
        "accounts_evicted": 2,
    }


@pytest.mark.parametrize(
    "args",
    [
        {"ttl": 0},
        {"ttl": timedelta(seconds=-1)},
        {"ttl": 60, "account_idle": 60},
        {"max_buffered": 0},
        {"lookup_factory": "postgres://"},
    ],
)
def test_bad_arguments_fail_at_construction(args):
    with pytest.raises(ValueError):
        JoinWithAccounts(**args)
