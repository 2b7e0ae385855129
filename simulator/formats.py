"""Record shapes the simulator writes: riskpipe's own, and those of the two systems it replaces.

``--format`` picks one; the generator is the same (same accounts, transactions and fraud
episodes for a seed), only the messages differ. Ground truth is the same in every format
and is keyed by ``transaction_id``.

| format   | topics (default names)               | Kafka key  | Postgres banking.accounts |
|----------|--------------------------------------|------------|---------------------------|
| riskpipe | ``accounts``, ``transactions``       | account_id | every column              |
| flinksql | ``accounts``, ``bank_transactions``  | none       | the shape's 6 columns     |
| poc      | ``bank-transactions`` only           | none       | not written               |

**flinksql** (the Flink SQL risk job's producer). Timestamps ``YYYY-MM-DD HH:MM:SS`` in
UTC without a zone; capitalised vocabularies; the transaction's time is spelled
``datetime_occured``. No counterparty, evaluation or bank::

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

**poc** (the Kafka Connect fraud PoC's producer): one message per transfer; a user is
Faker's ``profile()`` plus id, phone and bank account. The PoC knew only transfers and one
currency: every transaction becomes a transfer from its account, ``amount`` is in EUR
(converted at the simulator's fixed rates, cents), ``status`` is ``completed``, ``pending``
or ``failed``, ``evaluation`` is ``fraudulent``, ``unidentified`` or ``legitimate`` (the
bank's "cleared"), ``transfer_date`` is ``YYYY-MM-DD HH:MM:SS`` in UTC without a zone::

    {"transaction_id", "sender_bank_account", "sender_details", "receiver_bank_account",
     "receiver_details", "amount", "status", "evaluation", "transfer_date", "sender_bank"}
    user: {"id", "name", "address", "email", "birthdate", "phone_number", "job", "company",
           "ssn", "blood_group", "website", "username", "bank_account"}

The receiver is the counterparty account (a bank account, or a merchant outside the bank);
a transaction without one (cash, card payment, deposit) goes to one of a fixed set of
outside parties (shops, cash networks, employers), the same one for an account's cash and
deposits. ``id`` is the riskpipe account id; ``ssn``, ``blood_group``, ``website`` and
``username`` are derived from the account (stable across versions of it).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from pipeline.records import Account, Transaction
from simulator.bad import BadFields
from simulator.profiles import EUR_RATES
from simulator.serialize import account_json, dumps, transaction_dict, transaction_json

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
FLINKSQL_COLUMNS = (
    "account_id",
    "account_name",
    "email",
    "account_type",
    "balance",
    "created_at",
)
FLINKSQL_ACCOUNT_TYPES = {
    "checking": "Personal",
    "credit": "Personal",
    "business": "Corporate",
    "savings": "Savings",
}
FLINKSQL_TRANSACTION_TYPES = {
    "transfer": "Transfer",
    "withdrawal": "Withdrawal",
    "deposit": "Deposit",
}
FLINKSQL_CURRENCY = {
    "EUR": "EUR",
    "GBP": "EUR",
    "CHF": "EUR",
    "USD": "USD",
    "CAD": "USD",
    "JPY": "VND",
}
FLINKSQL_RATES = {"EUR": 1.0, "USD": EUR_RATES["USD"], "VND": 28_000.0}  # per EUR
POC_EVALUATIONS = {
    "fraudulent": "fraudulent",
    "unidentified": "unidentified",
    "cleared": "legitimate",
}
BLOOD_GROUPS = ("A+", "A-", "B+", "B-", "O+", "O-", "AB+", "AB-")
POC_USER_FIELDS = (
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
ZONELESS = "%Y-%m-%d %H:%M:%S"


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
        "riskpipe", "transactions", "accounts", True, ACCOUNT_COLUMNS, BadFields()
    ),
    "flinksql": Shape(
        "flinksql",
        "bank_transactions",
        "accounts",
        False,
        FLINKSQL_COLUMNS,
        BadFields(
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
            bad_timestamps=(
                "not-a-date",
                "2026-02-30 10:00:00",
                "",
                "31/12/2025 25:61",
            ),
            unknown_type="Teleport",
        ),
    ),
    "poc": Shape(
        "poc",
        "bank-transactions",
        None,
        False,
        None,
        BadFields(
            required=(
                "transaction_id",
                "sender_bank_account",
                "receiver_bank_account",
                "amount",
                "transfer_date",
            ),
            currency=None,
            timestamp="transfer_date",
            bad_timestamps=(
                "not-a-date",
                "2026-02-30 10:00:00",
                "",
                "31/12/2025 25:61",
            ),
            transaction_type=None,
        ),
    ),
}
FORMATS = tuple(SHAPES)


def zoneless(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, without a zone (fractions of a second dropped).

    >>> from datetime import timedelta, timezone
    >>> zoneless(datetime(2026, 1, 5, 13, 4, 5, 678000, tzinfo=timezone(timedelta(hours=1))))
    '2026-01-05 12:04:05'
    """
    return value.astimezone(UTC).strftime(ZONELESS)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def flinksql_money(amount: float, currency: str) -> tuple[float, str]:
    """An amount in the flinksql currency that stands for ``currency``.

    >>> flinksql_money(12.5, "USD"), flinksql_money(85.0, "GBP"), flinksql_money(1600.0, "JPY")
    ((12.5, 'USD'), (100.0, 'EUR'), (280000.0, 'VND'))
    """
    target = FLINKSQL_CURRENCY[currency]
    if target == currency:
        return amount, currency
    converted = amount / EUR_RATES[currency] * FLINKSQL_RATES[target]
    return (float(round(converted)) if target == "VND" else round(converted, 2)), target


