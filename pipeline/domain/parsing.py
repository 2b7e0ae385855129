"""Parsing and validating Kafka payloads into accounts and transactions.

The pure functions :func:`parse_transaction` and :func:`parse_account` turn one JSON
payload in riskpipe's own shape into a record or raise
:class:`~pipeline.errors.InvalidRecord` naming the field and the bad value. The shapes of
the systems riskpipe replaces are read by :mod:`pipeline.domain.shapes`, which uses
:func:`decode` and the rules below (``pipeline.transforms.parse`` applies them in the
pipeline).

Validation rules (beyond the field rules in :mod:`pipeline.domain.fields`):

- the payload is at most MAX_PAYLOAD_BYTES of UTF-8 JSON holding an object;
- ``amount`` is positive and at most MAX_AMOUNT_EUR once converted to EUR;
- ``currency`` is one of :data:`~pipeline.domain.currency.CURRENCIES` (exact case);
- timestamps lie between 2000-01-01 and one day after ``now``;
- ``evaluation``, ``transaction_type``, ``transaction_status`` and ``account_type`` are
  words of their vocabulary in any case (:mod:`pipeline.domain.vocabularies`); records
  keep the lower-case word. Unknown keys are ignored.

Decoding uses orjson; a payload orjson rejects is decoded again by the standard library,
which accepts a few things orjson does not (``NaN``, numbers beyond a double, escaped lone
surrogates) and words the errors of the rest. The field rules then reject what must be
rejected, with the same reasons either way.

>>> now = datetime(2026, 1, 2, 12, tzinfo=UTC)
>>> parse_transaction(b'{"transaction_id": "t1"}', now=now)
Traceback (most recent call last):
...
pipeline.errors.InvalidRecord: account_id: missing
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson

from pipeline.domain import fields
from pipeline.domain.currency import CURRENCIES, to_eur
from pipeline.domain.vocabularies import (
    ACCOUNT_TYPE,
    EVALUATION,
    TRANSACTION_STATUS,
    TRANSACTION_TYPE,
)
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

__all__ = [
    "MAX_ABS_BALANCE",
    "MAX_AMOUNT_EUR",
    "MAX_PAYLOAD_BYTES",
    "account_from",
    "amount",
    "balance",
    "decode",
    "parse_account",
    "parse_transaction",
    "transaction_from",
]

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_AMOUNT_EUR = 1e9
MAX_ABS_BALANCE = 1e12


def decode(payload: bytes | None) -> dict:
    """The JSON object in ``payload``, or InvalidRecord saying why there is none.

    >>> decode(b'[1]')
    Traceback (most recent call last):
    ...
    pipeline.errors.InvalidRecord: payload: not a JSON object (list)
    """
    if payload is None:
        raise InvalidRecord("payload: missing")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidRecord(f"payload: too large ({len(payload)} bytes)")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        obj = _decode_strictly_or_explain(payload)
    if obj.__class__ is not dict:
        raise InvalidRecord(f"payload: not a JSON object ({type(obj).__name__})")
    return obj


def _decode_strictly_or_explain(payload: bytes) -> object:
    """The standard library's reading of a payload orjson rejected, or why it is none."""
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"payload: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"payload: not JSON ({exc.msg} at {exc.pos})") from None
    except (RecursionError, ValueError) as exc:
        raise InvalidRecord(f"payload: not JSON ({type(exc).__name__})") from None


def amount(obj: dict, currency: str, name: str = "amount") -> float:
    """The positive amount of ``obj``, at most MAX_AMOUNT_EUR once converted to EUR."""
    value = fields.number(obj, name)
    if value <= 0:
        raise InvalidRecord(f"{name}: not positive ({fields.show(value)})")
    if to_eur(value, currency) > MAX_AMOUNT_EUR:
        raise InvalidRecord(f"{name}: too large ({fields.show(value)} {currency})")
    return value


def balance(obj: dict) -> float:
    """The account's balance, 0.0 when absent; at most MAX_ABS_BALANCE either way."""
    value = fields.number(obj, "balance", required=False)
    if value is None:
        return 0.0
    if abs(value) > MAX_ABS_BALANCE:
        raise InvalidRecord(f"balance: too large ({fields.show(value)})")
    return value


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def transaction_from(obj: dict, now: datetime) -> Transaction:
    """The transaction in a decoded object of riskpipe's shape."""
    transaction_id = fields.identifier(obj, "transaction_id")
    account_id = fields.identifier(obj, "account_id")
    currency = fields.code(obj, "currency", CURRENCIES)
    return Transaction(
        transaction_id=transaction_id,
        account_id=account_id,
        counterparty_account_id=fields.identifier(obj, "counterparty_account_id", False),
        transaction_type=fields.choice(obj, "transaction_type", TRANSACTION_TYPE),
        amount=amount(obj, currency),
        currency=currency,
        transaction_status=fields.choice(obj, "transaction_status", TRANSACTION_STATUS),
        datetime_occurred=fields.timestamp(obj, "datetime_occurred", now),
        sender_bank=fields.text(obj, "sender_bank"),
        evaluation=fields.choice(obj, "evaluation", EVALUATION),
    )


def parse_transaction(payload: bytes | None, now: datetime | None = None) -> Transaction:
    """Parses and validates one transaction payload of riskpipe's shape.

    Args:
      payload: the Kafka message value.
      now: the reference time for "in the future" checks; defaults to the clock.

    >>> parse_transaction(json.dumps({
    ...     "transaction_id": "t1", "account_id": "a1", "transaction_type": "payment",
    ...     "amount": "12.50", "currency": "EUR", "transaction_status": "completed",
    ...     "datetime_occurred": "2026-01-02T03:04:05Z", "evaluation": "unidentified",
    ... }).encode(), now=datetime(2026, 1, 2, tzinfo=UTC)).amount
    12.5
    """
    return transaction_from(decode(payload), _now(now))


def account_from(obj: dict, now: datetime, account_types=ACCOUNT_TYPE) -> Account:
    """The account in a decoded object of riskpipe's shape (or one with its field names).

    Args:
      obj: the decoded message.
      now: the reference time for "in the future" checks.
      account_types: the vocabulary of ``account_type`` (see vocabularies).
    """
    return Account(
        account_id=fields.identifier(obj, "account_id"),
        account_name=fields.text(obj, "account_name", required=True),
        email=fields.text(obj, "email"),
        account_type=fields.choice(obj, "account_type", account_types, required=False),
        balance=balance(obj),
        created_at=fields.timestamp(obj, "created_at", now, required=False),
        address=fields.text(obj, "address"),
        birthdate=fields.calendar_date(obj, "birthdate"),
        phone_number=fields.text(obj, "phone_number"),
        job=fields.text(obj, "job"),
        company=fields.text(obj, "company"),
        bank=fields.text(obj, "bank"),
        bank_account=fields.text(obj, "bank_account"),
    )


def parse_account(payload: bytes | None, now: datetime | None = None) -> Account:
    """Parses and validates one account payload (only ``account_id`` and name required).

    >>> parse_account(b'{"account_id": "a1", "account_name": "Ada", "balance": 10}').balance
    10.0
    """
    return account_from(decode(payload), _now(now))
