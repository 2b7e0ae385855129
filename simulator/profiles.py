"""Simulated bank customers: Faker identities plus the spending habits that drive their traffic.

Faker is slow (tens of microseconds a field), so it is used only here, once per account;
everything the transaction hot path needs is precomputed into an :class:`AccountProfile`.

Habits, per account:
- a home currency (and with it a region: Faker locale, banks, UTC offset);
- a typical amount: a log-normal distribution, ``exp(mu + sigma * N(0, 1))`` in EUR;
- active hours: a window of local hours converted to UTC (records carry UTC timestamps),
  so an account's "night" is the hours it is never active;
- an activity weight (a few accounts make most of the traffic) and a handful of regular payees.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from faker import Faker

from pipeline.records import ACCOUNT_TYPES, TRANSACTION_TYPES, Account

__all__ = [
    "CURRENCIES",
    "EUR_RATES",
    "REGIONS",
    "TRANSFER_HABIT",
    "WITHDRAWAL_HABIT",
    "AccountProfile",
    "ProfileFactory",
    "cash",
    "new_id",
    "round_figure",
]


class Region(NamedTuple):
    """Where a home currency's customers live."""

    locales: tuple[str, ...]
    utc_offset: int
    banks: tuple[str, ...]
    iban: bool


# A handful of common ISO 4217 codes; the pipeline's parser accepts a known ISO set.
REGIONS: dict[str, Region] = {
    "EUR": Region(
        ("de_DE", "fr_FR", "nl_NL", "it_IT", "es_ES"),
        1,
        ("Rheinland Sparbank", "Banque du Midi", "Lage Landen Bank"),
        True,
    ),
    "USD": Region(
        ("en_US",),
        -5,
        ("First Prairie Bank", "Harbor Trust", "Lakeside Credit Union"),
        False,
    ),
    "GBP": Region(("en_GB",), 0, ("Thameside Bank", "Northern Mutual"), True),
    "CHF": Region(("de_CH",), 1, ("Alpenbank Zürich", "Banque Léman"), True),
    "JPY": Region(("ja_JP",), 9, ("Sakura Trust Bank", "Kanto Shinkin"), False),
    "CAD": Region(("en_CA",), -5, ("Maple Federal", "Prairie Savings"), False),
}
CURRENCIES = tuple(REGIONS)
# Units of each currency per euro (fixed: the simulator needs plausible amounts, not FX).
EUR_RATES = {
    "EUR": 1.0,
    "USD": 1.08,
    "GBP": 0.85,
    "CHF": 0.95,
    "JPY": 160.0,
    "CAD": 1.47,
}
HOME_CURRENCY_WEIGHTS = (0.40, 0.25, 0.15, 0.08, 0.07, 0.05)

ACCOUNT_TYPE_WEIGHTS = (0.60, 0.15, 0.15, 0.10)  # checking, savings, business, credit
# Median amount in EUR by account type, and the transaction-type mix of each type of account.
MEDIAN_EUR = {"checking": 35.0, "savings": 250.0, "business": 400.0, "credit": 45.0}
TYPE_MIX = {
    "checking": {
        "payment": 0.55,
        "transfer": 0.20,
        "withdrawal": 0.15,
        "deposit": 0.10,
    },
    "savings": {"transfer": 0.60, "withdrawal": 0.10, "deposit": 0.30},
    "business": {"payment": 0.45, "transfer": 0.40, "deposit": 0.15},
    "credit": {"payment": 0.90, "withdrawal": 0.10},
}
NIGHT_OWL_SHARE = 0.05
# An account's transfers and withdrawals are larger than its card payments by these factors.
TRANSFER_HABIT = 2.2
WITHDRAWAL_HABIT = 1.6


def new_id(rng: random.Random) -> str:
    """A UUID-4-shaped id from a seeded RNG (reproducible, unlike ``uuid.uuid4``)."""
    h = f"{rng.getrandbits(128):032x}"
    return (
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
    )


def cash(amount: float, currency: str) -> float:
    """A cash amount: whole notes (tens; thousands of yen), at least two of them.

    >>> cash(37.0, "EUR"), cash(2_345.0, "JPY"), cash(3.0, "USD")
    (40.0, 2000.0, 20.0)
    """
    unit = 1000.0 if currency == "JPY" else 10.0
    return max(2.0, round(amount / unit)) * unit


def round_figure(amount: float) -> float:
    """``amount`` rounded to a round figure: a multiple of half its leading power of ten.

    >>> round_figure(216.0), round_figure(1_080.0), round_figure(32_000.0), round_figure(7.0)
    (200.0, 1000.0, 30000.0, 7.0)
    """
    unit = max(1.0, 10.0 ** math.floor(math.log10(max(amount, 1.0))) / 2)
    return max(unit, round(amount / unit) * unit)


