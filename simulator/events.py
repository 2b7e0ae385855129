"""What the simulator generates: its config, the events it yields, the counts it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from pipeline.records import TRANSACTION_TYPES, Account, Transaction
from simulator import fraud
from simulator.bad import BAD_KINDS
from simulator.formats import FORMATS
from simulator.pace import DEFAULT_TX_PER_ACCOUNT_PER_DAY

__all__ = [
    "DEFAULT_START",
    "AccountEvent",
    "BadEvent",
    "Event",
    "SimConfig",
    "Stats",
    "TransactionEvent",
]

# Seeded runs without --start-time begin here (a Monday, noon UTC: Europe and the Americas
# awake, Japan's evening), never at now(); far enough in the past that a run of a million
# transactions at bank pace over 1,000 accounts (about a year) still ends before today.
DEFAULT_START = datetime(2025, 1, 6, 12, tzinfo=UTC)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Rates are fractions of the transactions topic's messages."""

    seed: int = 0
    accounts: int = 1000
    start_time: datetime = DEFAULT_START
    # Transactions per second of event time, constant; None: bank pace, each account
    # transacting during its active hours, tx_per_account_per_day a day on average.
    event_rate: float | None = None
    tx_per_account_per_day: float = DEFAULT_TX_PER_ACCOUNT_PER_DAY
    fraud_rate: float = 0.005
    # frauds labelled `fraudulent` by the bank; the rest is `unidentified`
    fraud_known_share: float = 0.4
    unidentified_rate: float = 0.03  # ordinary transactions sent to the validator
    bad_rate: float = 0.0
    late_account_rate: float = 0.02
    update_rate: float = 0.002
    mule_rate: float = 0.01
    foreign_currency_rate: float = 0.08
    pending_rate: float = 0.03
    failed_rate: float = 0.015
    scenarios: tuple[str, ...] = tuple(fraud.SCENARIOS)
    # also a ground-truth row for every ordinary transaction
    ground_truth_all: bool = False
    # record shape of the malformed messages (simulator.formats); nothing else depends on it
    message_format: str = "riskpipe"

    def __post_init__(self):
        if self.accounts < 2:
            raise ValueError(f"SimConfig: accounts must be >= 2, got {self.accounts}")
        if self.event_rate is not None and not self.event_rate > 0:
            raise ValueError(
                f"SimConfig: event_rate must be > 0, got {self.event_rate}"
            )
        if not self.tx_per_account_per_day > 0:
            raise ValueError(
                "SimConfig: tx_per_account_per_day must be > 0, got "
                f"{self.tx_per_account_per_day}"
            )
        if self.message_format not in FORMATS:
            raise ValueError(
                f"SimConfig: message_format {self.message_format!r} not in {FORMATS}"
            )
        for name in (
            "fraud_rate",
            "fraud_known_share",
            "unidentified_rate",
            "bad_rate",
            "late_account_rate",
            "update_rate",
            "mule_rate",
            "foreign_currency_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SimConfig: {name} must be in [0, 1], got {value}")
        if self.fraud_rate >= 1.0 or self.bad_rate + self.update_rate >= 1.0:
            raise ValueError(
                "SimConfig: fraud_rate must be < 1 and bad_rate + update_rate < 1"
            )
        unknown = set(self.scenarios) - set(fraud.SCENARIOS)
        if unknown or (self.fraud_rate > 0 and not self.scenarios):
            raise ValueError(
                f"SimConfig: scenarios {sorted(unknown) or '(none)'} not in "
                f"{sorted(fraud.SCENARIOS)}"
            )
        if self.start_time.tzinfo is None:
            raise ValueError("SimConfig: start_time must be timezone-aware")


class AccountEvent(NamedTuple):
    """An account to write to Postgres and publish; reason: initial, late, update or new.

    ``currency`` is the account's home currency (its balance's), which the record lacks.
    """

    account: Account
    reason: str
    truth: dict | None = None
    currency: str = "EUR"


class TransactionEvent(NamedTuple):
    """A valid transaction; ``truth`` is its ground-truth row (fraud, or all with the flag)."""

    transaction: Transaction
    truth: dict | None = None


class BadEvent(NamedTuple):
    """A malformed transactions-topic message, keyed by ``key`` (an account id)."""

    key: str | None
    payload: bytes
    truth: dict


Event = AccountEvent | TransactionEvent | BadEvent


@dataclass
class Stats:
    """Counts of what the generator has yielded."""

    accounts: dict = field(
        default_factory=lambda: dict.fromkeys(("initial", "late", "update", "new"), 0)
    )
    transactions: int = 0
    evaluations: dict = field(
        default_factory=lambda: dict.fromkeys(
            ("cleared", "unidentified", "fraudulent"), 0
        )
    )
    transaction_types: dict = field(
        default_factory=lambda: dict.fromkeys(TRANSACTION_TYPES, 0)
    )
    fraud: dict = field(default_factory=lambda: dict.fromkeys(fraud.SCENARIOS, 0))
    episodes: int = 0
    bad: dict = field(default_factory=lambda: dict.fromkeys(BAD_KINDS, 0))
    first_time: float | None = None  # event time of the first and last transaction
    last_time: float | None = None

    def as_dict(self) -> dict:
        return {
            "accounts": dict(self.accounts),
            "transactions": self.transactions,
            "evaluations": dict(self.evaluations),
            "transaction_types": dict(self.transaction_types),
            "fraud": {
                "transactions": sum(self.fraud.values()),
                "episodes": self.episodes,
                "by_scenario": dict(self.fraud),
            },
            "bad": {"messages": sum(self.bad.values()), "by_kind": dict(self.bad)},
            "event_time": self.event_time(),
        }

    def event_time(self) -> dict:
        """First and last transaction's event time (ISO) and the days between them."""
        if self.first_time is None:
            return {"first": None, "last": None, "days": 0.0}
        return {
            "first": datetime.fromtimestamp(self.first_time, UTC).isoformat(),
            "last": datetime.fromtimestamp(self.last_time, UTC).isoformat(),
            "days": round((self.last_time - self.first_time) / 86_400, 3),
        }
