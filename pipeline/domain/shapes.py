"""Which system's shape a message has, and the parser that reads it into riskpipe's records.

riskpipe reads three input shapes (the job flag ``--input_format`` picks one, or ``auto``
recognises each message by its keys):

==========  ===============================  ================================================
format      what                             module
==========  ===============================  ================================================
riskpipe    riskpipe's own records           :mod:`pipeline.domain.parsing`
flinksql    the Flink SQL risk job's topics  :mod:`pipeline.domain.flinksql`
poc         the Kafka Connect fraud PoC      :mod:`pipeline.domain.poc`
==========  ===============================  ================================================

Detection (``auto``) of a transactions-topic message, on its decoded keys:

1. ``datetime_occurred`` (riskpipe's spelling) → riskpipe;
2. else any of ``sender_details``, ``receiver_details``, ``sender_bank_account``,
   ``receiver_bank_account``, ``transfer_date`` → poc;
3. else ``datetime_occured`` (the Flink SQL spelling) → flinksql;
4. else any of ``evaluation``, ``counterparty_account_id``, ``sender_bank`` (keys of
   riskpipe's shape the Flink SQL one lacks) → riskpipe;
5. else any key both shapes share (``transaction_id``, ``account_id``, ...) → flinksql,
   which then lacks only its time;
6. else (no key of any shape) riskpipe.

So a riskpipe transaction that lacks its time or its evaluation is still judged by
riskpipe's rules (and dead-lettered for the missing field), and a Flink SQL one that lacks
its time by the Flink SQL rules. A Flink SQL producer that spells ``datetime_occurred``
right is read with ``--input_format=flinksql`` (that parser takes either spelling).

and of an accounts-topic message:

1. an ``id`` and no ``account_id`` → poc (a user of the PoC's ``users`` shape);
2. ``account_type`` ``Personal`` or ``Corporate`` (any case), words only the Flink SQL
   system uses → flinksql;
3. else riskpipe (a Flink SQL account of type Savings or Investment reads the same).

A message that fails its shape's rules is dead-lettered with a reason naming the shape it
came closest to, then the field: ``"flinksql transaction: amount: not a number ('x')"``,
``"poc transfer: sender_details.name: missing"``, ``"flinksql account: ..."``,
``"poc user: ..."``. riskpipe's own shape keeps its reasons as they are
(``"amount: not a number ('x')"``); a payload that is no JSON object at all has a
``"payload: ..."`` reason, whatever the format.

>>> parser = transaction_parser("auto")
>>> try:
...     parser(b'{"transaction_id": "t1", "account_id": "a1", "transaction_type": "Deposit", '
...            b'"amount": "x", "currency": "VND", "transaction_status": "Completed", '
...            b'"datetime_occured": "2026-01-05 12:00:01"}')
... except InvalidRecord as exc:
...     print(exc.reason)
flinksql transaction: amount: not a number ('x')
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pipeline.domain import flinksql, poc
from pipeline.domain.parsing import account_from, decode, transaction_from
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

__all__ = [
    "INPUT_FORMATS",
    "account_parser",
    "account_shape",
    "transaction_parser",
    "transaction_shape",
]

INPUT_FORMATS = ("auto", "riskpipe", "flinksql", "poc")
_POC_KEYS = (
    "sender_details",
    "receiver_details",
    "sender_bank_account",
    "receiver_bank_account",
    "transfer_date",
)
_RISKPIPE_ONLY_KEYS = ("evaluation", "counterparty_account_id", "sender_bank")
_FLINKSQL_ONLY_ACCOUNT_TYPES = frozenset(("personal", "corporate"))

TransactionParser = Callable[..., Transaction]
AccountParser = Callable[..., Account]


def transaction_shape(obj: dict) -> str:
    """The format a decoded transactions-topic message has (rules: module docstring).

    >>> transaction_shape({"transaction_id": "t1", "datetime_occured": "2026-01-01 00:00:00"})
    'flinksql'
    """
    if "datetime_occurred" in obj:
        return "riskpipe"
    for key in _POC_KEYS:
        if key in obj:
            return "poc"
    if flinksql.TIME_FIELD in obj:
        return "flinksql"
    for key in _RISKPIPE_ONLY_KEYS:
        if key in obj:
            return "riskpipe"
    for key in flinksql.TRANSACTION_FIELDS:
        if key in obj:
            return "flinksql"
    return "riskpipe"


def account_shape(obj: dict) -> str:
    """The format a decoded accounts-topic message has (rules: module docstring).

    >>> account_shape({"account_id": "a1", "account_type": "PERSONAL"})
    'flinksql'
    """
    if "id" in obj and "account_id" not in obj:
        return "poc"
    kind = obj.get("account_type")
    if kind.__class__ is str and kind.isascii() and kind.lower() in _FLINKSQL_ONLY_ACCOUNT_TYPES:
        return "flinksql"
    return "riskpipe"


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _poc_user(obj: dict, now: datetime) -> Account:
    return poc.user(obj)


_TRANSACTIONS = {
    "riskpipe": (None, transaction_from),
    "flinksql": ("flinksql transaction", flinksql.transaction),
    "poc": ("poc transfer", poc.transfer),
}
_ACCOUNTS = {
    "riskpipe": (None, account_from),
    "flinksql": ("flinksql account", flinksql.account),
    "poc": ("poc user", _poc_user),
}


def _read(table: dict, shape: str, obj: dict, now: datetime):
    label, build = table[shape]
    if label is None:
        return build(obj, now)
    try:
        return build(obj, now)
    except InvalidRecord as exc:
        raise InvalidRecord(f"{label}: {exc.reason}") from None


def parse_any_transaction(payload: bytes | None, now: datetime | None = None) -> Transaction:
    """A transactions-topic message of any shape, recognised by its keys."""
    obj = decode(payload)
    return _read(_TRANSACTIONS, transaction_shape(obj), obj, _now(now))


def parse_flinksql_transaction(payload: bytes | None, now: datetime | None = None) -> Transaction:
    """A ``bank_transactions`` message of the Flink SQL system."""
    return _read(_TRANSACTIONS, "flinksql", decode(payload), _now(now))


def parse_poc_transfer(payload: bytes | None, now: datetime | None = None) -> Transaction:
    """A ``bank-transactions`` message of the fraud PoC (its users as details)."""
    return _read(_TRANSACTIONS, "poc", decode(payload), _now(now))


def parse_riskpipe_transaction(payload: bytes | None, now: datetime | None = None) -> Transaction:
    """A transaction of riskpipe's own shape."""
    return transaction_from(decode(payload), _now(now))


