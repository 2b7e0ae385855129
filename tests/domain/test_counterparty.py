"""Tests of CounterpartyHistory: an inflow's final row depends on the set of inflows, not on
the order they arrived in, and its features mean what their names say."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import T0, transaction, examples
from pipeline.domain.counterparty import (
    COUNTERPARTY_FEATURES,
    LOG_HORIZON_S,
    LOG_SIZE,
    MARK_STRIDE,
    MAX_SENDERS,
    NO_COUNTERPARTY_VECTOR,
    CounterpartyHistory,
)
from pipeline.records import AttributedTransaction

SENDERS = [f"s{i}" for i in range(6)]
HOUR = 3600


def row(i: int, seconds: int, sender: str, amount: float = 100.0, score: int = 0,
        correction: bool = False) -> AttributedTransaction:
    txn = transaction(transaction_id=f"t{i:04d}", account_id=sender,
                      counterparty_account_id="cp", transaction_type="transfer", amount=amount,
                      datetime_occurred=T0 + timedelta(seconds=seconds))
    return AttributedTransaction(txn, sender, score, features=(float(i),), correction=correction)


def feed(history: CounterpartyHistory, rows) -> dict[str, AttributedTransaction]:
    """Feeds ``rows`` in order; the last row emitted per transaction id."""
    final = {}
    for each in rows:
        for out in history.add(each):
            final[out.transaction_id] = out
    return final


def named(out: AttributedTransaction) -> dict[str, float]:
    return dict(zip(COUNTERPARTY_FEATURES, out.features[1:]))


def same(a: dict, b: dict) -> bool:
    """Equal rows, nan equal to nan (a missing feature)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if (x.risk_score, x.transaction, x.account_name) != (y.risk_score, y.transaction,
                                                           y.account_name):
            return False
        if len(x.features) != len(y.features) or any(
            not (u == v or (math.isnan(u) and math.isnan(v)))
            for u, v in zip(x.features, y.features)
        ):
            return False
    return True


def brute_force(rows: list[AttributedTransaction]) -> dict[str, dict[str, float]]:
    """The window features by their definition: over the inflows earlier in event time."""
    def key(r):
        return r.transaction.datetime_occurred, r.transaction_id

    expected = {}
    for r in rows:
        at = r.transaction.datetime_occurred
        earlier = [e for e in rows if key(e) < key(r)]

        def within(hours, at=at, earlier=earlier):
            since = at - timedelta(hours=hours)
            return [e for e in earlier if e.transaction.datetime_occurred > since]

        first_seen = {}
        for e in sorted(earlier, key=key):
            first_seen.setdefault(e.account_id, e.transaction.datetime_occurred)
        expected[r.transaction_id] = {
            "cp_inflows": len(earlier),
            "cp_inflows_1h": len(within(1)),
            "cp_inflows_6h": len(within(6)),
            "cp_inflows_24h": len(within(24)),
            "cp_senders_6h": len({e.account_id for e in within(6)}),
            "cp_senders_24h": len({e.account_id for e in within(24)}),
            "cp_new_senders_6h": sum(t > at - timedelta(hours=6) for t in first_seen.values()),
            "cp_new_senders_24h": sum(t > at - timedelta(hours=24) for t in first_seen.values()),
            "cp_sender_inflows": sum(e.account_id == r.account_id for e in earlier),
        }
    return expected


inflows = st.lists(
    st.tuples(st.integers(0, 23 * HOUR), st.sampled_from(SENDERS), st.floats(1, 20_000)),
    min_size=1, max_size=LOG_SIZE,
)


def build(specs) -> list[AttributedTransaction]:
    return [row(i, at, sender, round(amount, 2)) for i, (at, sender, amount) in enumerate(specs)]


def in_event_order(rows):
    return sorted(rows, key=lambda r: (r.transaction.datetime_occurred, r.transaction_id))


@settings(max_examples=examples(150), deadline=None)
@given(inflows, st.randoms())
def test_final_rows_do_not_depend_on_the_arrival_order(specs, rng):
    rows = build(specs)
    shuffled = list(rows)
    rng.shuffle(shuffled)
    in_order = feed(CounterpartyHistory(), in_event_order(rows))
    assert same(feed(CounterpartyHistory(), shuffled), in_order)


@settings(max_examples=examples(100), deadline=None)
@given(inflows, st.randoms())
def test_window_features_match_their_definition(specs, rng):
    rows = build(specs)
    shuffled = list(rows)
    rng.shuffle(shuffled)
    final = feed(CounterpartyHistory(), shuffled)
    for tid, expected in brute_force(rows).items():
        features = named(final[tid])
        assert {name: features[name] for name in expected} == expected, tid


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 * HOUR), st.sampled_from(SENDERS)),
                min_size=LOG_SIZE + 1, max_size=4 * LOG_SIZE),
       st.lists(st.integers(0, 7), min_size=4 * LOG_SIZE, max_size=4 * LOG_SIZE))