@dataclass(eq=False)
class AccountProfile:
    """One simulated account: its current record plus the habits that generate its traffic."""

    index: int
    account: Account
    currency: str
    mu: float  # log of the typical amount, in EUR
    sigma: float
    active_hours: tuple[bool, ...]  # indexed by UTC hour
    weight: float
    type_cum_weights: tuple[float, ...]
    payees: list[int] = field(default_factory=list)
    paid: set[str] = field(default_factory=set)  # other counterparties it has paid
    late_after: int = 0  # > 0: published only after this many of its own transactions
    published: bool = False
    is_mule: bool = False
    transactions: int = 0
    balance: float = 0.0

    @property
    def account_id(self) -> str:
        return self.account.account_id

    def typical_amount(self, rng: random.Random) -> float:
        """One draw of this account's habitual amount, in its home currency."""
        return (
            math.exp(self.mu + self.sigma * rng.gauss(0.0, 1.0))
            * EUR_RATES[self.currency]
        )


def _active_hours(rng: random.Random, utc_offset: int) -> tuple[bool, ...]:
    if rng.random() < NIGHT_OWL_SHARE:
        start, length = rng.randint(17, 21), rng.randint(8, 11)
    else:
        start, length = rng.randint(6, 9), rng.randint(12, 16)
    local = {(start + i) % 24 for i in range(length)}
    return tuple(((h + utc_offset) % 24) in local for h in range(24))


def _type_cum_weights(mix: dict[str, float]) -> tuple[float, ...]:
    """Cumulative weights over TRANSACTION_TYPES, normalised to end at 1.0."""
    weights = [mix.get(t, 0.0) for t in TRANSACTION_TYPES]
    total, out = sum(weights), []
    running = 0.0
    for w in weights:
        running += w
        out.append(running / total)
    out[-1] = 1.0
    return tuple(out)


class ProfileFactory:
    """Builds account profiles from one seeded RNG (Faker instances are seeded from it too)."""

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._fakers: dict[str, Faker] = {}

    def _faker(self, locale: str) -> Faker:
        fake = self._fakers.get(locale)
        if fake is None:
            fake = Faker(locale)
            fake.seed_instance(self._rng.getrandbits(64))
            self._fakers[locale] = fake
        return fake

    def create(
        self,
        index: int,
        now: datetime,
        *,
        brand_new: bool = False,
        account_type: str | None = None,
    ) -> AccountProfile:
        """A new account profile; ``brand_new`` accounts are created at ``now``."""
        rng = self._rng
        currency = rng.choices(CURRENCIES, HOME_CURRENCY_WEIGHTS)[0]
        region = REGIONS[currency]
        fake = self._faker(rng.choice(region.locales))
        account_type = (
            account_type or rng.choices(ACCOUNT_TYPES, ACCOUNT_TYPE_WEIGHTS)[0]
        )
        person = fake.name()
        company = fake.company()
        if brand_new:
            created_at = now
        else:
            created_at = now - timedelta(seconds=rng.randint(86_400, 10 * 365 * 86_400))
        birthdate = date(
            now.year - rng.randint(18, 85), rng.randint(1, 12), rng.randint(1, 28)
        )
        bank_account = (
            fake.iban()
            if region.iban
            else (
                f"{rng.randint(10_000_000, 99_999_999)}-{rng.randint(10**9, 10**10 - 1)}"
            )
        )
        mu = math.log(MEDIAN_EUR[account_type]) + rng.gauss(0.0, 0.5)
        balance = round(
            math.exp(mu + 2.5 + rng.gauss(0.0, 1.0)) * EUR_RATES[currency], 2
        )
        account = Account(
            account_id=new_id(rng),
            account_name=company if account_type == "business" else person,
            email=fake.email(),
            account_type=account_type,
            balance=0.0 if brand_new else balance,
            created_at=created_at,
            address=fake.address().replace("\n", ", "),
            birthdate=birthdate,
            phone_number=fake.phone_number(),
            job=fake.job(),
            company=company,
            bank=rng.choice(region.banks),
            bank_account=bank_account,
        )
        return AccountProfile(
            index=index,
            account=account,
            currency=currency,
            mu=mu,
            sigma=rng.uniform(0.5, 1.0),
            active_hours=_active_hours(rng, region.utc_offset),
            weight=rng.lognormvariate(0.0, 0.8),
            type_cum_weights=_type_cum_weights(TYPE_MIX[account_type]),
            balance=account.balance,
        )
