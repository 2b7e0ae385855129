"""Tests of the pure risk formula: ordinary traffic scores low, fraud patterns score high."""

from __future__ import annotations

import dataclasses
import random
import statistics
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.currency import CURRENCIES
from pipeline.domain.scoring import (
    THRESHOLD,
    WEIGHTS,
    AccountFeatures,
    is_suspicious,
    score_transaction,
    update,
)
from pipeline.records import TRANSACTION_STATUSES, TRANSACTION_TYPES

from factories import T0, account, transaction, examples


def history(amounts, start=T0 - timedelta(days=30), step=timedelta(days=1)) -> AccountFeatures:
    """Features after one completed payment per ``step`` with the given EUR amounts."""
    features = AccountFeatures()
    for i, amount in enumerate(amounts):
        features = update(
            features,
            transaction(transaction_id=f"h{i}", amount=amount, datetime_occurred=start + i * step),
        )
    return features


def burst(count, before=T0, status="completed") -> AccountFeatures:
    """Features after ``count`` 40 EUR payments in the minutes just before ``before``."""
    features = AccountFeatures()
    for i in range(count):
        when = before - timedelta(seconds=30 * (i + 1))
        txn = transaction(transaction_id=f"b{i}", datetime_occurred=when, transaction_status=status)
        features = update(features, txn)
    return features


def busy_account() -> AccountFeatures:
    """Features of an account that makes a 40 EUR payment every 10 seconds, for 2 hours."""
    return history([40.0] * 720, start=T0 - timedelta(hours=2), step=timedelta(seconds=10))


def signals(reasons) -> set[str]:
    return {reason.split(":")[0] for reason in reasons}


def test_an_ordinary_payment_scores_zero():
    assert score_transaction(transaction(), account(), history([40.0] * 20)) == (0, ())


def test_amount_over_1000_alone_is_not_risky_unlike_the_old_flink_job():
    features = history([1200.0, 1500.0, 900.0, 1800.0, 1100.0, 1300.0])
    score, reasons = score_transaction(transaction(amount=1500.0), account(), features)
    assert score == 0, reasons


def test_ordinary_traffic_mostly_scores_below_20_and_rarely_reaches_the_threshold():
    rng = random.Random(7)
    scores = []
    for n in range(200):
        acct = account(account_id=f"a{n}", balance=rng.uniform(2_000, 50_000))
        typical = rng.uniform(20, 400)
        features = AccountFeatures()
        for i in range(30):
            when = T0 - timedelta(days=30) + timedelta(hours=rng.uniform(0, 24 * 30))
            txn = transaction(
                transaction_id=f"t{n}-{i}",
                account_id=acct.account_id,
                amount=round(rng.lognormvariate(0, 0.5) * typical, 2),
                currency=rng.choice(["EUR", "EUR", "USD", "GBP"]),
                transaction_type=rng.choice(["payment", "transfer", "payment", "deposit"]),
                datetime_occurred=when.replace(hour=rng.randint(6, 23)),
            )
            scores.append(score_transaction(txn, acct, features)[0])
            features = update(features, txn)
    assert sum(score < 20 for score in scores) / len(scores) > 0.9
    assert sum(is_suspicious(score) for score in scores) / len(scores) < 0.01


def test_card_testing_burst_at_night_is_suspicious():
    night = T0.replace(hour=3)
    features = burst(11, before=night, status="failed")
    txn = transaction(transaction_status="failed", datetime_occurred=night)
    score, reasons = score_transaction(txn, account(), features)
    assert score >= THRESHOLD
    assert signals(reasons) == {"velocity_burst", "failed_status", "night"}
    assert reasons[0] == f"velocity_burst: 12 transactions in 10 min (+{WEIGHTS['velocity_burst']})"


def test_account_takeover_draining_the_balance_is_suspicious():
    txn = transaction(amount=4900.0, transaction_type="withdrawal")
    score, reasons = score_transaction(txn, account(balance=5000.0), history([40.0] * 20))
    assert score >= THRESHOLD
    assert signals(reasons) == {"amount_extreme", "balance_share", "withdrawal"}
    assert "balance_share: 98% of the balance (+25)" in reasons


