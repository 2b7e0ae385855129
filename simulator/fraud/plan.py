"""What a fraud family plans and what it may ask of the bank: shared by every family.

A family's builder returns a :data:`Plan`: one :class:`Planned` step per transaction, each
with its own account (episodes such as ``mule_inflow`` involve many senders), an offset in
seconds from the episode's start, and an amount in that account's home currency.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from simulator.profiles import TRANSFER_HABIT, AccountProfile

__all__ = [
    "Context",
    "Plan",
    "Planned",
    "distinct",
    "new_payee",
    "transfer_habit",
]


class Planned(NamedTuple):
    """One transaction of an episode, before it gets an id and a time."""

    offset: float  # seconds after the episode starts
    profile: AccountProfile  # the account the transaction is booked on (the sender)
    transaction_type: str
    amount: float  # in the profile's home currency, unrounded
    counterparty: str | None
    status: str = "completed"


Plan = list[Planned]


class Context(Protocol):
    """What a family may ask of the bank (``BankSimulator`` implements it)."""

    def pick_established(self, rng: random.Random) -> AccountProfile:
        """An ordinary account published from the start (no mule, not late)."""

    def pick_mule(self, rng: random.Random) -> AccountProfile:
        """One of the bank's mule accounts."""

    def pick_any(self, rng: random.Random) -> AccountProfile:
        """Any account of the bank."""

    def open_account(self, t: float) -> AccountProfile:
        """A brand-new checking account, opened at ``t`` (published before its use)."""

    def new_merchant(self, t: float) -> str:
        """The id of a merchant outside the bank that nobody has paid before."""

    def business_id(self, rng: random.Random) -> str:
        """The id of one of the bank's business accounts (a merchant)."""

    def counterparties_of(self, p: AccountProfile) -> set[str]:
        """Ids of every account ``p`` pays regularly or has paid."""

    def payers_of(self, p: AccountProfile) -> list[AccountProfile]:
        """Accounts that have ``p`` among their regular payees."""


def transfer_habit(p: AccountProfile, rng: random.Random) -> float:
    """One draw of ``p``'s habitual transfer amount, in its home currency."""
    return p.typical_amount(rng) * TRANSFER_HABIT


def distinct(
    pick: Callable[[random.Random], AccountProfile],
    rng: random.Random,
    n: int,
    exclude: Iterable[int] = (),
) -> list[AccountProfile]:
    """Up to ``n`` different accounts from ``pick``, none of index in ``exclude``.

    Fewer than ``n`` when the bank is too small to find them in a few tries each.
    """
    seen = set(exclude)
    out: list[AccountProfile] = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        p = pick(rng)
        if p.index not in seen:
            seen.add(p.index)
            out.append(p)
    return out


def new_payee(
    ctx: Context, p: AccountProfile, rng: random.Random, t: float, mule_share: float
) -> AccountProfile:
    """An account ``p`` has never paid: a mule with chance ``mule_share``, else an
    ordinary-looking one; a newly opened account when the bank has none left."""
    known = ctx.counterparties_of(p)
    for _ in range(30):
        other = ctx.pick_mule(rng) if rng.random() < mule_share else ctx.pick_any(rng)
        if other is not p and other.account_id not in known:
            return other
    return ctx.open_account(t)