def flinksql_account_type(a: Account) -> str:
    """The flinksql account type of ``a`` (see the module's table).

    >>> flinksql_account_type(Account("a1", "Ada", account_type="checking"))
    'Personal'
    """
    if a.account_type == "savings" and _digest(a.account_id) % 3 == 0:
        return "Investment"
    return FLINKSQL_ACCOUNT_TYPES[a.account_type]


def flinksql_account(a: Account, home_currency: str) -> dict:
    """The flinksql ``accounts`` message of ``a``; ``home_currency`` is its balance's.

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
    (:data:`FLINKSQL_COLUMNS`, ``created_at`` as a timestamp)."""
    message = flinksql_account(a, home_currency)
    return (*(message[c] for c in FLINKSQL_COLUMNS[:-1]), a.created_at)


def flinksql_transaction(t: Transaction) -> dict:
    """The flinksql ``bank_transactions`` message of ``t``.

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
        label = FLINKSQL_TRANSACTION_TYPES[ttype]
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


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def poc_user(a: Account) -> dict:
    """The PoC's user record of account ``a``.

    >>> u = poc_user(Account("a1", "Jörg Weiß", "joerg.weiss@example.de", "checking",
    ...              company="Müller GmbH", bank_account="DE02100100100006820101"))
    >>> u["username"], u["website"], u["bank_account"]
    ('joergweiss', 'https://www.mullergmbh.de/', 'DE02100100100006820101')
    >>> sorted(u) == sorted(POC_USER_FIELDS) and u["blood_group"] in BLOOD_GROUPS
    True
    """
    h = _digest(a.account_id)
    local, _, domain = (a.email or "").partition("@")
    tld = domain.rsplit(".", 1)[-1] if "." in domain else "com"
    site = (
        _ascii_slug(a.company or "") or _ascii_slug(domain.rsplit(".", 1)[0]) or "site"
    )
    area = 1 + h % 899
    area = 667 if area == 666 else area
    return {
        "id": a.account_id,
        "name": a.account_name,
        "address": a.address,
        "email": a.email,
        "birthdate": a.birthdate.isoformat() if a.birthdate else None,
        "phone_number": a.phone_number,
        "job": a.job,
        "company": a.company,
        "ssn": f"{area:03d}-{1 + h // 899 % 99:02d}-{1 + h // 89_001 % 9999:04d}",
        "blood_group": BLOOD_GROUPS[h // 7 % len(BLOOD_GROUPS)],
        "website": f"https://www.{site[:30]}.{tld}/",
        "username": _ascii_slug(local)[:20] or f"user{h % 100_000}",
        "bank_account": a.bank_account,
    }


def external_party(pool: Sequence[Account], t: Transaction) -> Account:
    """The outside party a transaction without a counterparty goes to, in the PoC's shape:
    the same one for an account's cash and deposits, any one for a card payment."""
    key = t.transaction_id if t.transaction_type == "payment" else t.account_id
    return pool[zlib.crc32(key.encode()) % len(pool)]


def poc_transfer(t: Transaction, sender: Account, receiver: Account) -> dict:
    """The PoC's ``bank-transactions`` message of ``t`` from ``sender`` to ``receiver``.

    >>> ada = Account("a1", "Ada", bank_account="A-1")
    >>> bo = Account("a2", "Bo", bank_account="B-2")
    >>> t = Transaction("t1", "a1", "a2", "transfer", 108.0, "USD", "completed",
    ...                 datetime(2026, 1, 5, 12, tzinfo=UTC), "Harbor Trust", "cleared")
    >>> m = poc_transfer(t, ada, bo)
    >>> m["amount"], m["status"], m["evaluation"], m["transfer_date"], m["receiver_bank_account"]
    (100.0, 'completed', 'legitimate', '2026-01-05 12:00:00', 'B-2')
    """
    return {
        "transaction_id": t.transaction_id,
        "sender_bank_account": sender.bank_account,
        "sender_details": poc_user(sender),
        "receiver_bank_account": receiver.bank_account,
        "receiver_details": poc_user(receiver),
        "amount": max(round(t.amount / EUR_RATES[t.currency], 2), 0.01),
        "status": t.transaction_status,
        "evaluation": POC_EVALUATIONS[t.evaluation],
        "transfer_date": zoneless(t.datetime_occurred),
        "sender_bank": t.sender_bank,
    }


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
