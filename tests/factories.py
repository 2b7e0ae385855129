"""Factories of valid records for the transform tests; override any field by keyword."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from pipeline.records import Account, Transaction

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def transaction(**overrides) -> Transaction:
    """An ordinary daytime payment of 40 EUR from account a1."""
    values = {
        "transaction_id": "t1",
        "account_id": "a1",
        "counterparty_account_id": "a2",
        "transaction_type": "payment",
        "amount": 40.0,
        "currency": "EUR",
        "transaction_status": "completed",
        "datetime_occurred": T0,
        "sender_bank": "Bank A",
        "evaluation": "unidentified",
    }
    values.update(overrides)
    return Transaction(**values)


def account(**overrides) -> Account:
    """An established checking account a1 with 5,000 EUR."""
    values = {
        "account_id": "a1",
        "account_name": "Ada Lovelace",
        "email": "ada@example.com",
        "account_type": "checking",
        "balance": 5000.0,
        "created_at": datetime(2020, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return Account(**values)


# Property tests run their full example counts under `make test` (and CI). `make test-unit`,
# the fast path while working, sets RISKPIPE_TEST_EXAMPLES=0.3 to run that share of each
# (at least 10 examples).
_EXAMPLES_SHARE = float(os.environ.get("RISKPIPE_TEST_EXAMPLES", "1"))


def examples(count: int) -> int:
    """The number of Hypothesis examples to run of a property test written for ``count``."""
    return count if _EXAMPLES_SHARE >= 1 else max(10, round(count * _EXAMPLES_SHARE))