def test_new_account_moving_a_large_sum_is_suspicious():
    fresh = account(created_at=T0 - timedelta(days=1), balance=25_000.0)
    txn = transaction(amount=25_000.0, currency="USD", transaction_type="transfer")
    score, reasons = score_transaction(txn, fresh, AccountFeatures())
    assert score >= THRESHOLD
    assert signals(reasons) == {"new_account", "large_amount", "balance_share"}
    assert "large_amount: 23000 EUR (+20)" in reasons


@pytest.mark.parametrize(
    "txn, acct, features, signal",
    [
        (transaction(), None, AccountFeatures(), "unknown_account"),
        (transaction(transaction_status="failed"), account(), AccountFeatures(), "failed_status"),
        (transaction(transaction_type="withdrawal"), account(), AccountFeatures(), "withdrawal"),
        (
            transaction(datetime_occurred=T0.replace(hour=4, minute=59)),
            account(),
            AccountFeatures(),
            "night",
        ),
        (
            transaction(amount=200_000.0),
            account(balance=1e7),
            AccountFeatures(),
            "very_large_amount",
        ),
        (
            transaction(),
            account(created_at=T0 - timedelta(days=6)),
            AccountFeatures(),
            "new_account",
        ),
        (transaction(amount=10.0), account(balance=-5.0), AccountFeatures(), "balance_share"),
        (transaction(amount=500.0), account(), history([40.0] * 5), "amount_extreme"),
        (
            transaction(datetime_occurred=T0.replace(hour=20)),
            account(),
            history([40.0] * 20),
            "unusual_hour",
        ),
        (transaction(), account(), burst(4), "velocity"),
        (transaction(), account(), burst(9), "velocity_burst"),
        (transaction(amount=200.0), account(), history([40.0] * 5), "amount_outlier"),
    ],
)
def test_each_signal_fires_alone_with_its_weight(txn, acct, features, signal):
    score, reasons = score_transaction(txn, acct, features)
    assert signals(reasons) == {signal}
    assert score == WEIGHTS[signal]
    assert reasons[0].endswith(f"(+{WEIGHTS[signal]})")


@pytest.mark.parametrize(
    "txn, acct, features",
    [
        (transaction(), account(), burst(3)),  # 4 in the window, the scored one included
        (transaction(amount=500.0), account(), history([40.0] * 4)),  # too little history
        (transaction(datetime_occurred=T0.replace(hour=5)), account(), AccountFeatures()),
        (transaction(), account(created_at=T0 - timedelta(days=7)), AccountFeatures()),
        (transaction(amount=4900.0, transaction_type="deposit"), account(), AccountFeatures()),
        (transaction(), account(), burst(20, before=T0 - timedelta(minutes=11))),
        (transaction(), account(), busy_account()),  # 33 in 10 min is its usual pace
        (transaction(), account(account_type="credit", balance=-900.0), AccountFeatures()),
        (transaction(datetime_occurred=T0.replace(hour=20)), account(), history([40.0] * 19)),
    ],
)
def test_signals_stay_quiet_just_below_their_thresholds(txn, acct, features):
    assert score_transaction(txn, acct, features) == (0, ())


def test_the_score_is_capped_at_100():
    txn = transaction(
        amount=5e5,
        transaction_type="withdrawal",
        transaction_status="failed",
        datetime_occurred=T0.replace(hour=2),
    )
    score, reasons = score_transaction(txn, None, burst(12, before=txn.datetime_occurred))
    assert score == 100 and sum(WEIGHTS[s] for s in signals(reasons)) > 100


def test_failed_transactions_do_not_move_the_amount_history():
    features = history([40.0] * 5)
    after = update(features, transaction(amount=9999.0, transaction_status="failed"))
    assert (after.count, after.mean_eur, after.std_eur) == (5, 40.0, 0.0)


amounts = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(amounts, min_size=2, max_size=40))
def test_mean_and_stdev_match_the_statistics_module(values):
    features = history(values)
    cents = [round(v * 100) / 100 for v in values]  # the history keeps EUR cents
    assert features.mean_eur == pytest.approx(statistics.mean(cents), rel=1e-9)
    assert features.std_eur == pytest.approx(statistics.stdev(cents), rel=1e-6, abs=1e-6)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3600), max_size=50), st.randoms())
