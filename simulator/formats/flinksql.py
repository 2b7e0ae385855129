"""The Flink SQL risk job's input, as its producer wrote it (``--format flinksql``).

Topics ``accounts`` and ``bank_transactions``, unkeyed, one JSON message per record.
Timestamps ``YYYY-MM-DD HH:MM:SS`` in UTC without a zone; capitalised vocabularies; the
transaction's time is spelled ``datetime_occured``. No counterparty, evaluation or bank::

    account:     {"account_id", "account_name", "email", "account_type", "balance",
                  "created_at"}
    transaction: {"transaction_id", "account_id", "transaction_type", "amount", "currency",
                  "transaction_status", "datetime_occured"}

| riskpipe                     | flinksql                                               |
|------------------------------|--------------------------------------------------------|
| checking, credit             | Personal                                               |
| business                     | Corporate                                              |
| savings                      | Savings; Investment for a third of them (by account id)|
| transfer, withdrawal, deposit| Transfer, Withdrawal, Deposit                          |
| payment                      | Transfer if it names a counterparty, else Withdrawal   |
| completed, pending, failed   | Completed, Pending, Failed                             |
| EUR, GBP, CHF                | EUR (converted at the simulator's fixed rates)         |
| USD, CAD                     | USD                                                    |
| JPY                          | VND, 28,000 per EUR, whole dong                        |

Balances are converted like amounts, to the account's flinksql currency. Amounts and
balances keep the simulator's realistic spread: most lie within the old producer's ranges
(10-500,000 and 1,000-100,000) but card-testing payments are smaller, VND amounts are in
dong, and a spent-down balance can be lower.
"""

from __future__ import annotations

import hashlib

from pipeline.records import Account, Transaction
from simulator.bad import BadFields
from simulator.profiles import EUR_RATES
from simulator.serialize import zoneless

__all__ = [
    "BAD_FIELDS",
    "COLUMNS",
    "flinksql_account",
    "flinksql_account_type",
    "flinksql_money",
    "flinksql_pg_row",
    "flinksql_transaction",
]

# What that system wrote to banking.accounts (created_at included: the shape has it).
COLUMNS = (
    "account_id",
    "account_name",
    "email",
    "account_type",
    "balance",
    "created_at",
)
ACCOUNT_TYPES = {
    "checking": "Personal",
    "credit": "Personal",
    "business": "Corporate",
    "savings": "Savings",
}
TRANSACTION_TYPES = {
    "transfer": "Transfer",
    "withdrawal": "Withdrawal",
    "deposit": "Deposit",
}
CURRENCY = {
    "EUR": "EUR",
    "GBP": "EUR",
    "CHF": "EUR",
    "USD": "USD",
    "CAD": "USD",
    "JPY": "VND",
}
RATES = {"EUR": 1.0, "USD": EUR_RATES["USD"], "VND": 28_000.0}  # per EUR
BAD_FIELDS = BadFields(
    required=(
        "transaction_id",
        "account_id",
        "transaction_type",
        "amount",
        "currency",
        "transaction_status",
        "datetime_occured",
    ),
    timestamp="datetime_occured",
    bad_timestamps=("not-a-date", "2026-02-30 10:00:00", "", "31/12/2025 25:61"),
    unknown_type="Teleport",
)


def _savings_split(account_id: str) -> bool:
    """True for about a third of account ids, the same ones every run."""
    return hashlib.blake2b(account_id.encode(), digest_size=8).digest()[0] % 3 == 0


def flinksql_money(amount: float, currency: str) -> tuple[float, str]:
    """An amount in the flinksql currency that stands for ``currency``.

    >>> flinksql_money(12.5, "USD"), flinksql_money(85.0, "GBP"), flinksql_money(1600.0, "JPY")
    ((12.5, 'USD'), (100.0, 'EUR'), (280000.0, 'VND'))
    """
    target = CURRENCY[currency]
    if target == currency:
        return amount, currency
    converted = amount / EUR_RATES[currency] * RATES[target]
    return (float(round(converted)) if target == "VND" else round(converted, 2)), target


def flinksql_account_type(a: Account) -> str:
    """The flinksql account type of ``a`` (see the module's table).

    >>> flinksql_account_type(Account("a1", "Ada", account_type="checking"))
    'Personal'
    """
    if a.account_type == "savings" and _savings_split(a.account_id):
        return "Investment"
    return ACCOUNT_TYPES[a.account_type]


def flinksql_account(a: Account, home_currency: str) -> dict:
    """The flinksql ``accounts`` message of ``a``; ``home_currency`` is its balance's.

    >>> from datetime import UTC, datetime
    >>> a = Account("a1", "Ada", "ada@example.com", "business", 1080.0,
    ...             datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    >>> flinksql_account(a, "EUR")
    {'account_id': 'a1', 'account_name': 'Ada', 'email': 'ada@example.com', \
'account_type': 'Corporate', 'balance': 1080.0, 'created_at': '2024-03-01 09:30:00'}
    """
    return {
        "account_id": a.account_id,
        "account_name": a.account_name,
        "email": a.email,
        "account_type": flinksql_account_type(a),
        "balance": float(flinksql_money(a.balance, home_currency)[0]),
        "created_at": zoneless(a.created_at),
    }


def flinksql_pg_row(a: Account, home_currency: str) -> tuple:
    """The banking.accounts values of ``a`` as the Flink SQL system wrote them
    (:data:`COLUMNS`, ``created_at`` as a timestamp)."""
    message = flinksql_account(a, home_currency)
    return (*(message[c] for c in COLUMNS[:-1]), a.created_at)


def flinksql_transaction(t: Transaction) -> dict:
    """The flinksql ``bank_transactions`` message of ``t``.

    >>> from datetime import UTC, datetime
    >>> t = Transaction("t1", "a1", None, "payment", 1600.0, "JPY", "pending",
    ...                 datetime(2026, 1, 5, 12, 0, 1, 250000, tzinfo=UTC), "Bank", "cleared")
    >>> flinksql_transaction(t)
    {'transaction_id': 't1', 'account_id': 'a1', 'transaction_type': 'Withdrawal', \
'amount': 280000.0, 'currency': 'VND', 'transaction_status': 'Pending', \
'datetime_occured': '2026-01-05 12:00:01'}
    """
    ttype = t.transaction_type
    if ttype == "payment":
        label = "Transfer" if t.counterparty_account_id else "Withdrawal"
    else:
        label = TRANSACTION_TYPES[ttype]
    amount, currency = flinksql_money(t.amount, t.currency)
    return {
        "transaction_id": t.transaction_id,
        "account_id": t.account_id,
        "transaction_type": label,
        "amount": float(amount),
        "currency": currency,
        "transaction_status": t.transaction_status.capitalize(),
        "datetime_occured": zoneless(t.datetime_occurred),
    }
