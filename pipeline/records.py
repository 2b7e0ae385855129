"""The records riskpipe moves around: accounts, transactions, attributed transactions.

This module owns their shape. Everything else (the simulator, the parser, the sinks,
the validator client) builds and reads them through these classes, so a field is
renamed in one place.

On the wire (Kafka) every record is a JSON object with snake_case keys; timestamps are
ISO-8601 strings with a UTC offset, dates are ``YYYY-MM-DD``.

>>> t = Transaction(transaction_id="t1", account_id="a1", counterparty_account_id="a2",
...                 transaction_type="transfer", amount=12.5, currency="EUR",
...                 transaction_status="completed",
...                 datetime_occurred=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
...                 sender_bank="Bank A", evaluation="unidentified")
>>> Transaction.from_dict(t.to_dict()) == t
True
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple, Optional

__all__ = [
    "Account",
    "DeadLetter",
    "KafkaRecord",
    "AttributedTransaction",
    "Transaction",
    "EVALUATIONS",
    "VALIDATED_BY",
    "TRANSACTION_TYPES",
    "TRANSACTION_STATUSES",
    "ACCOUNT_TYPES",
    "INVESTMENT",
    "KNOWN_ACCOUNT_TYPES",
]

# `evaluation` as set by the sender's bank: already known fraud, not known either way,
# or cleared by the bank.
EVALUATIONS = ("fraudulent", "unidentified", "cleared")
# Who decided `is_fraudulent` on an attributed transaction.
VALIDATED_BY = ("bank", "validator", "none")
TRANSACTION_TYPES = ("transfer", "payment", "withdrawal", "deposit")
TRANSACTION_STATUSES = ("completed", "pending", "failed")
# The account types riskpipe's own bank issues (the simulator draws from these).
ACCOUNT_TYPES = ("checking", "savings", "business", "credit")
# Accounts of the Flink SQL system may also be investment accounts (see
# pipeline.domain.vocabularies for how every input vocabulary maps to these words).
INVESTMENT = "investment"
KNOWN_ACCOUNT_TYPES = (*ACCOUNT_TYPES, INVESTMENT)
# Dead letters keep at most this much of the original payload (a cut UTF-8 character makes
# the kept part hex); Kafka's default message limit is 1 MB.
MAX_DEAD_LETTER_PAYLOAD = 64 * 1024


# Older than any processed_at (see AttributedTransaction.version).
_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _iso(value: Optional[datetime | date]) -> Optional[str]:
    return value.isoformat() if value is not None else None


def _datetime(value: Any) -> Optional[datetime]:
    """Parses an ISO-8601 string (or passes a datetime); naive values are taken as UTC."""
    if value is None or isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _micros(value: Optional[datetime]) -> Optional[int]:
    """A timestamp as integer microseconds since the epoch (exact, unlike ``timestamp()``)."""
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _from_micros(value: Optional[int]) -> Optional[datetime]:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _date(value: Any) -> Optional[date]:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


@dataclass(frozen=True)
class Account:
    """An account and the details of the user who holds it."""

    account_id: str
    account_name: str
    email: Optional[str] = None
    account_type: Optional[str] = None
    balance: float = 0.0
    created_at: Optional[datetime] = None
    address: Optional[str] = None
    birthdate: Optional[date] = None
    phone_number: Optional[str] = None
    job: Optional[str] = None
    company: Optional[str] = None
    bank: Optional[str] = None
    bank_account: Optional[str] = None

    def to_dict(self) -> dict:
        """The JSON-ready form (timestamps and dates as ISO strings)."""
        out = dataclasses.asdict(self)
        out["created_at"] = _iso(self.created_at)
        out["birthdate"] = _iso(self.birthdate)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Account":
        """Builds an account from its JSON form; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["created_at"] = _datetime(values.get("created_at"))
        values["birthdate"] = _date(values.get("birthdate"))
        if values.get("balance") is not None:
            values["balance"] = float(values["balance"])
        return cls(**values)

    def to_tuple(self) -> tuple:
        """The account as a tuple of primitives, for compact coders; see :meth:`from_tuple`."""
        return (
            self.account_id, self.account_name, self.email, self.account_type, self.balance,
            _micros(self.created_at), self.address,
            None if self.birthdate is None else self.birthdate.toordinal(),
            self.phone_number, self.job, self.company, self.bank, self.bank_account,
        )

    @classmethod
    def from_tuple(cls, values: tuple) -> "Account":
        """Inverse of :meth:`to_tuple`."""
        (account_id, name, email, account_type, balance, created, address, birth, phone, job,
         company, bank, bank_account) = values
        return cls(
            account_id, name, email, account_type, balance, _from_micros(created), address,
            None if birth is None else date.fromordinal(birth), phone, job, company, bank,
            bank_account,
        )