def test_recent_timestamps_do_not_depend_on_arrival_order(offsets, rng):
    txns = [transaction(datetime_occurred=T0 + timedelta(seconds=s)) for s in offsets]
    shuffled = list(txns)
    rng.shuffle(shuffled)
    in_order, out_of_order = AccountFeatures(), AccountFeatures()
    for a, b in zip(txns, shuffled):
        in_order, out_of_order = update(in_order, a), update(out_of_order, b)
    assert in_order.recent == out_of_order.recent


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30 * 86400), amounts, st.booleans()), max_size=60),
       st.randoms())
def test_features_do_not_depend_on_the_order_of_the_updates(history_, rng):
    txns = [
        transaction(transaction_id=f"t{i}", datetime_occurred=T0 + timedelta(seconds=s),
                    amount=amount, transaction_status="failed" if failed else "completed")
        for i, (s, amount, failed) in enumerate(history_)
    ]
    shuffled = list(txns)
    rng.shuffle(shuffled)
    in_order, out_of_order = AccountFeatures(), AccountFeatures()
    for a, b in zip(txns, shuffled):
        in_order.add(a)
        out_of_order.add(b)
    assert in_order == out_of_order
    assert (in_order.mean_eur, in_order.std_eur) == (out_of_order.mean_eur, out_of_order.std_eur)


scored_inputs = st.fixed_dictionaries(
    {
        "transaction_type": st.sampled_from(TRANSACTION_TYPES),
        "transaction_status": st.sampled_from(TRANSACTION_STATUSES),
        "currency": st.sampled_from(sorted(CURRENCIES)),
        "hour": st.integers(0, 23),
        "balance": st.floats(-1e4, 1e7),
        "age_days": st.integers(0, 60),
        "history": st.lists(amounts, max_size=8),
        "burst": st.integers(0, 15),
    }
)


def scenario(inputs, amount):
    when = T0.replace(hour=inputs["hour"])
    txn = transaction(
        amount=amount,
        datetime_occurred=when,
        currency=inputs["currency"],
        transaction_type=inputs["transaction_type"],
        transaction_status=inputs["transaction_status"],
    )
    acct = account(balance=inputs["balance"], created_at=when - timedelta(days=inputs["age_days"]))
    features = history(inputs["history"], start=when - timedelta(days=20))
    for i in range(inputs["burst"]):
        features = update(
            features,
            transaction(
                transaction_id=f"b{i}",
                transaction_status="failed",
                datetime_occurred=when - timedelta(seconds=20 * (i + 1)),
            ),
        )
    return txn, acct, features


@settings(max_examples=examples(300), deadline=None)
@given(scored_inputs, amounts, amounts)
def test_a_larger_amount_never_lowers_the_score(inputs, a, b):
    low, high = sorted((a, b))
    txn, acct, features = scenario(inputs, low)
    low_score, _ = score_transaction(txn, acct, features)
    high_score, _ = score_transaction(
        transaction(**{**txn.__dict__, "amount": high}), acct, features
    )
    assert 0 <= low_score <= high_score <= 100


@settings(max_examples=examples(300), deadline=None)
@given(scored_inputs, amounts, st.integers(0, 30))
def test_more_recent_transactions_never_lower_the_score(inputs, amount, extra):
    txn, acct, features = scenario(inputs, amount)
    score, _ = score_transaction(txn, acct, features)
    busier = features
    for i in range(extra):
        seen = txn.datetime_occurred.timestamp() - 10 * (i + 1)
        busier = busier.copy()
        busier.recent = sorted((*busier.recent, seen))[-32:]
    assert score_transaction(txn, acct, busier)[0] >= score


@settings(max_examples=examples(300), deadline=None)
@given(scored_inputs, amounts)
def test_an_unknown_account_never_scores_below_zero_or_above_100(inputs, amount):
    txn, _, features = scenario(inputs, amount)
    score, reasons = score_transaction(txn, None, features)
    assert 0 <= score <= 100 and "unknown_account" in signals(reasons)
