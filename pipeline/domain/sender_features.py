"""The sender's side of the model's feature vector: the transaction against its account's past.

:func:`sender_vector` describes a transaction by comparing it with the
:class:`~pipeline.domain.account_features.AccountFeatures` of the account's *earlier*
transactions (in event time), so it is a function of that set and the transaction alone:
the same input gives the same vector whatever order it was read in. Values are floats in
the order of :data:`SENDER_FEATURES`; ``nan`` where a value is undefined (no history, no
counterparty, unknown account), which the model reads as missing.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.records import Account, Transaction
>>> when = datetime(2026, 3, 2, 14, tzinfo=UTC)
>>> habit = AccountFeatures()
>>> for day in range(1, 11):
...     habit.add(Transaction(f"h{day}", "a1", "a2", "transfer", 50.0, "EUR", "completed",
...                           when - timedelta(days=day), None, "cleared"))
>>> new_payee = Transaction("t1", "a1", "a9", "transfer", 400.0, "EUR", "completed", when,
...                         None, "unidentified")
>>> vector = dict(zip(SENDER_FEATURES, sender_vector(new_payee, None, habit, 0)))
>>> round(vector["amount_vs_kind_habit"], 2), vector["pair_count"], vector["new_payees_7d"]
(2.08, 0.0, 0.0)
"""

from __future__ import annotations

import math

from pipeline.domain.account_features import (
    LEVELS_PER_NEPER,
    NO_COUNTERPARTY,
    RATE_MIN_SPAN_S,
    AccountFeatures,
    Facts,
    facts,
)
from pipeline.domain.currency import to_eur
from pipeline.domain.surprise import poisson_surprise
from pipeline.records import Account, Transaction

__all__ = ["SENDER_FEATURES", "sender_vector"]

NAN = math.nan
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MIN_HABIT = 3  # earlier amounts of a kind before its habit is known
LEVEL_STD_FLOOR = 200  # 0.2 neper: steady payers don't get a zero spread
HIGH_LEVEL = 1099  # ln(3): "three times the habit"
ABOVE_HABIT_LEVEL = 693  # ln(2): "twice the habit"
SMALL_CENTS = 300  # card-testing amounts: under 3 EUR
NEAR_THRESHOLD_EUR = (9_000.0, 10_000.0)  # just under a common 10,000 reporting threshold

SENDER_FEATURES: tuple[str, ...] = (
    # the transaction itself
    "amount_eur_log",  # ln(1 + amount in EUR)
    "is_transfer", "is_payment", "is_withdrawal", "is_deposit",
    "is_failed", "is_pending",
    "roundness",  # trailing zeros of the amount in its own currency (-1: has cents)
    "near_threshold",  # 9,000-9,999.99 EUR
    "rule_score",  # the explainable rules' 0-100 score
    # the account
    "account_known", "account_age_days", "balance_share",
    # its habit
    "history_count",  # earlier non-failed transactions
    "kind_count",  # ...of this transaction's type
    "amount_vs_kind_habit",  # ln(amount / geometric mean of this type's amounts)
    "amount_kind_z",  # the same in standard deviations of this type's log-amounts
    "amount_vs_habit",  # ln(amount / geometric mean of all amounts)
    "hour_share",  # share of earlier transactions within +-1 h of this UTC hour
    "hour_share_before_today",  # share of the transactions older than 24 h in this UTC hour
    "usual_per_day",  # the account's own rate
    "gap_log",  # ln(1 + seconds since the previous transaction)
    # the recent past (the newest MAX_RECENT transactions)
    "count_10m", "count_1h", "count_24h",
    "count_24h_vs_usual",
    "count_24h_surprise",  # -log10 of the chance of so many in 24 h at the usual rate
    "failed_1h", "small_1h", "withdrawals_24h",
    "same_amount_24h",  # earlier transactions in 24 h of exactly this amount
    "same_amount_24h_above_habit",  # the same, when this amount is 2x its type's habit or more
    "high_12h",  # earlier transactions in 12 h at 3x their type's habit or more
    "high_new_payees_24h",  # ...in 24 h, to a counterparty first paid within 24 h
    "spend_24h_vs_daily",  # money out in 24 h against the usual daily outflow
    # the counterparty, as this account knows it
    "has_counterparty",
    "pair_count",  # earlier transactions to this counterparty (0: a new payee)
    "pair_age_days", "pair_gap_hours",
    "amount_vs_pair",  # ln(amount / geometric mean paid to this counterparty)
    "new_payee_vs_habit",  # amount_vs_kind_habit when this counterparty is new, else missing
    "pair_count_24h",
    "new_pair_count_24h",  # pair_count_24h when the counterparty was first paid within 7 days
    "payees_24h",  # distinct counterparties in 24 h
    "new_payees_24h", "new_payees_7d",  # counterparties first paid within 24 h / 7 days
)


