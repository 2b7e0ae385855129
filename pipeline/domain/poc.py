"""Transfers of the Kafka Connect fraud PoC, read into riskpipe's records.

The PoC's simulator wrote one unkeyed JSON message per transfer to ``bank-transactions``::

    {"transaction_id", "sender_bank_account", "sender_details", "receiver_bank_account",
     "receiver_details", "amount", "status", "evaluation", "transfer_date", "sender_bank"}

and ``sender_details`` / ``receiver_details`` are users::

    {"id", "name", "address", "email", "birthdate", "phone_number", "job", "company",
     "ssn", "blood_group", "website", "username", "bank_account"}

One transfer becomes a :class:`~pipeline.records.Transaction` and the sender's and the
receiver's :class:`~pipeline.records.Account`:

- **Account ids are the users' ``id``.** A user's id is the same in every transfer,
  whether they send or receive, so the receiver of one transfer and the sender of another
  are one account; it is also the key of the PoC's ``users`` topic and collection. The
  account's ``bank_account`` is the transfer's ``sender_bank_account`` /
  ``receiver_bank_account`` (the account the money left or reached), ``name`` becomes
  ``account_name``. An integer id is read as its decimal string. A user's account reads
  the same whether they send or receive (the receiver's bank is not in the message, so
  ``sender_bank`` stays on the transaction, not on the account): the accounts a stream of
  transfers repeats are one version, not versions that differ by role.
- The transaction: ``account_id`` = sender, ``counterparty_account_id`` = receiver,
  ``transaction_type`` ``transfer``, ``transfer_date`` → ``datetime_occurred`` (a
  zone-less time is UTC), ``status`` → ``transaction_status``, ``amount`` in
  :data:`CURRENCY` (the PoC knew one currency), both users as ``account_details`` and
  ``counterparty_details``.
- ``evaluation``: ``fraudulent`` and ``unidentified`` (any case) are kept; any other
  string means the bank cleared it (``cleared``); an absent, null or blank one is
  ``unidentified``, so the validator decides rather than nobody.
- Not kept: ``ssn``, ``blood_group``, ``website``, ``username``. No rule uses them, and
  an SSN or a blood group (health data) is personal data a risk pipeline should not copy
  into four more stores; ``docs/input-formats.md`` lists what the results carry.

Every transfer must name both users with an ``id`` and a ``name``, and both bank
accounts; field rules are riskpipe's, and a bad field of a user is reported with its
path (``sender_details.name: missing``).

>>> from datetime import UTC, datetime
>>> user = {"id": "u1", "name": "Ada", "email": "ada@example.com", "ssn": "123-45-6789"}
>>> t = transfer({"transaction_id": "t1", "sender_bank_account": "DE02",
...     "sender_details": user, "receiver_bank_account": "FR76",
...     "receiver_details": {"id": "u2", "name": "Bo"}, "amount": 99.5,
...     "status": "Completed", "evaluation": "legitimate",
...     "transfer_date": "2026-01-05 12:00:00", "sender_bank": "Harbor Trust"},
...     now=datetime(2026, 1, 6, tzinfo=UTC))
>>> t.account_id, t.counterparty_account_id, t.evaluation, t.transaction_status
('u1', 'u2', 'cleared', 'completed')
>>> t.account_details.bank_account, t.sender_bank, t.counterparty_details.account_name
('DE02', 'Harbor Trust', 'Bo')
"""

from __future__ import annotations

from datetime import datetime

from pipeline.domain import fields
from pipeline.domain.parsing import amount
from pipeline.domain.vocabularies import (
    POC_EVALUATION,
    POC_UNKNOWN_EVALUATION,
    TRANSACTION_STATUS,
)
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

__all__ = [
    "CURRENCY",
    "DROPPED_USER_FIELDS",
    "TRANSFER_FIELDS",
    "USER_FIELDS",
    "transfer",
    "user",
]

CURRENCY = "EUR"
TRANSFER_FIELDS = (
    "transaction_id",
    "sender_bank_account",
    "sender_details",
    "receiver_bank_account",
    "receiver_details",
    "amount",
    "status",
    "evaluation",
    "transfer_date",
    "sender_bank",
)
USER_FIELDS = (
    "id",
    "name",
    "address",
    "email",
    "birthdate",
    "phone_number",
    "job",
    "company",
    "ssn",
    "blood_group",
    "website",
    "username",
    "bank_account",
)
DROPPED_USER_FIELDS = ("ssn", "blood_group", "website", "username")
TRANSACTION_TYPE = "transfer"


def _user_id(obj: dict) -> str:
    value = obj.get("id")
    if value.__class__ is int:
        return str(value)
    return fields.identifier(obj, "id")


def user(obj: dict, bank_account: str | None = None) -> Account:
    """The account of one PoC user; ``bank_account`` (the transfer's) overrides theirs.

    >>> user({"id": 7, "name": "Ada", "birthdate": "1990-12-10"}).account_id
    '7'
    """
    return Account(
        account_id=_user_id(obj),
        account_name=fields.text(obj, "name", required=True),
        email=fields.text(obj, "email"),
        address=fields.text(obj, "address"),
        birthdate=fields.calendar_date(obj, "birthdate"),
        phone_number=fields.text(obj, "phone_number"),
        job=fields.text(obj, "job"),
        company=fields.text(obj, "company"),
        bank_account=bank_account or fields.text(obj, "bank_account"),
    )


def _party(obj: dict, name: str, bank_account: str) -> Account:
    """The user under ``name`` ("sender_details"); reasons carry the path."""
    details = obj.get(name)
    if details is None:
        raise InvalidRecord(f"{name}: missing")
    if details.__class__ is not dict:
        raise InvalidRecord(f"{name}: not an object ({type(details).__name__})")
    try:
        return user(details, bank_account)
    except InvalidRecord as exc:
        raise InvalidRecord(f"{name}.{exc.reason}") from None


def _evaluation(obj: dict) -> str:
    value = obj.get("evaluation")
    if value is None:
        return "unidentified"
    if value.__class__ is not str:
        raise InvalidRecord(f"evaluation: not a string ({type(value).__name__})")
    if not value or value.isspace():
        return "unidentified"
    known = POC_EVALUATION.get(value) or (value.isascii() and POC_EVALUATION.get(value.lower()))
    return known or POC_UNKNOWN_EVALUATION


def transfer(obj: dict, now: datetime) -> Transaction:
    """The transaction of a decoded transfer, its users as details; raises InvalidRecord."""
    transaction_id = fields.identifier(obj, "transaction_id")
    sender_bank_account = fields.identifier(obj, "sender_bank_account")
    receiver_bank_account = fields.identifier(obj, "receiver_bank_account")
    sender_bank = fields.text(obj, "sender_bank")
    sender = _party(obj, "sender_details", sender_bank_account)
    receiver = _party(obj, "receiver_details", receiver_bank_account)
    return Transaction(
        transaction_id=transaction_id,
        account_id=sender.account_id,
        counterparty_account_id=receiver.account_id,
        transaction_type=TRANSACTION_TYPE,
        amount=amount(obj, CURRENCY),
        currency=CURRENCY,
        transaction_status=fields.choice(obj, "status", TRANSACTION_STATUS),
        datetime_occurred=fields.timestamp(obj, "transfer_date", now),
        sender_bank=sender_bank,
        evaluation=_evaluation(obj),
        account_details=sender,
        counterparty_details=receiver,
    )
