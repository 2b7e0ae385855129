"""The risk formula: per-account rolling features and a 0–100 score with reasons.

Pure functions, no Beam: :func:`update` folds a transaction into an account's
:class:`~pipeline.domain.account_features.AccountFeatures`, and :func:`score_transaction` scores a transaction against its
account (``None`` after a left-join miss) and the features of the account's *earlier*
transactions. Each signal that fires adds its weight from :data:`WEIGHTS` and one reason
``"<signal>: <detail> (+<weight>)"``; the sum is capped at 100. A score at or above
:data:`THRESHOLD` marks a transaction as suspicious.

>>> from dataclasses import replace
>>> from pipeline.records import Account, Transaction
>>> when = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
>>> account = Account("a1", "Ada", balance=5000.0, created_at=datetime(2020, 1, 1,
...                   tzinfo=UTC))
>>> txn = Transaction("t1", "a1", "a2", "payment", 40.0, "EUR", "completed", when,
...                   "Bank A", "unidentified")
>>> score_transaction(txn, account, AccountFeatures())
(0, ())
>>> history = AccountFeatures()
>>> for day in range(1, 11):
...     history = update(history, replace(txn, datetime_occurred=when - timedelta(days=day)))
>>> drain = replace(txn, transaction_type="withdrawal", amount=4900.0,
...                 datetime_occurred=when.replace(hour=3))
>>> score, reasons = score_transaction(drain, account, history)
>>> score, score >= THRESHOLD
(90, True)
>>> reasons[0]
'amount_extreme: 4900 EUR is 122.5x the mean of 40 EUR (+50)'
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from pipeline.domain.account_features import AccountFeatures, amount_cents, facts
from pipeline.domain.currency import to_eur
from pipeline.records import Account, Transaction

__all__ = [
    "THRESHOLD",
    "WEIGHTS",
    "AccountFeatures",
    "amount_cents",
    "facts",
    "is_suspicious",
    "score_transaction",
    "update",
]

THRESHOLD = 50

# Points per signal. Where two signals grade the same thing ("velocity" and
# "velocity_burst", "amount_outlier" and "amount_extreme"), only the stronger one fires.
WEIGHTS: Mapping[str, int] = MappingProxyType(
    {
        "velocity": 30,
        "velocity_burst": 50,
        "amount_extreme": 50,
        "amount_outlier": 35,
        "very_large_amount": 35,
        "large_amount": 20,
        "balance_share": 25,
        "unusual_hour": 20,
        "new_account": 15,
        "unknown_account": 15,
        "failed_status": 10,
        "withdrawal": 10,
        "night": 5,
    }
)

VELOCITY_WINDOW = timedelta(minutes=10)
VELOCITY_COUNT = 5  # transactions in the window, the scored one included
BURST_COUNT = 10
VELOCITY_RATIO = 4.0  # ...and this many times the account's own rate
MIN_HISTORY = 5  # earlier (non-failed) transactions before an amount outlier can fire
OUTLIER_Z = 3.0
OUTLIER_RATIO = 3.0  # ...and at least this multiple of the mean
EXTREME_RATIO = 10.0
STD_FLOOR_SHARE = 0.1  # std never below 10% of the mean: steady payers don't get σ≈0
HOUR_HISTORY = 20  # earlier transactions before an hour can be unusual
UNUSUAL_HOUR_SHARE = 0.02  # share of history within ±1 h of this hour of day (UTC)
BALANCE_SHARE = 0.8
NEW_ACCOUNT_AGE = timedelta(days=7)
NIGHT_HOURS = range(5)  # 00:00–04:59 UTC
LARGE_AMOUNT_EUR = 10_000.0
VERY_LARGE_AMOUNT_EUR = 100_000.0
_WINDOW_S = VELOCITY_WINDOW.total_seconds()
_WINDOW_MINUTES = int(_WINDOW_S // 60)


def update(features: AccountFeatures, txn: Transaction) -> AccountFeatures:
    """A copy of ``features`` with ``txn`` folded in; the result does not depend on the order
    of the updates that built it.

    >>> f = update(AccountFeatures(), Transaction("t1", "a1", None, "payment", 10.0, "EUR",
    ...            "completed", datetime(2026, 1, 1, tzinfo=UTC), None, "cleared"))
    >>> (f.count, f.mean_eur)
    (1, 10.0)
    """
    updated = features.copy()
    updated.add(txn)
    return updated


def _velocity(features: AccountFeatures, at: float) -> tuple[str, str] | None:
    if len(features.recent) < VELOCITY_COUNT - 1:
        return None
    count = features.count_between(at - _WINDOW_S, at) + 1
    usual = features.usual_per_second() * _WINDOW_S  # what the account's own rate predicts
    if count < VELOCITY_COUNT or count < VELOCITY_RATIO * usual:
        return None
    signal = "velocity_burst" if count >= BURST_COUNT else "velocity"
    return signal, f"{count} transactions in {_WINDOW_MINUTES} min"


def _amount_outlier(features: AccountFeatures, amount_eur: float) -> tuple[str, str] | None:
    if features.count < MIN_HISTORY:
        return None
    mean = features.mean_eur
    std = max(features.std_eur, STD_FLOOR_SHARE * mean, 1.0)
    z = (amount_eur - mean) / std
    if z < OUTLIER_Z or amount_eur < OUTLIER_RATIO * mean:
        return None
    signal = "amount_extreme" if amount_eur >= EXTREME_RATIO * mean else "amount_outlier"
    return signal, f"{amount_eur:.0f} EUR is {amount_eur / mean:.1f}x the mean of {mean:.0f} EUR"


def _unusual_hour(features: AccountFeatures, hour: int) -> tuple[str, str] | None:
    if features.seen < HOUR_HISTORY:
        return None
    hours = features.hours
    nearby = hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24]
    if nearby >= UNUSUAL_HOUR_SHARE * features.seen:
        return None
    return "unusual_hour", f"{nearby} of {features.seen} earlier transactions near {hour:02d}h UTC"


def _balance_share(account: Account, txn: Transaction) -> str | None:
    # Accounts carry no currency: the balance is taken to be in the transaction's
    # currency (the simulator keeps it in the account's home currency, which most use).
    if txn.transaction_type == "deposit":
        return None
    if account.balance <= 0:  # a credit account's balance is normally negative
        return None if account.account_type == "credit" else f"balance is {account.balance:.0f}"
    share = txn.amount / account.balance
    return f"{share:.0%} of the balance" if share >= BALANCE_SHARE else None


def _size(amount_eur: float) -> tuple[str, str] | None:
    if amount_eur >= VERY_LARGE_AMOUNT_EUR:
        return "very_large_amount", f"{amount_eur:.0f} EUR"
    if amount_eur >= LARGE_AMOUNT_EUR:
        return "large_amount", f"{amount_eur:.0f} EUR"
    return None


def _account_signals(account: Account | None, txn: Transaction, at: datetime) -> list:
    """Signals about the account: unknown, new, drained."""
    if account is None:
        return [("unknown_account", "no account record")]
    found = []
    if account.created_at is not None and at - account.created_at < NEW_ACCOUNT_AGE:
        found.append(("new_account", f"created {(at - account.created_at).days} days before"))
    share = _balance_share(account, txn)
    if share:
        found.append(("balance_share", share))
    return found


def score_transaction(
    txn: Transaction,
    account: Account | None,
    features: AccountFeatures,
    now: datetime | None = None,
) -> tuple[int, tuple[str, ...]]:
    """Scores ``txn`` from 0 to 100 and says why.

    Args:
      txn: the transaction to score.
      account: its account, or None when the join found none.
      features: the account's features *before* this transaction.
      now: the reference time for velocity and account age; defaults to
        ``txn.datetime_occurred`` so that a replay scores the same.
    """
    at = now or txn.datetime_occurred
    amount_eur = to_eur(txn.amount, txn.currency)
    occurred = txn.datetime_occurred.astimezone(UTC)
    found = [
        _velocity(features, at.timestamp()),
        _amount_outlier(features, amount_eur),
        _size(amount_eur),
        _unusual_hour(features, occurred.hour),
        *_account_signals(account, txn, at),
    ]
    if txn.transaction_status == "failed":
        found.append(("failed_status", "the transaction failed"))
    if txn.transaction_type == "withdrawal":
        found.append(("withdrawal", "cash leaves the bank"))
    if occurred.hour in NIGHT_HOURS:
        found.append(("night", f"{occurred:%H:%M} UTC"))
    fired = dict(signal for signal in found if signal)
    if not fired:
        return 0, ()
    signals = [name for name in WEIGHTS if name in fired]
    reasons = tuple(f"{name}: {fired[name]} (+{WEIGHTS[name]})" for name in signals)
    return min(100, sum(WEIGHTS[name] for name in signals)), reasons


def is_suspicious(score: int) -> bool:
    """Whether a score reaches the THRESHOLD the pipeline acts on."""
    return score >= THRESHOLD