def test_long_streams_read_a_little_out_of_order_end_the_same(gaps, jitter):
    """Beyond the log (older inflows folded into the base, some leaving by the horizon), an
    input overtaken by fewer than LOG_SIZE later ones, within the horizon, is still exact."""
    at, rows = 0, []
    for i, (gap, sender) in enumerate(gaps):
        at += gap
        rows.append(row(i, at, sender))
    arrival = [rows[i] for i in sorted(range(len(rows)), key=lambda i: i + jitter[i])]
    history = CounterpartyHistory()
    assert same(feed(history, arrival), feed(CounterpartyHistory(), rows))
    assert history.late == 0
    assert len(history.log) <= LOG_SIZE
    newest = history.log[-1].inflow.seen
    assert all(newest - e.inflow.seen <= LOG_HORIZON_S for e in history.log)


@settings(max_examples=examples(100), deadline=None)
@given(inflows, st.randoms())
def test_a_history_restored_from_its_tuple_continues_the_same(specs, rng):
    rows = build(specs)
    rng.shuffle(rows)
    cut = len(rows) // 2
    straight = feed(CounterpartyHistory(), rows)
    history = CounterpartyHistory()
    first = feed(history, rows[:cut])
    restored = CounterpartyHistory.from_tuple(history.to_tuple())
    assert restored.to_tuple() == history.to_tuple()
    assert same({**first, **feed(restored, rows[cut:])}, straight)


def test_a_correction_replaces_the_logged_row_and_keeps_its_features():
    history = CounterpartyHistory()
    history.add(row(0, 0, "s0"))
    first = history.add(row(1, 60, "s1"))[0]
    corrected = history.add(row(1, 60, "s1", score=70, correction=True))
    assert [r.risk_score for r in corrected] == [70]
    assert corrected[0].features == first.features
    # A later inflow arriving late re-emits t0001 as last corrected, with new features.
    again = feed(history, [row(2, 30, "s2")])
    assert again["t0001"].risk_score == 70
    assert named(again["t0001"])["cp_inflows"] == 2


def test_a_correction_after_a_state_write_is_what_the_next_write_keeps():
    """The stored form of a logged row is made once per row: a correction replaces it."""
    history = CounterpartyHistory()
    history.add(row(0, 0, "s0"))
    history.add(row(1, 60, "s1"))
    history.to_tuple()  # the state written after a bundle
    history.add(row(1, 60, "s1", score=70, correction=True))
    restored = CounterpartyHistory.from_tuple(history.to_tuple())
    assert [e.row.risk_score for e in restored.log] == [0, 70]


def test_a_correction_of_an_inflow_that_left_the_log_is_not_counted_twice():
    history = CounterpartyHistory()
    feed(history, [row(i, 60 * i, "s0") for i in range(LOG_SIZE + 3)])
    counted = history.base.count + len(history.log)
    out = history.add(row(0, 0, "s0", score=40, correction=True))
    assert [r.transaction_id for r in out] == ["t0000"]
    assert history.base.count + len(history.log) == counted
    assert history.late == 1


def test_inflows_older_than_the_log_are_counted_late_not_lost():
    history = CounterpartyHistory()
    feed(history, [row(i, 60 * i, "s0") for i in range(LOG_SIZE + 3)])
    out = history.add(row(999, -3600, "s9"))
    assert [r.transaction_id for r in out] == ["t0999"]
    assert history.late == 1 and history.base.count + len(history.log) == LOG_SIZE + 4


def test_a_first_inflow_has_no_history():
    out = CounterpartyHistory().add(row(0, 0, "s0"))[0]
    features = named(out)
    assert features["cp_inflows"] == 0 and features["cp_sender_inflows"] == 0
    assert math.isnan(features["cp_age_days"]) and math.isnan(features["cp_amount_z"])


def test_a_burst_of_new_senders_is_surprising_at_a_quiet_counterparty():
    # One inflow a day for 20 days, then five new senders within an hour.
    quiet = [row(i, 86_400 * i, "s0") for i in range(20)]
    burst = [row(100 + i, 86_400 * 20 + 600 * i, f"new{i}") for i in range(5)]
    final = feed(CounterpartyHistory(), quiet + burst)
    ordinary, last = named(final["t0019"]), named(final["t0104"])
    assert last["cp_senders_6h"] == 4 and last["cp_new_senders_6h"] == 4
    assert last["cp_senders_6h_surprise"] > 3 > ordinary["cp_senders_6h_surprise"]


def test_no_counterparty_means_every_feature_missing():
    assert len(NO_COUNTERPARTY_VECTOR) == len(COUNTERPARTY_FEATURES)
    assert all(math.isnan(v) for v in NO_COUNTERPARTY_VECTOR)


# -- settling: unsettled inflows stay in the log until the watermark passes them -------------
def feed_produced(history: CounterpartyHistory, rows) -> dict[str, AttributedTransaction]:
    """Feeds ``rows`` produced at their own event time (µs), none settled."""
    final = {}
    for each in rows:
        produced = int(each.transaction.datetime_occurred.timestamp() * 1_000_000)
        for out in history.add(each, produced):
            final[out.transaction_id] = out
    return final