def _spread(count: int, levels: int, levels_sq: int) -> float:
    """Standard deviation (floored) of ``count`` levels."""
    if count < 2:
        return float(LEVEL_STD_FLOOR)
    variance = (count * levels_sq - levels * levels) / (count * (count - 1))
    return max(math.sqrt(max(variance, 0.0)), LEVEL_STD_FLOOR)


def _roundness(amount: float) -> int:
    if amount != int(amount):
        return -1
    whole, zeros = int(amount), 0
    while whole and whole % 10 == 0 and zeros < 4:
        whole //= 10
        zeros += 1
    return zeros


def _account(txn: Transaction, account: Account | None, at: float) -> tuple:
    if account is None:
        return 0.0, NAN, NAN
    age = (at - account.created_at.timestamp()) / DAY if account.created_at else NAN
    if txn.transaction_type == "deposit" or account.balance <= 0:
        share = NAN
    else:
        share = min(txn.amount / account.balance, 100.0)
    return 1.0, age, share


def _recent(f: AccountFeatures, fact: Facts, means: list) -> tuple:
    """One pass over the recent transactions of the 24 h before ``fact``."""
    at, cp, own_cents = fact.seen, fact.counterparty, fact.cents
    hour_ago, ten_min_ago, half_day_ago = at - HOUR, at - 10 * MINUTE, at - 12 * HOUR
    new_since = at - DAY
    pairs = f.pairs
    day = f.since(new_since)
    count_10m = count_1h = failed_1h = small_1h = withdrawals = same = high = 0
    high_new = to_cp = spent = this_hour = 0
    payees = set()
    own_hour = fact.hour
    for seen, hour, cents, kind, payee, level in day:
        if hour == own_hour:
            this_hour += 1
        if seen > hour_ago:
            count_1h += 1
            if cents < 0:
                failed_1h += 1
            elif cents < SMALL_CENTS:
                small_1h += 1
            if seen > ten_min_ago:
                count_10m += 1
        if kind == 2:
            withdrawals += 1
        if kind != 3 and cents > 0:
            spent += cents  # money out: transfers, payments, withdrawals
        if cents == own_cents and cents >= 0:
            same += 1
        mean = means[kind]
        if mean is not None and level - mean >= HIGH_LEVEL:
            if seen > half_day_ago:
                high += 1
            if payee and pairs[payee][0] > new_since:
                high_new += 1
        if payee:
            payees.add(payee)
            if payee == cp:
                to_cp += 1
    return (len(day), count_10m, count_1h, failed_1h, small_1h, withdrawals, same, high,
            high_new, spent, to_cp, len(payees), this_hour)


