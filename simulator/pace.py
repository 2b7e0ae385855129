"""Event time: how fast the simulated bank's clock runs, and how bursty its accounts look.

Two clocks drive the generator:

- *bank pace* (seeded runs): each account transacts at its own rate, only during its active
  hours, ``tx_per_account_per_day`` times a day on average over all accounts. The bank's
  total rate then follows the day: high while Europe and the Americas are awake, low in
  their night. :func:`hourly_rates` gives that rate for each UTC hour and
  :func:`next_arrival` draws the next transaction's time from it (a Poisson process whose
  rate is constant within each hour).
- *constant*: exponential gaps at a fixed rate (``--event-rate``, and live runs, whose
  timestamps follow the wall clock at ``--tps``).

:func:`burst_share` measures what a risk scorer's velocity signal sees: how many
transactions are the 5th (or later) of their account within 10 minutes.

>>> rates = hourly_rates([(1.0, [True] * 12 + [False] * 12)], 6.0)
>>> round(rates[0] * 3600, 3), rates[12]
(0.5, 0.0)
>>> next_arrival(11 * 3600.0, 1.0, rates) / 3600   # half an hour's worth by 12h, then night
25.0
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_TX_PER_ACCOUNT_PER_DAY",
    "HOUR_S",
    "burst_share",
    "hourly_rates",
    "next_arrival",
]

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
# A retail bank's customers: a few card payments, transfers and withdrawals a day.
DEFAULT_TX_PER_ACCOUNT_PER_DAY = 3.0
VELOCITY_WINDOW_S = 600.0
VELOCITY_COUNT = 5


def hourly_rates(
    habits: Iterable[tuple[float, Sequence[bool]]], tx_per_account_per_day: float
) -> tuple[float, ...]:
    """Transactions per second of the whole bank in each UTC hour (24 values).

    Args:
        habits: ``(activity weight, active_hours)`` of each account, ``active_hours``
            indexed by UTC hour. An account's rate is proportional to its weight while it
            is active, and zero otherwise.
        tx_per_account_per_day: the mean, over accounts, of transactions per day.

    >>> rates = hourly_rates([(1.0, [True] * 24), (3.0, [True] * 6 + [False] * 18)], 4.0)
    >>> round(sum(rates) * 3600, 6)          # 2 accounts x 4 a day
    8.0
    >>> round(rates[0] / rates[6], 6)        # both awake at 00h, one at 06h
    4.0
    """
    if tx_per_account_per_day <= 0:
        raise ValueError(
            f"hourly_rates: tx_per_account_per_day must be > 0, got {tx_per_account_per_day}"
        )
    awake_weight = [0.0] * 24
    accounts, weighted_hours = 0, 0.0
    for weight, active in habits:
        accounts += 1
        for hour in range(24):
            if active[hour]:
                awake_weight[hour] += weight
                weighted_hours += weight
    if not weighted_hours:
        raise ValueError("hourly_rates: no account is ever active")
    # lam * weight is one account's rate while awake; lam * sum(weight * hours) = the day's total
    lam = tx_per_account_per_day * accounts / (weighted_hours * HOUR_S)
    return tuple(lam * w for w in awake_weight)


def next_arrival(t: float, work: float, rates: Sequence[float]) -> float:
    """The time at which ``work`` units of the rate's integral have passed since ``t``.

    With ``work`` drawn from Exp(1) this is the next event of a Poisson process whose rate
    is ``rates[hour]`` within each UTC hour (``t`` in epoch seconds).

    >>> next_arrival(0.0, 1.8, [0.001] * 24)
    1800.0
    >>> next_arrival(0.0, 1000.0, [0.25] + [0.0] * 23)   # 900 by 01h, asleep until 00h
    86800.0
    """
    while True:
        hour_start = math.floor(t / HOUR_S) * HOUR_S
        left = hour_start + HOUR_S - t
        rate = rates[int(hour_start // HOUR_S) % 24]
        if rate > 0.0 and work <= rate * left:
            return t + work / rate
        work -= rate * left
        t = hour_start + HOUR_S


def burst_share(
    transactions: Iterable[tuple[str, float]],
    window_s: float = VELOCITY_WINDOW_S,
    count: int = VELOCITY_COUNT,
) -> dict:
    """How many transactions are the ``count``-th or later of their account in ``window_s``.

    A transaction at ``t`` counts those of its account in ``(t - window_s, t]``, itself
    included (a velocity rule's view). ``transactions`` are ``(account_id, epoch seconds)``
    pairs in any order.

    >>> stats = burst_share([("a", 0), ("a", 60), ("a", 120), ("a", 180), ("a", 240),
    ...                      ("a", 5000), ("b", 0)])
    >>> stats["transactions"], stats["bursty_transactions"], stats["bursty_accounts"]
    (7, 1, 1)
    >>> round(stats["bursty_transaction_share"], 4), stats["bursty_account_share"]
    (0.1429, 0.5)
    """
    by_account: dict[str, list[float]] = defaultdict(list)
    for account_id, at in transactions:
        by_account[account_id].append(float(at))
    bursty_transactions = bursty_accounts = total = 0
    for times in by_account.values():
        times.sort()
        start, bursty = 0, 0
        for i, at in enumerate(times):
            while times[start] <= at - window_s:
                start += 1
            if i - start + 1 >= count:
                bursty += 1
        total += len(times)
        bursty_transactions += bursty
        bursty_accounts += bursty > 0
    return {
        "transactions": total,
        "accounts": len(by_account),
        "bursty_transactions": bursty_transactions,
        "bursty_accounts": bursty_accounts,
        "bursty_transaction_share": bursty_transactions / total if total else 0.0,
        "bursty_account_share": bursty_accounts / len(by_account)
        if by_account
        else 0.0,
    }
