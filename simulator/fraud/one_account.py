"""Fraud families in which one account is abused (the table is in :mod:`simulator.fraud`).

Each builder takes the bank (:class:`~simulator.fraud.plan.Context`), the generator's
seeded RNG and the episode's start ``t`` (epoch seconds), and returns its plan.
"""

from __future__ import annotations

import random

from simulator.fraud.plan import (
    Context,
    Plan,
    Planned,
    distinct,
    new_payee,
    transfer_habit,
)
from simulator.profiles import EUR_RATES, WITHDRAWAL_HABIT, cash, round_figure

__all__ = [
    "account_takeover_new_payee",
    "card_testing",
    "compromised_account",
    "fixed_cashout",
    "leaked_account",
    "new_account_large_transfer",
    "night_activity",
    "salami_drain",
    "transfer_burst",
]

HOUR = 3600.0
# Round sums a cash-out crew takes again and again, in EUR (converted and re-rounded).
CASHOUT_EUR = (100.0, 200.0, 250.0, 300.0, 500.0, 1000.0)


def compromised_account(ctx: Context, rng: random.Random, t: float) -> Plan:
    p = ctx.pick_established(rng)
    span = rng.uniform(300, HOUR)
    plan = []
    for _ in range(rng.randint(3, 8)):
        ttype = rng.choices(("transfer", "payment", "withdrawal"), (0.5, 0.3, 0.2))[0]
        cp = ctx.pick_mule(rng).account_id if ttype == "transfer" else None
        amount = p.typical_amount(rng) * rng.uniform(5, 20)
        plan.append(Planned(rng.uniform(0, span), p, ttype, amount, cp))
    return plan


def transfer_burst(ctx: Context, rng: random.Random, t: float) -> Plan:
    p = ctx.pick_established(rng)
    span = rng.uniform(60, 300)
    plan = []
    for _ in range(rng.randint(8, 20)):
        other = ctx.pick_mule(rng) if rng.random() < 0.5 else ctx.pick_any(rng)
        while other is p:
            other = ctx.pick_any(rng)
        amount = p.typical_amount(rng) * rng.uniform(1, 3)
        plan.append(
            Planned(rng.uniform(0, span), p, "transfer", amount, other.account_id)
        )
    return plan


def new_account_large_transfer(ctx: Context, rng: random.Random, t: float) -> Plan:
    p = ctx.open_account(t)
    plan = []
    for _ in range(rng.randint(1, 3)):
        amount = rng.uniform(5_000, 50_000) * EUR_RATES[p.currency]
        plan.append(
            Planned(
                rng.uniform(60, 1800),
                p,
                "transfer",
                amount,
                ctx.pick_mule(rng).account_id,
            )
        )
    return plan


def night_activity(ctx: Context, rng: random.Random, t: float) -> Plan:
    hour = int(t // HOUR) % 24
    p = ctx.pick_established(rng)
    for _ in range(30):
        if not p.active_hours[hour]:
            break
        p = ctx.pick_established(rng)
    span = (HOUR - t % HOUR) * rng.uniform(0.3, 1.0)  # stay within this night hour
    plan = []
    for _ in range(rng.randint(1, 4)):
        ttype = "withdrawal" if rng.random() < 0.5 else "payment"
        amount = p.typical_amount(rng) * rng.uniform(2, 6)
        plan.append(Planned(rng.uniform(0, span), p, ttype, amount, None))
    return plan


def card_testing(ctx: Context, rng: random.Random, t: float) -> Plan:
    p = ctx.pick_established(rng)
    span = rng.uniform(60, 600)
    rate = EUR_RATES[p.currency]
    plan = [
        Planned(
            rng.uniform(0, span),
            p,
            "payment",
            rng.uniform(0.5, 2.0) * rate,
            None,
            "failed" if rng.random() < 0.33 else "completed",
        )
        for _ in range(rng.randint(10, 30))
    ]
    amount = p.typical_amount(rng) * rng.uniform(10, 30)
    plan.append(Planned(span + rng.uniform(30, 300), p, "payment", amount, None))
    return plan


def account_takeover_new_payee(ctx: Context, rng: random.Random, t: float) -> Plan:
    """1-3 transfers of 2-8x habit to one payee the account has never paid."""
    p = ctx.pick_established(rng)
    payee = new_payee(ctx, p, rng, t, mule_share=0.5).account_id
    offset = rng.uniform(0, 600)
    plan = []
    for _ in range(rng.randint(1, 3)):
        amount = transfer_habit(p, rng) * rng.uniform(2, 8)
        plan.append(Planned(offset, p, "transfer", amount, payee))
        offset += rng.uniform(300, 2 * HOUR)
    return plan


def salami_drain(ctx: Context, rng: random.Random, t: float) -> Plan:
    """12-30 habit-sized transfers (a few cash withdrawals) to one new payee over 3-24 h."""
    p = ctx.pick_established(rng)
    payee = new_payee(ctx, p, rng, t, mule_share=0.8).account_id
    span = rng.uniform(3 * HOUR, 24 * HOUR)
    plan = []
    for _ in range(rng.randint(12, 30)):
        if rng.random() < 0.15:
            amount = cash(
                p.typical_amount(rng) * WITHDRAWAL_HABIT * rng.uniform(0.7, 1.3),
                p.currency,
            )
            plan.append(Planned(rng.uniform(0, span), p, "withdrawal", amount, None))
        else:
            amount = transfer_habit(p, rng) * rng.uniform(0.6, 1.3)
            plan.append(Planned(rng.uniform(0, span), p, "transfer", amount, payee))
    return plan


def fixed_cashout(ctx: Context, rng: random.Random, t: float) -> Plan:
    """4-12 cash-outs of one fixed round sum within 20 min-6 h: ATM withdrawals, or
    transfers to one mule (a quarter of the episodes)."""
    p = ctx.pick_established(rng)
    amount = round_figure(rng.choice(CASHOUT_EUR) * EUR_RATES[p.currency])
    if rng.random() < 0.25:
        ttype, cp = "transfer", ctx.pick_mule(rng).account_id
    else:
        ttype, cp = "withdrawal", None
    span = rng.uniform(1200, 6 * HOUR)
    return [
        Planned(rng.uniform(0, span), p, ttype, amount, cp)
        for _ in range(rng.randint(4, 12))
    ]


def leaked_account(ctx: Context, rng: random.Random, t: float) -> Plan:
    """2-6 payments/transfers of 3-8x habit to ordinary accounts and shops, over 1-12 h."""
    p = ctx.pick_established(rng)
    span = rng.uniform(HOUR, 12 * HOUR)
    plan = []
    for _ in range(rng.randint(2, 6)):
        others = []
        if rng.random() < 0.6:
            # Another account of the bank; none in a bank with no other (then a shop).
            others = distinct(ctx.pick_established, rng, 1, {p.index}) or distinct(
                ctx.pick_any, rng, 1, {p.index}
            )
        if others:
            amount = transfer_habit(p, rng) * rng.uniform(3, 8)
            plan.append(
                Planned(rng.uniform(0, span), p, "transfer", amount, others[0].account_id)
            )
        else:
            amount = p.typical_amount(rng) * rng.uniform(3, 8)
            plan.append(
                Planned(
                    rng.uniform(0, span), p, "payment", amount, ctx.business_id(rng)
                )
            )
    return plan