def partition_by_partition(gaps, senders: list[str], partitions: int, rng):
    """Rows ``gaps`` apart in event time, and the order a bounded run reads them in: the
    senders spread over ``partitions``, read one partition after another in a random order."""
    at, rows = 0, []
    for i, (gap, sender) in enumerate(gaps):
        at += gap
        rows.append(row(i, at, sender))
    by_partition = [[r for r in rows if senders.index(r.account_id) % partitions == p]
                    for p in range(partitions)]
    rng.shuffle(by_partition)
    return rows, [r for part in by_partition for r in part]


@settings(max_examples=examples(20), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * HOUR), st.sampled_from(SENDERS)),
                min_size=2 * LOG_SIZE, max_size=4 * LOG_SIZE),
       st.integers(2, 4), st.randoms())
def test_unsettled_inflows_read_partition_by_partition_end_as_in_order(gaps, partitions, rng):
    """A bounded run reads one partition's inflows after another's: far beyond LOG_SIZE out
    of order. Nothing settled meanwhile, the final rows are those of the event-time order."""
    rows, arrival = partition_by_partition(gaps, SENDERS, partitions, rng)
    history = CounterpartyHistory()
    final = feed_produced(history, arrival)
    assert history.late == 0 and len(history.log) == len(rows)
    final.update((out.transaction_id, out) for out in history.settle(2**62))  # the watermark
    assert same(final, feed(CounterpartyHistory(), rows))


MANY_SENDERS = [f"m{i:03d}" for i in range(3 * MAX_SENDERS // 2)]  # the table evicts


@settings(max_examples=examples(20), deadline=None)
@given(st.lists(st.tuples(st.integers(0, HOUR), st.sampled_from(MANY_SENDERS)),
                min_size=4 * MARK_STRIDE, max_size=12 * MARK_STRIDE),
       st.integers(2, 4), st.randoms())
def test_a_busy_counterparty_read_partition_by_partition_ends_as_in_order(gaps, partitions, rng):
    """More senders than the table keeps (it evicts, so the features are not a plain
    function of the set) and more inflows than a mark's stride: the shortcuts taken on the
    way (the marks, folding an inflow in out of order) leave the features of every inflow
    known, and the final rows, those of the event-time order."""
    rows, arrival = partition_by_partition(gaps, MANY_SENDERS, partitions, rng)
    history = CounterpartyHistory()
    final = feed_produced(history, arrival)
    in_order = CounterpartyHistory()
    expected = feed(in_order, rows)
    assert history._features() == in_order._features()
    final.update((out.transaction_id, out) for out in history.settle(2**62))  # the watermark
    assert same(final, expected)


def test_settled_inflows_leave_the_log_down_to_its_size():
    rows = [row(i, 60 * i, SENDERS[i % 3]) for i in range(3 * LOG_SIZE)]
    history = CounterpartyHistory()
    feed_produced(history, rows)
    assert len(history.log) == 3 * LOG_SIZE  # nothing settled: all held
    middle = int(rows[LOG_SIZE].transaction.datetime_occurred.timestamp() * 1_000_000)
    history.settle(middle)
    assert len(history.log) == 2 * LOG_SIZE - 1  # the first LOG_SIZE + 1 may leave
    history.settle(2**62)
    assert len(history.log) == LOG_SIZE
    assert history.base.count == 2 * LOG_SIZE


def test_the_settled_time_survives_the_state_coder():
    history = CounterpartyHistory()
    feed_produced(history, [row(i, 60 * i, "s1") for i in range(3)])
    history.settle(123)
    restored = CounterpartyHistory.from_tuple(history.to_tuple())
    assert restored.settled == 123
    assert [e.produced for e in restored.log] == [e.produced for e in history.log]


def test_corrections_wait_for_the_watermark_and_leave_once():
    """Three earlier inflows arrive after a later one: each leaves at once with the features
    of the inflows before it; the later one is corrected once, when the watermark moves, with
    the features of the event-time order."""
    rows = [row(i, 60 * i, SENDERS[i]) for i in range(4)]
    history = CounterpartyHistory()
    produced = iter(range(1, 100))
    emitted = [out.transaction_id for r in (rows[3], rows[0], rows[2], rows[1])
               for out in history.add(r, next(produced))]
    assert emitted == ["t0003", "t0000", "t0002", "t0001"]  # no corrections yet
    corrections = history.settle(2)  # the watermark moves
    assert [out.transaction_id for out in corrections] == ["t0002", "t0003"]
    assert named(corrections[-1])["cp_inflows"] == 3.0
    assert named(corrections[0])["cp_inflows"] == 2.0
    assert history.settle(4) == []  # nothing stale is left: nothing leaves twice
    assert history.stale is None


def test_inflows_waiting_for_their_correction_survive_the_state_coder():
    rows = [row(i, 60 * i, SENDERS[i]) for i in range(3)]
    history = CounterpartyHistory()
    for produced, r in enumerate((rows[2], rows[0], rows[1]), start=1):
        history.add(r, produced)
    restored = CounterpartyHistory.from_tuple(history.to_tuple())
    assert restored.stale == history.stale is not None
    corrections = restored.settle(3)
    assert [out.transaction_id for out in corrections] == ["t0002"]
    assert named(corrections[0])["cp_inflows"] == 2.0
