"""Records of the Flink SQL risk job's producers, read into riskpipe's records.

The Flink SQL system read two topics of unkeyed JSON messages, one record each::

    accounts:          {"account_id", "account_name", "email", "account_type",
                        "balance", "created_at"}
    bank_transactions: {"transaction_id", "account_id", "transaction_type", "amount",
                        "currency", "transaction_status", "datetime_occured"}

Timestamps are ``YYYY-MM-DD HH:MM:SS`` without a zone, read as UTC. The transaction's time
is spelled ``datetime_occured`` and becomes ``datetime_occurred`` (a message spelling it
``datetime_occurred`` is read too). Vocabularies are
capitalised (``Personal``, ``Withdrawal``, ``Completed``) and mapped as the table in
:mod:`pipeline.domain.vocabularies` says; currencies (``USD``, ``EUR``, ``VND``) are
ISO codes read as they are. Field rules are riskpipe's (:mod:`pipeline.domain.fields`).

What the shape lacks:

- No counterparty and no sender bank: both are None.
- No evaluation. Such a transaction is ``unidentified``, so the fraud validator decides
  it. ``cleared`` would claim a bank decision nobody made and would send no shape-A
  transaction to validation, so riskpipe could never flag one as fraudulent; the price of
  ``unidentified`` is one validator call per transaction, batched.

>>> from datetime import UTC, datetime
>>> t = transaction({"transaction_id": "t1", "account_id": "a1",
...     "transaction_type": "Withdrawal", "amount": 120.5, "currency": "VND",
...     "transaction_status": "Completed", "datetime_occured": "2026-01-05 12:00:01"},
...     now=datetime(2026, 1, 6, tzinfo=UTC))
>>> t.transaction_type, t.transaction_status, t.evaluation, t.datetime_occurred.isoformat()
('withdrawal', 'completed', 'unidentified', '2026-01-05T12:00:01+00:00')
"""

from __future__ import annotations

from datetime import datetime

from pipeline.domain import fields
from pipeline.domain.currency import CURRENCIES
from pipeline.domain.parsing import account_from, amount
from pipeline.domain.vocabularies import (
    FLINKSQL_ACCOUNT_TYPE,
    FLINKSQL_TRANSACTION_TYPE,
    TRANSACTION_STATUS,
)
from pipeline.records import Account, Transaction

__all__ = [
    "ACCOUNT_FIELDS",
    "EVALUATION",
    "TIME_FIELD",
    "TRANSACTION_FIELDS",
    "account",
    "transaction",
]

TIME_FIELD = "datetime_occured"
# Every transaction of this shape waits for the fraud validator (see the module docstring).
EVALUATION = "unidentified"
TRANSACTION_FIELDS = (
    "transaction_id",
    "account_id",
    "transaction_type",
    "amount",
    "currency",
    "transaction_status",
    TIME_FIELD,
)
ACCOUNT_FIELDS = (
    "account_id",
    "account_name",
    "email",
    "account_type",
    "balance",
    "created_at",
)


def _time_field(obj: dict) -> str:
    """``datetime_occured``, or riskpipe's spelling when only that one is there."""
    return (
        "datetime_occurred" if TIME_FIELD not in obj and "datetime_occurred" in obj else TIME_FIELD
    )


def transaction(obj: dict, now: datetime) -> Transaction:
    """The transaction in a decoded ``bank_transactions`` message; raises InvalidRecord."""
    transaction_id = fields.identifier(obj, "transaction_id")
    account_id = fields.identifier(obj, "account_id")
    currency = fields.code(obj, "currency", CURRENCIES)
    return Transaction(
        transaction_id=transaction_id,
        account_id=account_id,
        counterparty_account_id=None,
        transaction_type=fields.choice(obj, "transaction_type", FLINKSQL_TRANSACTION_TYPE),
        amount=amount(obj, currency),
        currency=currency,
        transaction_status=fields.choice(obj, "transaction_status", TRANSACTION_STATUS),
        datetime_occurred=fields.timestamp(obj, _time_field(obj), now),
        sender_bank=None,
        evaluation=EVALUATION,
    )


def account(obj: dict, now: datetime) -> Account:
    """The account in a decoded ``accounts`` message; raises InvalidRecord.

    The shape's fields are a subset of riskpipe's account fields; only ``account_type``
    speaks another vocabulary.

    >>> from datetime import UTC
    >>> account({"account_id": "a1", "account_name": "Ada", "account_type": "Corporate",
    ...          "balance": 1080.0, "created_at": "2024-03-01 09:30:00"},
    ...         now=datetime(2026, 1, 1, tzinfo=UTC)).account_type
    'business'
    """
    return account_from(obj, now, account_types=FLINKSQL_ACCOUNT_TYPE)
