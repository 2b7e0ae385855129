"""The simulated bank's accounts and the parties around it.

:class:`Bank` holds every account profile with its role (ordinary, mule, late), each
account's regular payees, the bank's merchants (business accounts), and outside parties
(merchants at other banks, cash networks, employers) that some record shapes name as a
receiver. It answers the fraud families' questions (:class:`simulator.fraud.Context`).

>>> import random
>>> from simulator.events import SimConfig
>>> from simulator.profiles import ProfileFactory
>>> rng = random.Random(1)
>>> bank = Bank(SimConfig(seed=1, accounts=20), rng, ProfileFactory(random.Random(2)))
>>> len(bank.profiles), sum(p.is_mule for p in bank.profiles)
(20, 1)
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pipeline.records import Account, Transaction
from simulator.events import SimConfig
from simulator.formats import external_party
from simulator.profiles import AccountProfile, ProfileFactory

__all__ = ["OUTSIDE_PARTIES", "Bank"]

OUTSIDE_PARTIES = 24  # shops, cash networks and employers outside the bank


class Bank:
    """Accounts, roles and counterparties of one simulated bank (seeded)."""

    def __init__(self, config: SimConfig, rng: random.Random, factory: ProfileFactory):
        self._factory = factory
        self.profiles: list[AccountProfile] = [
            factory.create(i, config.start_time) for i in range(config.accounts)
        ]
        self._assign_roles(config, rng)
        self.established = [
            p for p in self.profiles if not p.is_mule and not p.late_after
        ]
        self.business = [  # the bank's merchants (no mule among them)
            p.account_id
            for p in self.profiles
            if p.account.account_type == "business" and not p.is_mule
        ] or [self.established[0].account_id]
        self._by_id = {p.account_id: p for p in self.profiles}
        self._payers: dict[int, list[AccountProfile]] = {}
        for p in self.profiles:
            for i in p.payees:
                self._payers.setdefault(i, []).append(p)
        self._outside: dict[str, Account] = {}
        self.outside_pool = tuple(
            factory.create(-1, config.start_time, account_type="business").account
            for _ in range(OUTSIDE_PARTIES)
        )

    def _assign_roles(self, config: SimConfig, rng: random.Random) -> None:
        """Regular payees for everyone; a few mule accounts; the late accounts."""
        n = config.accounts
        for p in self.profiles:
            p.payees = rng.sample(range(n), min(rng.randint(1, 5), n - 1))
            if p.index in p.payees:
                p.payees.remove(p.index)
        n_mules = min(n - 1, max(1, round(n * config.mule_rate)))
        self.mules = rng.sample(self.profiles, n_mules)
        for p in self.mules:
            p.is_mule = True
        honest = [p for p in self.profiles if not p.is_mule]
        n_late = min(len(honest) - 1, round(n * config.late_account_rate))
        # Late accounts are taken among those awake at the start, so they do transact early.
        start_hour = config.start_time.astimezone(UTC).hour
        awake = [p for p in honest if p.active_hours[start_hour]]
        candidates = awake if len(awake) > n_late else honest
        for p in rng.sample(candidates, n_late):
            p.late_after = rng.randint(1, 3)

    # simulator.fraud.Context

    def pick_established(self, rng: random.Random) -> AccountProfile:
        return rng.choice(self.established)

    def pick_mule(self, rng: random.Random) -> AccountProfile:
        return rng.choice(self.mules)

    def pick_any(self, rng: random.Random) -> AccountProfile:
        return rng.choice(self.profiles)

    def open_account(self, t: float) -> AccountProfile:
        p = self._factory.create(
            len(self.profiles),
            datetime.fromtimestamp(t, UTC),
            brand_new=True,
            account_type="checking",
        )
        self.profiles.append(p)
        self._by_id[p.account_id] = p
        return p

    def new_merchant(self, t: float) -> str:
        merchant = self._factory.create(
            -1, datetime.fromtimestamp(t, UTC), brand_new=True, account_type="business"
        ).account
        self._outside[merchant.account_id] = merchant
        return merchant.account_id

    def business_id(self, rng: random.Random) -> str:
        return rng.choice(self.business)

    def counterparties_of(self, p: AccountProfile) -> set[str]:
        return {self.profiles[i].account_id for i in p.payees} | p.paid

    def payers_of(self, p: AccountProfile) -> list[AccountProfile]:
        return list(self._payers.get(p.index, ()))

    # lookups

    def profile(self, account_id: str) -> AccountProfile | None:
        """The profile of one of the bank's accounts."""
        return self._by_id.get(account_id)

    def parties(self, t: Transaction) -> tuple[Account, Account]:
        """The sender's and the receiver's current records, for shapes that carry both.

        The receiver is the counterparty (an account of the bank or a merchant outside
        it), else an outside party (:func:`simulator.formats.external_party`).
        """
        sender = self._by_id[t.account_id].account
        cp = t.counterparty_account_id
        if cp is not None:
            inside = self._by_id.get(cp)
            if inside is not None:
                return sender, inside.account
            if cp in self._outside:
                return sender, self._outside[cp]
        return sender, external_party(self.outside_pool, t)
