"""Injected fraud families ("scenarios"), in the spirit of the "Handbook of Fraud Detection"
simulator.

A family builds an *episode*: one to a few dozen transactions scheduled over the next
minutes, hours or day of event time, each recorded in ground truth with the family's name
(``scenario``), its episode number and whether the bank labelled it (``bank_labelled``).
Amounts are relative to each account's habit (its typical amount; transfers habitually
2.2x a payment) unless given in EUR-equivalent. Every range below is drawn per episode or
per transaction from the generator's seeded RNG.

| scenario                   | what happens                                                     |
|----------------------------|------------------------------------------------------------------|
| compromised_account        | 3-8 payments/transfers/withdrawals over 5 min-1 h, 5-20x the     |
|                            | account's habitual amount; transfers go to mule accounts         |
| transfer_burst             | 8-20 transfers within 1-5 minutes, 1-3x habit, to many accounts  |
| new_account_large_transfer | an account is opened (published at once), then 1-3 transfers of  |
|                            | 5,000-50,000 EUR-equivalent to mules within 1-30 minutes         |
| night_activity             | 1-4 withdrawals/payments, 2-6x habit, at hours the account is    |
|                            | never active (its night), within an hour                         |
| card_testing               | 10-30 tiny payments (0.5-2.0, a third declined) within 1-10 min, |
|                            | then one large payment, 10-30x habit                             |
| mule_inflow                | a mule receives 1-2 transfers (1-5x the sender's habit) from     |
|                            | each of 8-20 distinct senders within 1-4 h; about 5 in 6 senders |
|                            | never paid it before                                             |
| account_takeover_new_payee | an established account pays a payee it has never paid (a mule,   |
|                            | or an ordinary account: even odds) 1-3 transfers of 2-8x its     |
|                            | transfer habit, within 10 min-4 h                                |
| salami_drain               | 12-30 transfers of 0.6-1.3x habit to one payee the account never |
|                            | paid (mostly a mule), with a few cash withdrawals, over 3-24 h   |
| structuring                | 3-8 transfers of 9,000-9,999 EUR-equivalent (under a 10,000      |
|                            | reporting threshold; half round sums) from 1-4 accounts into one |
|                            | mule within 4-24 h                                               |
| merchant_burst             | 10-40 accounts pay a merchant id never seen before (outside the  |
|                            | bank), around one price of 15-250 EUR, within 2-15 min; 10%      |
|                            | declined                                                         |
| fixed_cashout              | 4-12 cash-outs of one fixed round sum (100-1,000 EUR-equivalent, |
|                            | rounded in the home currency) within 20 min-6 h: ATM             |
|                            | withdrawals, or transfers to one mule (1 episode in 4)           |
| compromised_counterparty   | 1-3 ordinary accounts are taken over to collect money: 4-12      |
|                            | normal accounts (half their regular payers, if any) send them    |
|                            | 1-2 transfers of 1-3x habit within 1-8 h                         |
| leaked_account             | a leaked account makes 2-6 transfers/payments of 3-8x its habit  |
|                            | to ordinary accounts and shops (no mules) over 1-12 h            |

Ground truth's ``account_id`` is the account a transaction is booked on: the sender, which
in ``mule_inflow``, ``structuring``, ``merchant_burst`` and ``compromised_counterparty`` is
a victim or a money mover, not the receiver.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from simulator.fraud import many_accounts, one_account
from simulator.fraud.plan import Context, Plan, Planned
from simulator.profiles import AccountProfile

__all__ = [
    "FAMILIES",
    "MAX_LENGTH",
    "MEAN_LENGTH",
    "SCENARIOS",
    "WEIGHTS",
    "Context",
    "Family",
    "FraudStep",
    "Planned",
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


class Family(NamedTuple):
    """A fraud family: its builder, how often its episodes start, how long they are."""

    build: object  # (Context, random.Random, t) -> Plan
    weight: float  # relative frequency of its episodes
    mean_length: float  # mean transactions per episode (to hit --fraud-rate)
    max_length: int


FAMILIES: dict[str, Family] = {
    "compromised_account": Family(one_account.compromised_account, 0.30, 5.5, 8),
    "transfer_burst": Family(one_account.transfer_burst, 0.20, 14.0, 20),
    "new_account_large_transfer": Family(
        one_account.new_account_large_transfer, 0.15, 2.0, 3
    ),
    "night_activity": Family(one_account.night_activity, 0.20, 2.5, 4),
    "card_testing": Family(one_account.card_testing, 0.15, 21.0, 31),
    "mule_inflow": Family(many_accounts.mule_inflow, 0.10, 16.8, 40),
    "account_takeover_new_payee": Family(
        one_account.account_takeover_new_payee, 0.20, 2.0, 3
    ),
    "salami_drain": Family(one_account.salami_drain, 0.08, 21.0, 30),
    "structuring": Family(many_accounts.structuring, 0.10, 5.5, 8),
    "merchant_burst": Family(many_accounts.merchant_burst, 0.06, 25.0, 40),
    "fixed_cashout": Family(one_account.fixed_cashout, 0.12, 8.0, 12),
    "compromised_counterparty": Family(
        many_accounts.compromised_counterparty, 0.08, 10.4, 24
    ),
    "leaked_account": Family(one_account.leaked_account, 0.15, 4.0, 6),
}
SCENARIOS = {name: family.build for name, family in FAMILIES.items()}
WEIGHTS = {name: family.weight for name, family in FAMILIES.items()}
MEAN_LENGTH = {name: family.mean_length for name, family in FAMILIES.items()}
MAX_LENGTH = max(family.max_length for family in FAMILIES.values())


def build_episode(
    name: str, ctx: Context, rng: random.Random, t: float, episode: int
) -> list[tuple[float, FraudStep]]:
    """Plans one episode of family ``name`` starting at event time ``t``.

    Returns:
        ``(event_time, step)`` pairs, not sorted.
    """
    plan: Plan = FAMILIES[name].build(ctx, rng, t)
    return [
        (
            t + s.offset,
            FraudStep(
                s.profile,
                name,
                episode,
                s.transaction_type,
                s.amount,
                s.counterparty,
                s.status,
            ),
        )
        for s in plan
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
