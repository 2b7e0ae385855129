"""Injected fraud scenarios, in the spirit of the "Handbook of Fraud Detection" simulator.

A scenario builds an *episode*: a few to a few dozen transactions scheduled over the next
minutes or hours of event time, all recorded in ground truth with the scenario's name.

| scenario                    | what happens                                                     |
|-----------------------------|------------------------------------------------------------------|
| compromised_account         | 3-8 payments/transfers/withdrawals over 5 min-1 h, 5-20x the     |
|                             | account's habitual amount; transfers go to mule accounts          |
| transfer_burst              | 8-20 transfers within 1-5 minutes, 1-3x habit, to many accounts   |
| new_account_large_transfer  | an account is opened (published at once), then 1-3 transfers of   |
|                             | 5,000-50,000 EUR-equivalent to mules within 1-30 minutes          |
| night_activity              | 1-4 withdrawals/payments, 2-6x habit, at hours the account is     |
|                             | never active (its night), within an hour                          |
| card_testing                | 10-30 tiny payments (0.5-2.0, a third declined) within 1-10 min,  |
|                             | then one large payment, 10-30x habit                              |
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple, Protocol

from simulator.profiles import EUR_RATES, AccountProfile

__all__ = [
    "MEAN_LENGTH",
    "SCENARIOS",
    "FraudStep",
    "build_episode",
    "episode_probability",
]


class FraudStep(NamedTuple):
    """One scheduled fraudulent transaction."""

    profile: AccountProfile
    scenario: str
    episode: int
    transaction_type: str
    amount: float  # in the profile's home currency, unrounded
    counterparty: str | None
    status: str


class Context(Protocol):
    """What a scenario may ask of the generator (``BankSimulator`` implements it)."""

    def pick_established(self, rng: random.Random) -> AccountProfile: ...
    def pick_mule(self, rng: random.Random) -> AccountProfile: ...
    def pick_any(self, rng: random.Random) -> AccountProfile: ...
    def open_account(self, t: float) -> AccountProfile: ...


Planned = list[
    tuple[float, str, float, str | None, str]
]  # offset, type, amount, cp, status


def _compromised(
    ctx: Context, rng: random.Random, t: float
) -> tuple[AccountProfile, Planned]:
    p = ctx.pick_established(rng)
    span = rng.uniform(300, 3600)
    plan = []
    for _ in range(rng.randint(3, 8)):
        ttype = rng.choices(("transfer", "payment", "withdrawal"), (0.5, 0.3, 0.2))[0]
        cp = ctx.pick_mule(rng).account_id if ttype == "transfer" else None
        plan.append(
            (
                rng.uniform(0, span),
                ttype,
                p.typical_amount(rng) * rng.uniform(5, 20),
                cp,
                "completed",
            )
        )
    return p, plan


def _burst(
    ctx: Context, rng: random.Random, t: float
) -> tuple[AccountProfile, Planned]:
    p = ctx.pick_established(rng)
    span = rng.uniform(60, 300)
    plan = []
    for _ in range(rng.randint(8, 20)):
        other = ctx.pick_mule(rng) if rng.random() < 0.5 else ctx.pick_any(rng)
        while other is p:
            other = ctx.pick_any(rng)
        cp = other.account_id
        plan.append(
            (
                rng.uniform(0, span),
                "transfer",
                p.typical_amount(rng) * rng.uniform(1, 3),
                cp,
                "completed",
            )
        )
    return p, plan


def _new_account(
    ctx: Context, rng: random.Random, t: float
) -> tuple[AccountProfile, Planned]:
    p = ctx.open_account(t)
    plan = []
    for _ in range(rng.randint(1, 3)):
        eur = rng.uniform(5_000, 50_000)
        plan.append(
            (
                rng.uniform(60, 1800),
                "transfer",
                eur * EUR_RATES[p.currency],
                ctx.pick_mule(rng).account_id,
                "completed",
            )
        )
    return p, plan


def _night(
    ctx: Context, rng: random.Random, t: float
) -> tuple[AccountProfile, Planned]:
    hour = int(t // 3600) % 24
    p = ctx.pick_established(rng)
    for _ in range(30):
        if not p.active_hours[hour]:
            break
        p = ctx.pick_established(rng)
    span = (3600 - t % 3600) * rng.uniform(0.3, 1.0)  # stay within this night hour
    plan = []
    for _ in range(rng.randint(1, 4)):
        ttype = "withdrawal" if rng.random() < 0.5 else "payment"
        plan.append(
            (
                rng.uniform(0, span),
                ttype,
                p.typical_amount(rng) * rng.uniform(2, 6),
                None,
                "completed",
            )
        )
    return p, plan


def _card_testing(
    ctx: Context, rng: random.Random, t: float
) -> tuple[AccountProfile, Planned]:
    p = ctx.pick_established(rng)
    span = rng.uniform(60, 600)
    rate = EUR_RATES[p.currency]
    plan = [
        (
            rng.uniform(0, span),
            "payment",
            rng.uniform(0.5, 2.0) * rate,
            None,
            "failed" if rng.random() < 0.33 else "completed",
        )
        for _ in range(rng.randint(10, 30))
    ]
    plan.append(
        (
            span + rng.uniform(30, 300),
            "payment",
            p.typical_amount(rng) * rng.uniform(10, 30),
            None,
            "completed",
        )
    )
    return p, plan


Builder = Callable[..., tuple[AccountProfile, Planned]]
SCENARIOS: dict[str, Builder] = {
    "compromised_account": _compromised,
    "transfer_burst": _burst,
    "new_account_large_transfer": _new_account,
    "night_activity": _night,
    "card_testing": _card_testing,
}
# Relative frequency of episodes, and their mean number of transactions (to hit --fraud-rate).
WEIGHTS = {
    "compromised_account": 0.30,
    "transfer_burst": 0.20,
    "new_account_large_transfer": 0.15,
    "night_activity": 0.20,
    "card_testing": 0.15,
}
MEAN_LENGTH = {
    "compromised_account": 5.5,
    "transfer_burst": 14.0,
    "new_account_large_transfer": 2.0,
    "night_activity": 2.5,
    "card_testing": 21.0,
}


def build_episode(
    name: str, ctx: Context, rng: random.Random, t: float, episode: int
) -> list[tuple[float, FraudStep]]:
    """Plans one episode of scenario ``name`` starting at event time ``t``.

    Returns:
        ``(event_time, step)`` pairs, not sorted.
    """
    profile, plan = SCENARIOS[name](ctx, rng, t)
    return [
        (t + offset, FraudStep(profile, name, episode, ttype, amount, cp, status))
        for offset, ttype, amount, cp, status in plan
    ]


def episode_probability(fraud_rate: float, scenarios) -> float:
    """Chance that an ordinary step starts an episode, for ``fraud_rate`` fraud overall.

    >>> round(episode_probability(0.01, ["night_activity"]), 6)
    0.00404
    """
    if not scenarios or fraud_rate <= 0:
        return 0.0
    weights = [WEIGHTS[s] for s in scenarios]
    mean_length = sum(WEIGHTS[s] * MEAN_LENGTH[s] for s in scenarios) / sum(weights)
    return fraud_rate / ((1 - fraud_rate) * mean_length)