def sender_vector(
    txn: Transaction, account: Account | None, f: AccountFeatures, rule_score: int,
    fact: Facts | None = None,
) -> tuple[float, ...]:
    """The :data:`SENDER_FEATURES` of ``txn`` against the features ``f`` of its account's
    earlier transactions (``fact``: ``facts(txn)``, when already at hand)."""
    fact = fact or facts(txn)
    at, level, kind = fact.seen, fact.level, fact.kind
    amount_eur = to_eur(abs(txn.amount), txn.currency)
    counts, sums = f.kind_count, f.kind_levels
    means = [sums[k] / n if n >= MIN_HABIT else None for k, n in enumerate(counts)]
    mean = means[kind]
    if level >= 0 and mean is not None:
        vs_kind = (level - mean) / LEVELS_PER_NEPER
        kind_z = (level - mean) / _spread(counts[kind], sums[kind], f.kind_levels_sq[kind])
    else:
        vs_kind = kind_z = NAN
    counted = counts[0] + counts[1] + counts[2] + counts[3]
    if level >= 0 and counted >= MIN_HABIT:
        vs_all = (level - (sums[0] + sums[1] + sums[2] + sums[3]) / counted) / LEVELS_PER_NEPER
    else:
        vs_all = NAN
    seen = f.seen
    hours, hour = f.hours, fact.hour
    nearby = hours[hour - 1] + hours[hour] + hours[(hour + 1) % 24]
    hour_share = nearby / seen if seen >= 5 else NAN
    before_today = seen - len(f.since(at - DAY))
    if seen:
        span = f.last_seen - f.first_seen
        usual_per_day = seen / max(span, RATE_MIN_SPAN_S) * DAY
        gap = math.log1p(max(at - f.last_seen, 0.0))
        daily_out = (f.kind_cents[0] + f.kind_cents[1] + f.kind_cents[2]) / max(span / DAY, 1.0)
    else:
        usual_per_day, gap, daily_out = 0.0, NAN, 0.0
    (count_24h, count_10m, count_1h, failed_1h, small_1h, withdrawals, same, high, high_new,
     spent, to_cp, payees, this_hour_24h) = _recent(f, fact, means)
    before_today = seen - count_24h
    if before_today >= 5:
        hour_before_today = (hours[hour] - this_hour_24h) / before_today
    else:
        hour_before_today = NAN
    out_now = fact.cents if kind != 3 and fact.cents > 0 else 0
    above_habit = level >= 0 and mean is not None and level - mean >= ABOVE_HABIT_LEVEL
    spend_ratio = (spent + out_now) / daily_out if daily_out else NAN
    cp = fact.counterparty
    if cp == NO_COUNTERPARTY:
        pair = (0.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN)
    else:
        new_24h = new_7d = 0
        for first, _, _, _ in f.pairs.values():
            if first > at - 7 * DAY:
                new_7d += 1
                if first > at - DAY:
                    new_24h += 1
        known = f.pairs.get(cp)
        if known is None:
            pair = (1.0, 0.0, NAN, NAN, NAN, vs_kind, float(to_cp), float(to_cp))
        else:
            first, last, n, levels = known
            vs_pair = (level - levels / n) / LEVELS_PER_NEPER if level >= 0 else NAN
            recent = float(to_cp) if first > at - 7 * DAY else 0.0
            pair = (1.0, float(n), (at - first) / DAY, (at - last) / HOUR, vs_pair, NAN,
                    float(to_cp), recent)
        pair += (float(payees), float(new_24h), float(new_7d))
    known_account, age, share = _account(txn, account, at)
    status = txn.transaction_status
    return (
        math.log1p(amount_eur),
        float(kind == 0), float(kind == 1), float(kind == 2), float(kind == 3),
        float(status == "failed"), float(status == "pending"),
        float(_roundness(abs(txn.amount))),
        float(NEAR_THRESHOLD_EUR[0] <= amount_eur < NEAR_THRESHOLD_EUR[1]),
        float(rule_score),
        known_account, age, share,
        float(f.count), float(counts[kind]),
        vs_kind, kind_z, vs_all, hour_share, hour_before_today, usual_per_day, gap,
        float(count_10m), float(count_1h), float(count_24h),
        count_24h / max(usual_per_day, 0.5), poisson_surprise(count_24h, usual_per_day),
        float(failed_1h), float(small_1h), float(withdrawals), float(same),
        float(same if above_habit else 0), float(high), float(high_new), spend_ratio,
        *pair,
    )
