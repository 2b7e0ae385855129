"""The Kafka Connect fraud PoC's input, as its producer wrote it (``--format poc``).

One message per transfer on one topic, ``bank-transactions``, unkeyed; a user is Faker's
``profile()`` plus id, phone and bank account. The PoC knew only transfers and one
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
from collections.abc import Sequence

from pipeline.records import Account, Transaction
from simulator.bad import BadFields
from simulator.profiles import EUR_RATES
from simulator.serialize import zoneless

__all__ = [
    "BAD_FIELDS",
    "USER_FIELDS",
    "external_party",
    "poc_transfer",
    "poc_user",
]

EVALUATIONS = {
    "fraudulent": "fraudulent",
    "unidentified": "unidentified",
    "cleared": "legitimate",
}
BLOOD_GROUPS = ("A+", "A-", "B+", "B-", "O+", "O-", "AB+", "AB-")
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
BAD_FIELDS = BadFields(
    required=(
        "transaction_id",
        "sender_bank_account",
        "receiver_bank_account",
        "amount",
        "transfer_date",
    ),
    currency=None,
    timestamp="transfer_date",
    bad_timestamps=("not-a-date", "2026-02-30 10:00:00", "", "31/12/2025 25:61"),
    transaction_type=None,
)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def poc_user(a: Account) -> dict:
    """The PoC's user record of account ``a``.

    >>> u = poc_user(Account("a1", "Jörg Weiß", "joerg.weiss@example.de", "checking",
    ...              company="Müller GmbH", bank_account="DE02100100100006820101"))
    >>> u["username"], u["website"], u["bank_account"]
    ('joergweiss', 'https://www.mullergmbh.de/', 'DE02100100100006820101')
    >>> sorted(u) == sorted(USER_FIELDS) and u["blood_group"] in BLOOD_GROUPS
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

    >>> from datetime import UTC, datetime
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
        "evaluation": EVALUATIONS[t.evaluation],
        "transfer_date": zoneless(t.datetime_occurred),
        "sender_bank": t.sender_bank,
    }
