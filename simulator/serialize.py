"""Fast JSON for the publish hot path: the same bytes as ``json`` of the records' ``to_dict()``.

``Transaction.to_dict`` goes through ``dataclasses.asdict`` (deep copies; ~27 µs a record),
which alone would cap the simulator near 35k transactions/s. :func:`transaction_dict` builds
the identical dict directly (tests check the equality on generated records). JSON encoding uses
orjson when it is installed (~0.3 µs) and the standard library otherwise (~5 µs).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.records import Account, Transaction

__all__ = [
    "JSON_BACKEND",
    "account_json",
    "dumps",
    "transaction_dict",
    "transaction_json",
    "zoneless",
]

ZONELESS = "%Y-%m-%d %H:%M:%S"

try:
    import orjson

    def dumps(value) -> bytes:
        """Compact JSON bytes."""
        return orjson.dumps(value)

    JSON_BACKEND = "orjson"
except ImportError:  # pragma: no cover - depends on the environment
    _encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def dumps(value) -> bytes:
        """Compact JSON bytes."""
        return _encode(value).encode()

    JSON_BACKEND = "json"


def transaction_dict(t: Transaction) -> dict:
    """Equal to ``t.to_dict()``, an order of magnitude faster."""
    return {
        "transaction_id": t.transaction_id,
        "account_id": t.account_id,
        "counterparty_account_id": t.counterparty_account_id,
        "transaction_type": t.transaction_type,
        "amount": t.amount,
        "currency": t.currency,
        "transaction_status": t.transaction_status,
        "datetime_occurred": t.datetime_occurred.isoformat(),
        "sender_bank": t.sender_bank,
        "evaluation": t.evaluation,
    }


def transaction_json(t: Transaction) -> bytes:
    """The Kafka value of a transaction."""
    return dumps(transaction_dict(t))


def account_json(a: Account) -> bytes:
    """The Kafka value of an account (accounts are rare enough for ``to_dict``)."""
    return dumps(a.to_dict())


def zoneless(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, without a zone (fractions of a second dropped), as
    the older systems wrote timestamps.

    >>> from datetime import timedelta, timezone
    >>> zoneless(datetime(2026, 1, 5, 13, 4, 5, 678000, tzinfo=timezone(timedelta(hours=1))))
    '2026-01-05 12:04:05'
    """
    return value.astimezone(UTC).strftime(ZONELESS)
