"""Record shapes the simulator writes: riskpipe's own, and those of the two systems it replaces.

``--format`` picks one; the generator is the same (same accounts, transactions and fraud
episodes for a seed), only the messages differ. Ground truth is the same in every format
and is keyed by ``transaction_id``. The older shapes, field by field and with the mapping
of riskpipe's vocabularies, are in :mod:`simulator.formats.flinksql` and
:mod:`simulator.formats.poc`.

| format   | topics (default names)               | Kafka key  | Postgres banking.accounts |
|----------|--------------------------------------|------------|---------------------------|
| riskpipe | ``accounts``, ``transactions``       | account_id | every column              |
| flinksql | ``accounts``, ``bank_transactions``  | none       | the shape's 6 columns     |
| poc      | ``bank-transactions`` only           | none       | not written               |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pipeline.records import Account, Transaction
from simulator.bad import RISKPIPE_FIELDS, BadFields
from simulator.formats import flinksql, poc
from simulator.formats.flinksql import (
    flinksql_account,
    flinksql_money,
    flinksql_pg_row,
    flinksql_transaction,
)
from simulator.formats.poc import external_party, poc_transfer, poc_user
from simulator.serialize import (
    account_json,
    dumps,
    transaction_dict,
    transaction_json,
    zoneless,
)

__all__ = [
    "ACCOUNT_COLUMNS",
    "FLINKSQL_COLUMNS",
    "FORMATS",
    "POC_USER_FIELDS",
    "SHAPES",
    "Shape",
    "account_encoder",
    "external_party",
    "flinksql_account",
    "flinksql_money",
    "flinksql_pg_row",
    "flinksql_transaction",
    "poc_transfer",
    "poc_user",
    "record_dict",
    "transaction_encoder",
    "zoneless",
]

# banking.accounts columns riskpipe writes (every field of Account).
ACCOUNT_COLUMNS = (
    "account_id",
    "account_name",
    "email",
    "account_type",
    "balance",
    "created_at",
    "address",
    "birthdate",
    "phone_number",
    "job",
    "company",
    "bank",
    "bank_account",
)
FLINKSQL_COLUMNS = flinksql.COLUMNS
POC_USER_FIELDS = poc.USER_FIELDS


class Shape(NamedTuple):
    """What one format publishes, and where."""

    name: str
    transactions_topic: str  # default name
    accounts_topic: str | None  # None: accounts are not published
    keyed: bool  # Kafka key = the transaction's (or account's) account_id
    postgres_columns: tuple[str, ...] | None  # None: nothing written to Postgres
    bad_fields: BadFields  # where a malformed message breaks this shape


SHAPES: dict[str, Shape] = {
    "riskpipe": Shape(
        "riskpipe", "transactions", "accounts", True, ACCOUNT_COLUMNS, RISKPIPE_FIELDS
    ),
    "flinksql": Shape(
        "flinksql",
        "bank_transactions",
        "accounts",
        False,
        flinksql.COLUMNS,
        flinksql.BAD_FIELDS,
    ),
    "poc": Shape("poc", "bank-transactions", None, False, None, poc.BAD_FIELDS),
}
FORMATS = tuple(SHAPES)


def record_dict(fmt: str, t: Transaction, parties) -> dict:
    """``t``'s message in format ``fmt`` as a dict; ``parties(t)`` gives the sender's and
    receiver's accounts (only the ``poc`` shape needs them)."""
    if fmt == "riskpipe":
        return transaction_dict(t)
    if fmt == "flinksql":
        return flinksql_transaction(t)
    if fmt == "poc":
        return poc_transfer(t, *parties(t))
    raise ValueError(f"record_dict: unknown format {fmt!r}; expected one of {FORMATS}")


def transaction_encoder(fmt: str, parties) -> Callable[[Transaction], bytes]:
    """The function that turns a transaction into its Kafka value in format ``fmt``."""
    if fmt == "riskpipe":
        return transaction_json
    if fmt == "flinksql":
        return lambda t: dumps(flinksql_transaction(t))
    if fmt == "poc":
        return lambda t: dumps(poc_transfer(t, *parties(t)))
    raise ValueError(
        f"transaction_encoder: unknown format {fmt!r}; expected one of {FORMATS}"
    )


def account_encoder(fmt: str) -> Callable[[Account, str], bytes] | None:
    """``(account, home currency) -> Kafka value`` in format ``fmt``; None when the
    format publishes no accounts."""
    if fmt == "riskpipe":
        return lambda a, currency: account_json(a)
    if fmt == "flinksql":
        return lambda a, currency: dumps(flinksql_account(a, currency))
    if fmt == "poc":
        return None
    raise ValueError(
        f"account_encoder: unknown format {fmt!r}; expected one of {FORMATS}"
    )
