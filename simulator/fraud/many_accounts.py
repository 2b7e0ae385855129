"""Fraud families in which many accounts meet one counterparty (table in :mod:`simulator.fraud`).

Every transaction of such an episode is booked on its own sender, and all of them carry the
family's name in ground truth: the victims' transfers into a mule are the fraud to detect.
"""

from __future__ import annotations

import random

from simulator.fraud.plan import Context, Plan, Planned, distinct, transfer_habit
from simulator.profiles import EUR_RATES

__all__ = [
    "REPORTING_THRESHOLD_EUR",
    "STRUCTURING_BAND_EUR",
    "compromised_counterparty",
    "merchant_burst",
    "mule_inflow",
    "structuring",
]

HOUR = 3600.0
REPORTING_THRESHOLD_EUR = 10_000.0
# Structured amounts stay within this band below the threshold, in EUR-equivalent.
STRUCTURING_BAND_EUR = (9_000.0, 9_999.0)


def mule_inflow(ctx: Context, rng: random.Random, t: float) -> Plan:
    """8-20 distinct senders, most of them new to the mule, send it 1-2 transfers of 1-5x
    their habit within 1-4 h."""
    mule = ctx.pick_mule(rng)
    span = rng.uniform(HOUR, 4 * HOUR)
    n = rng.randint(8, 20)
    # A few senders are people who already pay the mule (it looks like an ordinary
    # account); the rest have never paid it.
    regulars = [p for p in ctx.payers_of(mule) if p is not mule]
    known = rng.sample(regulars, min(len(regulars), n // 6))
    senders = known + distinct(
        ctx.pick_established,
        rng,
        n - len(known),
        {mule.index, *(p.index for p in known)},
    )
    plan = []
    for sender in senders:
        for _ in range(2 if rng.random() < 0.2 else 1):
            amount = transfer_habit(sender, rng) * rng.uniform(1, 5)
            plan.append(
                Planned(
                    rng.uniform(0, span), sender, "transfer", amount, mule.account_id
                )
            )
    return plan


def structuring(ctx: Context, rng: random.Random, t: float) -> Plan:
    """3-8 transfers of 9,000-9,999 EUR-equivalent (just under a 10,000 reporting
    threshold) from 1-4 accounts into one mule within 4-24 h; half of them round sums."""
    mule = ctx.pick_mule(rng)
    senders = distinct(ctx.pick_established, rng, rng.randint(1, 4), {mule.index})
    span = rng.uniform(4 * HOUR, 24 * HOUR)
    low, high = STRUCTURING_BAND_EUR
    plan = []
    for _ in range(rng.randint(3, 8)):
        sender = rng.choice(senders)
        rate = EUR_RATES[sender.currency]
        amount = rng.uniform(low, high) * rate
        if rng.random() < 0.5:
            unit = 50.0 * (100.0 if sender.currency == "JPY" else 1.0)
            rounded = amount // unit * unit
            amount = rounded if rounded >= low * rate else amount
        plan.append(
            Planned(rng.uniform(0, span), sender, "transfer", amount, mule.account_id)
        )
    return plan


def merchant_burst(ctx: Context, rng: random.Random, t: float) -> Plan:
    """10-40 accounts pay a merchant nobody has paid before, within 2-15 min, around one
    price (15-250 EUR); one payment in ten is declined."""
    merchant = ctx.new_merchant(t)
    payers = distinct(ctx.pick_established, rng, rng.randint(10, 40))
    span = rng.uniform(120, 900)
    price_eur = rng.uniform(15, 250)
    plan = []
    for payer in payers:
        amount = price_eur * rng.uniform(0.95, 1.05) * EUR_RATES[payer.currency]
        status = "failed" if rng.random() < 0.1 else "completed"
        plan.append(
            Planned(rng.uniform(0, span), payer, "payment", amount, merchant, status)
        )
    return plan


def compromised_counterparty(ctx: Context, rng: random.Random, t: float) -> Plan:
    """1-3 ordinary accounts are taken over to collect money: 4-12 other accounts (half of
    them their regular payers, when they have some) send them 1-2 transfers of 1-3x habit
    within 1-8 h."""
    targets = distinct(ctx.pick_established, rng, rng.randint(1, 3))
    taken = {p.index for p in targets}
    regulars = [p for target in targets for p in ctx.payers_of(target)]
    regulars = [p for p in dict.fromkeys(regulars) if p.index not in taken]
    n = rng.randint(4, 12)
    known = rng.sample(regulars, min(len(regulars), n // 2))
    senders = known + distinct(
        ctx.pick_established, rng, n - len(known), taken | {p.index for p in known}
    )
    span = rng.uniform(HOUR, 8 * HOUR)
    plan = []
    for sender in senders:
        mine = [p for p in targets if p.index in sender.payees]
        for _ in range(2 if rng.random() < 0.3 else 1):
            target = rng.choice(mine or targets)
            amount = transfer_habit(sender, rng) * rng.uniform(1, 3)
            plan.append(
                Planned(
                    rng.uniform(0, span), sender, "transfer", amount, target.account_id
                )
            )
    return plan