@dataclass(frozen=True)
class Transaction:
    """A money movement from `account_id` (the sender) to `counterparty_account_id`.

    ``account_details`` and ``counterparty_details`` are the sender's and the receiver's
    accounts as the message itself described them (the fraud PoC's transfers carry both
    users); None when the message names only ids, as riskpipe's own shape does. They are
    left out of :meth:`to_dict` when None.
    """

    transaction_id: str
    account_id: str
    counterparty_account_id: Optional[str]
    transaction_type: str
    amount: float
    currency: str
    transaction_status: str
    datetime_occurred: datetime
    sender_bank: Optional[str]
    evaluation: str
    account_details: Optional[Account] = None
    counterparty_details: Optional[Account] = None

    def to_dict(self) -> dict:
        """The JSON-ready form (timestamps as ISO strings; details only when known)."""
        out = {
            "transaction_id": self.transaction_id,
            "account_id": self.account_id,
            "counterparty_account_id": self.counterparty_account_id,
            "transaction_type": self.transaction_type,
            "amount": self.amount,
            "currency": self.currency,
            "transaction_status": self.transaction_status,
            "datetime_occurred": _iso(self.datetime_occurred),
            "sender_bank": self.sender_bank,
            "evaluation": self.evaluation,
        }
        if self.account_details is not None:
            out["account_details"] = self.account_details.to_dict()
        if self.counterparty_details is not None:
            out["counterparty_details"] = self.counterparty_details.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Transaction":
        """Builds a transaction from already-validated JSON; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["datetime_occurred"] = _datetime(values["datetime_occurred"])
        values["amount"] = float(values["amount"])
        values.setdefault("counterparty_account_id", None)
        values.setdefault("sender_bank", None)
        for name in ("account_details", "counterparty_details"):
            if isinstance(values.get(name), dict):
                values[name] = Account.from_dict(values[name])
        return cls(**values)

    def to_tuple(self) -> tuple:
        """The transaction as a tuple of primitives, for compact coders; see :meth:`from_tuple`.

        The accounts a message described follow, as two more items, only when there are any
        (riskpipe's own records stay ten primitives).

        >>> t = Transaction("t1", "a1", None, "transfer", 1.5, "EUR", "completed",
        ...                 datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), None, "cleared")
        >>> Transaction.from_tuple(t.to_tuple()) == t, len(t.to_tuple())
        (True, 10)
        >>> poc = dataclasses.replace(t, account_details=Account("a1", "Ann"))
        >>> Transaction.from_tuple(poc.to_tuple()) == poc
        True
        """
        values = (
            self.transaction_id, self.account_id, self.counterparty_account_id,
            self.transaction_type, self.amount, self.currency, self.transaction_status,
            _micros(self.datetime_occurred), self.sender_bank, self.evaluation,
        )
        if self.account_details is None and self.counterparty_details is None:
            return values
        return (*values, *(
            None if details is None else details.to_tuple()
            for details in (self.account_details, self.counterparty_details)
        ))

    @classmethod
    def from_tuple(cls, values: tuple) -> "Transaction":
        """Inverse of :meth:`to_tuple`."""
        (transaction_id, account_id, counterparty, kind, amount, currency, status, occurred,
         sender_bank, evaluation) = values[:10]
        details = [None if d is None else Account.from_tuple(d) for d in values[10:]]
        return cls(
            transaction_id, account_id, counterparty, kind, amount, currency, status,
            _from_micros(occurred), sender_bank, evaluation, *details,
        )


@dataclass(frozen=True)
class AttributedTransaction:
    """A transaction joined to its account, scored, and decided fraudulent or not."""

    transaction: Transaction
    account_name: Optional[str]
    risk_score: int
    risk_reasons: tuple[str, ...] = ()
    is_fraudulent: bool = False
    validated_by: str = "none"
    processed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # The account as the join found it (its version as of the transaction), when the
    # scorer passes it on; the sinks copy its email, type and balance. Not in to_dict().
    account: Optional[Account] = None
    # Between the stateful steps and the model: the feature vector so far (the sender's,
    # then the counterparty's appended), and whether this row corrects one emitted before
    # for the same transaction. Not in to_dict(); the model step empties ``features``.
    features: tuple[float, ...] = ()
    correction: bool = False

    @property
    def transaction_id(self) -> str:
        return self.transaction.transaction_id

    @property
    def account_id(self) -> str:
        return self.transaction.account_id

    @property
    def known_account(self) -> Optional[Account]:
        """The sender's account: as joined, else as the transaction's message described it."""
        return self.account if self.account is not None else self.transaction.account_details

    @property
    def version(self) -> datetime:
        """What orders the rows of one transaction: ``processed_at`` (a correction is made
        after the row it corrects); a record without one counts as the oldest."""
        return self.processed_at or _NEVER

    def to_tuple(self) -> tuple:
        """The row as a tuple of primitives, for compact state; see :meth:`from_tuple`.

        >>> t = Transaction("t1", "a1", "a2", "transfer", 1.5, "EUR", "completed",
        ...                 datetime(2026, 1, 2, tzinfo=timezone.utc), None, "unidentified")
        >>> row = AttributedTransaction(t, "Ann", 12, ("night: 03:00 UTC (+5)",),
        ...                             processed_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
        ...                             account=Account("a1", "Ann"), features=(1.0, 0.5))
        >>> AttributedTransaction.from_tuple(row.to_tuple()) == row
        True
        """
        return (
            self.transaction.to_tuple(), self.account_name, self.risk_score, self.risk_reasons,
            self.is_fraudulent, self.validated_by, _micros(self.processed_at),
            None if self.account is None else self.account.to_tuple(), self.features,
            self.correction,
        )

    @classmethod
    def from_tuple(cls, values: tuple) -> "AttributedTransaction":
        """Inverse of :meth:`to_tuple`."""
        (txn, name, score, reasons, fraudulent, validated_by, processed, account, features,
         correction) = values
        return cls(
            Transaction.from_tuple(txn), name, score, tuple(reasons), fraudulent, validated_by,
            _from_micros(processed), None if account is None else Account.from_tuple(account),
            tuple(features), correction,
        )

    def to_dict(self) -> dict:
        """The flat JSON-ready form: the transaction's fields plus the attribution."""
        out = self.transaction.to_dict()
        out.update(
            account_name=self.account_name,
            risk_score=self.risk_score,
            risk_reasons=list(self.risk_reasons),
            is_fraudulent=self.is_fraudulent,
            validated_by=self.validated_by,
            processed_at=_iso(self.processed_at),
        )
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "AttributedTransaction":
        """Inverse of :meth:`to_dict`."""
        return cls(
            transaction=Transaction.from_dict(data),
            account_name=data.get("account_name"),
            risk_score=int(data["risk_score"]),
            risk_reasons=tuple(data.get("risk_reasons") or ()),
            is_fraudulent=bool(data.get("is_fraudulent", False)),
            validated_by=data.get("validated_by", "none"),
            processed_at=_datetime(data.get("processed_at")) or datetime.now(timezone.utc),
        )


class KafkaRecord(NamedTuple):
    """One message as read from Kafka, with where it came from (kept for dead letters)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: Optional[bytes]
    value: Optional[bytes]


@dataclass(frozen=True)
class DeadLetter:
    """A record the pipeline could not process: the original bytes, why, and its origin."""

    payload: Optional[bytes]
    reason: str
    step: str
    topic: Optional[str] = None
    partition: Optional[int] = None
    offset: Optional[int] = None

    def to_dict(self) -> dict:
        """The JSON-ready form.

        The payload is kept as text where it decodes, else as hex, and cut to its first
        ``MAX_DEAD_LETTER_PAYLOAD`` bytes so a dead letter always fits in a Kafka message;
        ``payload_bytes`` and ``payload_sha256`` describe the whole original payload.
        """
        payload = self.payload or b""
        kept = payload[:MAX_DEAD_LETTER_PAYLOAD]
        try:
            text, encoding = kept.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = kept.hex(), "hex"
        return {
            "payload": text,
            "payload_encoding": encoding,
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "payload_truncated": len(payload) > len(kept),
            "reason": self.reason,
            "step": self.step,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