def parse_any_account(payload: bytes | None, now: datetime | None = None) -> Account:
    """An accounts-topic message of any shape, recognised by its keys."""
    obj = decode(payload)
    return _read(_ACCOUNTS, account_shape(obj), obj, _now(now))


def parse_flinksql_account(payload: bytes | None, now: datetime | None = None) -> Account:
    """An ``accounts`` message of the Flink SQL system."""
    return _read(_ACCOUNTS, "flinksql", decode(payload), _now(now))


def parse_poc_user(payload: bytes | None, now: datetime | None = None) -> Account:
    """A user of the fraud PoC's shape, as an account."""
    return _read(_ACCOUNTS, "poc", decode(payload), _now(now))


def parse_riskpipe_account(payload: bytes | None, now: datetime | None = None) -> Account:
    """An account of riskpipe's own shape."""
    return account_from(decode(payload), _now(now))


_TRANSACTION_PARSERS = {
    "auto": parse_any_transaction,
    "riskpipe": parse_riskpipe_transaction,
    "flinksql": parse_flinksql_transaction,
    "poc": parse_poc_transfer,
}
_ACCOUNT_PARSERS = {
    "auto": parse_any_account,
    "riskpipe": parse_riskpipe_account,
    "flinksql": parse_flinksql_account,
    "poc": parse_poc_user,
}


def _check(input_format: str) -> None:
    if input_format not in INPUT_FORMATS:
        raise ValueError(
            f"input_format: unknown ({input_format!r}); expected one of {', '.join(INPUT_FORMATS)}"
        )


def transaction_parser(input_format: str) -> TransactionParser:
    """``(payload, now=None) -> Transaction`` for one of :data:`INPUT_FORMATS`."""
    _check(input_format)
    return _TRANSACTION_PARSERS[input_format]


def account_parser(input_format: str) -> AccountParser:
    """``(payload, now=None) -> Account`` for one of :data:`INPUT_FORMATS`."""
    _check(input_format)
    return _ACCOUNT_PARSERS[input_format]
