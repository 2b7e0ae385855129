"""Tests of the sender's features: they mean what their names say, and a history's final rows
carry the same features whatever order its transactions arrived in."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import T0, account, transaction, examples
from pipeline.domain.account_features import MAX_PAIRS, MAX_RECENT, AccountFeatures
from pipeline.domain.attribution import LOG_SIZE, AccountHistory
from pipeline.domain.scoring import score_transaction
from pipeline.domain.sender_features import SENDER_FEATURES, sender_vector

PAYEES = [f"p{i}" for i in range(5)]
HOUR = 3600


def txn(i, seconds, payee=None, amount=40.0, kind="transfer", status="completed"):
    return transaction(transaction_id=f"t{i:04d}", counterparty_account_id=payee, amount=amount,
                       transaction_type=kind, transaction_status=status,
                       datetime_occurred=T0 + timedelta(seconds=seconds))


def vector(history: list, current) -> dict[str, float]:
    features = AccountFeatures()
    for t in history:
        features.add(t)
    score, _ = score_transaction(current, account(), features)
    return dict(zip(SENDER_FEATURES, sender_vector(current, account(), features, score)))


histories = st.lists(
    st.tuples(st.integers(0, 48 * HOUR), st.sampled_from([None, *PAYEES]),
              st.sampled_from([10.0, 40.0, 100.0, 2500.0]),
              st.sampled_from(["transfer", "payment", "withdrawal"])),
    min_size=0, max_size=MAX_RECENT - 1,
)


@settings(max_examples=examples(150), deadline=None)
@given(histories, st.sampled_from(PAYEES), st.sampled_from([40.0, 100.0]))
def test_features_match_their_definition(specs, payee, amount):
    """The counting features, brute force over the earlier transactions (fewer than the
    recent list and the counterparty table hold, so nothing is cut)."""
    now = 48 * HOUR + 1
    earlier = [txn(i, at, p, a, k) for i, (at, p, a, k) in enumerate(specs)]
    current = txn(999, now, payee, amount)
    got = vector(earlier, current)

    def within(hours):
        return [t for t in earlier
                if t.datetime_occurred > current.datetime_occurred - timedelta(hours=hours)]

    to_payee = [t for t in earlier if t.counterparty_account_id == payee]
    first_paid = {}
    for t in sorted(earlier, key=lambda t: t.datetime_occurred):
        if t.counterparty_account_id:
            first_paid.setdefault(t.counterparty_account_id, t.datetime_occurred)
    assert got["history_count"] == len(earlier)
    assert got["count_1h"] == len(within(1)) and got["count_24h"] == len(within(24))
    assert got["pair_count"] == len(to_payee)
    assert got["pair_count_24h"] == sum(t.counterparty_account_id == payee for t in within(24))
    assert got["payees_24h"] == len({t.counterparty_account_id for t in within(24)} - {None})
    assert got["new_payees_24h"] == sum(
        at > current.datetime_occurred - timedelta(hours=24) for at in first_paid.values())
    assert got["same_amount_24h"] == sum(t.amount == amount for t in within(24))
    assert got["withdrawals_24h"] == sum(t.transaction_type == "withdrawal" for t in within(24))
    first = min((t.datetime_occurred for t in to_payee), default=None)
    if to_payee:
        age = (current.datetime_occurred - first) / timedelta(days=1)
        assert math.isclose(got["pair_age_days"], age)
    else:
        assert math.isnan(got["pair_age_days"])
    new_payee = not to_payee
    recently_new = bool(to_payee) and first > current.datetime_occurred - timedelta(days=7)
    assert got["new_pair_count_24h"] == (got["pair_count_24h"] if new_payee or recently_new
                                         else 0)
    transfers = [t.amount for t in earlier if t.transaction_type == "transfer"]
    if len(transfers) >= 3:
        habit = sum(math.log(a * 100) for a in transfers) / len(transfers)
        assert math.isclose(got["amount_vs_kind_habit"], math.log(amount * 100) - habit,
                            abs_tol=2e-3)  # levels are rounded to 1/1000 neper
        if new_payee:
            assert got["new_payee_vs_habit"] == got["amount_vs_kind_habit"]
        above = math.log(amount * 100) - habit >= math.log(2) + 1e-3
        if above:
            assert got["same_amount_24h_above_habit"] == got["same_amount_24h"]
    else:
        assert math.isnan(got["amount_vs_kind_habit"])
    if not new_payee:
        assert math.isnan(got["new_payee_vs_habit"])
    older = [t for t in earlier if t not in within(24)]
    if len(older) >= 5:
        same_hour = sum(t.datetime_occurred.hour == current.datetime_occurred.hour
                        for t in older)
        assert math.isclose(got["hour_share_before_today"], same_hour / len(older))
    else:
        assert math.isnan(got["hour_share_before_today"])


def test_the_vector_has_one_value_per_name():
    assert len(vector([], txn(0, 0, "p0"))) == len(SENDER_FEATURES) == len(set(SENDER_FEATURES))


def test_a_new_payee_at_five_times_the_habit():
    habit = [txn(i, i * 86_400, "p0", 40.0) for i in range(10)]
    got = vector(habit, txn(99, 10 * 86_400, "p9", 200.0))
    assert got["pair_count"] == 0 and got["has_counterparty"] == 1
    assert math.isclose(got["amount_vs_kind_habit"], math.log(5), abs_tol=2e-3)
    assert got["amount_kind_z"] > 3  # a steady payer: the spread is the floor


def test_repeated_fixed_cash_outs_are_counted():
    cash = [txn(i, 600 * i, None, 500.0, "withdrawal") for i in range(4)]
    got = vector(cash, txn(9, 3000, None, 500.0, "withdrawal"))
    assert got["same_amount_24h"] == 4 and got["withdrawals_24h"] == 4
    assert got["roundness"] == 2 and math.isnan(got["pair_count"])


def test_the_counterparty_table_keeps_the_most_recently_paid():
    features = AccountFeatures()
    for i in range(MAX_PAIRS + 5):
        features.add(txn(i, 60 * i, f"payee{i}"))
    got = dict(zip(SENDER_FEATURES, sender_vector(txn(999, 10_000, "payee0"), None, features, 0)))
    assert len(features.pairs) == MAX_PAIRS
    assert got["pair_count"] == 0  # the five least recent payees left the table


def history_rows(arrivals) -> dict:
    history = AccountHistory()
    history.add_version(0, account())
    final = {}
    for produced, t in arrivals:
        for row in history.add_transaction(produced, t):
            final[row.transaction.transaction_id] = (row.risk_score, row.risk_reasons,
                                                     tuple(map(repr, row.features)))
    return final


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * HOUR), st.sampled_from([None, *PAYEES]),
                          st.sampled_from([10.0, 40.0, 100.0, 2500.0])),
                min_size=LOG_SIZE + 1, max_size=4 * LOG_SIZE),
       st.lists(st.integers(0, 7), min_size=4 * LOG_SIZE, max_size=4 * LOG_SIZE))
def test_long_histories_read_a_little_out_of_order_end_the_same(specs, jitter):
    """Beyond the log (older transactions in the base, the counterparty table evicting), a
    transaction overtaken by fewer than LOG_SIZE later ones still ends with the same row."""
    at, txns = 0, []
    for i, (gap, payee, amount) in enumerate(specs):
        at += gap
        txns.append((i, txn(i, at, payee, amount)))
    in_order = history_rows(txns)
    shuffled = sorted(txns, key=lambda item: item[0] + jitter[item[0]])
    assert history_rows(shuffled) == in_order


def final_rows(arrivals, with_features: bool) -> dict:
    """The last row of each transaction: (score, reasons, features, account name)."""
    history = AccountHistory(with_features=with_features)
    final = {}
    for produced, item in arrivals:
        rows = (history.add_version(produced, item) if hasattr(item, "account_name")
                else history.add_transaction(produced, item))
        for row in rows:
            final[row.transaction.transaction_id] = (
                row.risk_score, row.risk_reasons, row.features,
                row.account.account_name if row.account else None,
            )
    return final


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * HOUR), st.sampled_from([None, *PAYEES]),
                          st.sampled_from([10.0, 40.0, 100.0, 2500.0])),
                min_size=1, max_size=3 * LOG_SIZE),
       st.randoms(use_true_random=False))
def test_without_features_the_rows_show_the_same_and_carry_none(specs, rng):
    """A history that computes no features (the job without a model) gives every transaction
    the same final score, reasons and account as one that does, in any arrival order, and
    its rows carry no features."""
    at, arrivals = 0, [(0, account(account_name="Ann")), (10**9, account(account_name="Bo"))]
    for i, (gap, payee, amount) in enumerate(specs):
        at += gap
        arrivals.append((i * 1000, txn(i, at, payee, amount)))
    rng.shuffle(arrivals)
    full = final_rows(arrivals, with_features=True)
    bare = final_rows(arrivals, with_features=False)
    assert sorted(bare) == sorted(full) == sorted(f"t{i:04d}" for i in range(len(specs)))
    assert all(features == () for _, _, features, _ in bare.values())
    assert all(len(features) == len(SENDER_FEATURES) for _, _, features, _ in full.values())
    assert {tid: (s, r, n) for tid, (s, r, _, n) in bare.items()} == {
        tid: (s, r, n) for tid, (s, r, _, n) in full.items()
    }
