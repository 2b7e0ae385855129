"""The bank, simulated: a pure, seeded generator of accounts, transactions and bad payloads.

``BankSimulator(config).events(count)`` yields events in publish order and does no I/O and
never reads the clock: the same config (seed, start time, ...) gives the same events, ids
and timestamps included. Publishing is :mod:`simulator.publish`'s job.

>>> sim = BankSimulator(SimConfig(seed=7, accounts=20))
>>> kinds = [type(e).__name__ for e in sim.events(count=50)]
>>> kinds.count("TransactionEvent") + kinds.count("BadEvent")
50

Event time: a virtual clock starts at ``config.start_time`` and advances by exponential
gaps at ``config.event_rate`` transactions per second (the CLI sets it to ``--tps`` so a
live run's timestamps track the wall clock). Fraud episodes are scheduled on that clock and
interleaved, so ``datetime_occurred`` never decreases along the stream.

Order: all accounts but the *late* ones first; then transactions. A late account is
yielded right after its ``late_after``-th transaction (1-3), or by :meth:`drain` if the run
stops before that. Account updates (balance, name or email) and accounts opened by the
``new_account_large_transfer`` scenario appear mid-stream, before their transactions.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

from pipeline.records import TRANSACTION_TYPES, Transaction
from simulator import fraud
from simulator.bad import BAD_KINDS, corrupt
from simulator.events import (
    DEFAULT_START,
    AccountEvent,
    BadEvent,
    Event,
    SimConfig,
    Stats,
    TransactionEvent,
)
from simulator.profiles import (
    CURRENCIES,
    EUR_RATES,
    AccountProfile,
    ProfileFactory,
    new_id,
)
from simulator.serialize import transaction_dict

__all__ = [
    "DEFAULT_START",
    "AccountEvent",
    "BadEvent",
    "BankSimulator",
    "Event",
    "SimConfig",
    "TransactionEvent",
]

_new_object = object.__new__
_fromtimestamp = datetime.fromtimestamp
MAX_EPISODE_LENGTH = 40  # longer than any scenario's episode


class BankSimulator:
    """Generates the event stream for one :class:`SimConfig`."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.stats = Stats()
        self._rng = rng = random.Random(config.seed)
        self._factory = ProfileFactory(random.Random(rng.getrandbits(64)))
        start = config.start_time.timestamp()
        self._t = self._next_t = start
        self._profiles = [
            self._factory.create(i, config.start_time) for i in range(config.accounts)
        ]
        self._assign_roles(rng, start)
        self._published: list[AccountProfile] = []
        self._established = [
            p for p in self._profiles if not p.is_mule and not p.late_after
        ]
        self._business = [
            p.account_id for p in self._profiles if p.account.account_type == "business"
        ] or [self._profiles[0].account_id]
        self._pools = [self._pool(h) for h in range(24)]
        self._heap: list = []
        self._seq = 0
        weights = [fraud.WEIGHTS[s] for s in config.scenarios]
        self._scenario_cum = tuple(
            math.fsum(weights[: i + 1]) for i in range(len(weights))
        )
        p_episode = fraud.episode_probability(config.fraud_rate, config.scenarios)
        # One uniform draw per ordinary step decides update / new episode / bad message.
        self._cut_update = config.update_rate
        self._cut_episode = self._cut_update + p_episode
        self._cut_bad = self._cut_episode + config.bad_rate
        # Standard normals drawn once: a table lookup is a quarter of random.gauss's cost.
        self._normals = [rng.gauss(0.0, 1.0) for _ in range(1 << 16)]
        self._foreign_rate = config.foreign_currency_rate
        self._pending_rate = config.pending_rate
        self._not_completed = config.pending_rate + config.failed_rate
        self._unidentified_rate = config.unidentified_rate
        self._truth_all = config.ground_truth_all

    def _assign_roles(self, rng: random.Random, start: float) -> None:
        """Regular payees for everyone; a few mule accounts; the late accounts."""
        for p in self._profiles:
            p.payees = rng.sample(
                range(self.config.accounts),
                min(rng.randint(1, 5), self.config.accounts - 1),
            )
            if p.index in p.payees:
                p.payees.remove(p.index)
        n_mules = min(
            self.config.accounts - 1,
            max(1, round(self.config.accounts * self.config.mule_rate)),
        )
        self._mules = rng.sample(self._profiles, n_mules)
        for p in self._mules:
            p.is_mule = True
        honest = [p for p in self._profiles if not p.is_mule]
        n_late = min(
            len(honest) - 1, round(self.config.accounts * self.config.late_account_rate)
        )
        # Late accounts are taken among those awake at the start, so they do transact early.
        start_hour = int(start // 3600) % 24
        awake = [p for p in honest if p.active_hours[start_hour]]
        candidates = awake if len(awake) > n_late else honest
        for p in rng.sample(candidates, n_late):
            p.late_after = rng.randint(1, 3)

    def _pool(self, hour: int) -> tuple[list[AccountProfile], tuple[float, ...]]:
        pool = [p for p in self._profiles if p.active_hours[hour]] or self._profiles
        total, cum = 0.0, []
        for p in pool:
            total += p.weight
            cum.append(total)
        return pool, tuple(cum)

    # fraud.Context
    def pick_established(self, rng):
        return rng.choice(self._established)

    def pick_mule(self, rng):
        return rng.choice(self._mules)

    def pick_any(self, rng):
        return rng.choice(self._profiles)

    def open_account(self, t):
        p = self._factory.create(
            len(self._profiles),
            datetime.fromtimestamp(t, UTC),
            brand_new=True,
            account_type="checking",
        )
        self._profiles.append(p)
        return p

    def events(self, count: int | None = None) -> Iterator[Event]:
        """Yields the stream; ``count`` transactions-topic messages (valid + bad), or forever.

        With a ``count`` the late accounts still unpublished are yielded at the end (as
        :meth:`drain` does); without one, call :meth:`drain` after stopping.
        """
        for p in self._profiles:
            if not p.late_after:
                yield self._publish(p, "initial")
        random_ = self._rng.random
        heap, pools = self._heap, self._pools
        log, mean_gap = math.log, 1.0 / self.config.event_rate
        cut_update, cut_episode, cut_bad = (
            self._cut_update,
            self._cut_episode,
            self._cut_bad,
        )
        # With a count, the last steps finish the fraud episodes under way (none is cut
        # short) and no episode starts that could not finish.
        limit = math.inf if count is None else count
        closing = limit - MAX_EPISODE_LENGTH
        n = 0
        while n < limit:
            n += 1
            if heap and (heap[0][0] <= self._next_t or limit - n < len(heap)):
                t, _, step = heapq.heappop(heap)
                self._t = t
                self._next_t = max(self._next_t, t)
                yield self._fraud_transaction(t, step)
                continue
            self._t = t = self._next_t
            self._next_t = t - log(1.0 - random_()) * mean_gap  # exponential gaps
            r = random_()
            if r < cut_bad:
                if r < cut_update:
                    yield self._update()
                elif r < cut_episode:
                    if n + len(heap) < closing:
                        yield from self._start_episode(t)
                else:
                    yield self._bad(t)
                    continue
            pool, cum = pools[int(t // 3600) % 24]
            p = pool[bisect(cum, random_() * cum[-1])]
            yield self._transaction(p, t)
            if p.late_after and not p.published and p.transactions >= p.late_after:
                yield self._publish(
                    p,
                    "late",
                    {
                        "kind": "late_account",
                        "account_id": p.account_id,
                        "transactions_before": p.transactions,
                    },
                )
        yield from self.drain()

    def drain(self) -> Iterator[AccountEvent]:
        """Yields the late accounts not yet published (call once the stream stops)."""
        for p in self._profiles:
            if p.late_after and not p.published:
                yield self._publish(
                    p,
                    "late",
                    {
                        "kind": "late_account",
                        "account_id": p.account_id,
                        "transactions_before": p.transactions,
                    },
                )

    def _publish(self, p: AccountProfile, reason: str, truth: dict | None = None):
        p.published = True
        if reason in ("initial", "late"):
            self._published.append(p)
        self.stats.accounts[reason] += 1
        return AccountEvent(p.account, reason, truth)

    def _transaction(self, p: AccountProfile, t: float) -> TransactionEvent:
        random_ = self._rng.random
        ttype = TRANSACTION_TYPES[bisect(p.type_cum_weights, random_())]
        eur = math.exp(p.mu + p.sigma * self._normals[int(random_() * 65536.0)])
        counterparty = None
        currency = p.currency
        if ttype == "payment":
            if random_() < 0.3:
                counterparty = self._business[int(random_() * len(self._business))]
            if random_() < self._foreign_rate:
                currency = CURRENCIES[int(random_() * len(CURRENCIES))]
        elif ttype == "transfer":
            eur *= 2.2
            if p.payees and random_() < 0.8:
                cp = p.payees[int(random_() * len(p.payees))]
            else:
                cp = int(random_() * self.config.accounts)
                if cp == p.index:
                    cp = (cp + 1) % self.config.accounts
            counterparty = self._profiles[cp].account.account_id
        elif ttype == "deposit":
            eur *= 15.0  # salaries and savings: a little more than the account spends
        amount = eur * EUR_RATES[currency]
        if ttype == "withdrawal":
            unit = 1000.0 if currency == "JPY" else 10.0  # cash comes in notes
            amount = max(2.0, round(amount * 1.6 / unit)) * unit
        r = random_()
        status = (
            "completed"
            if r >= self._not_completed
            else "pending"
            if r < self._pending_rate
            else "failed"
        )
        evaluation = (
            "unidentified" if random_() < self._unidentified_rate else "cleared"
        )
        txn = self._make(
            p, t, ttype, amount, currency, counterparty, status, evaluation
        )
        truth = None
        if self._truth_all:
            truth = {
                "kind": "transaction",
                "transaction_id": txn.transaction_id,
                "account_id": txn.account_id,
                "is_fraud": False,
                "scenario": None,
                "episode": None,
                "evaluation": evaluation,
            }
        return TransactionEvent(txn, truth)

    def _make(self, p, t, ttype, amount, currency, counterparty, status, evaluation):
        if currency == "JPY":
            amount = float(max(round(amount), 1))
        else:
            amount = max(round(amount, 2), 0.01)
        if status == "completed" and currency == p.currency:
            p.balance += amount if ttype == "deposit" else -amount
        p.transactions += 1
        stats = self.stats
        stats.transactions += 1
        stats.evaluations[evaluation] += 1
        stats.transaction_types[ttype] += 1
        account = p.account
        # Transaction's generated __init__ (frozen: one object.__setattr__ per field) costs
        # ~2.5 µs, a sixth of the budget at 50k/s; filling __dict__ makes the same object.
        txn = _new_object(Transaction)
        txn.__dict__.update(
            transaction_id=new_id(self._rng),
            account_id=account.account_id,
            counterparty_account_id=counterparty,
            transaction_type=ttype,
            amount=amount,
            currency=currency,
            transaction_status=status,
            datetime_occurred=_fromtimestamp(round(t, 3), UTC),
            sender_bank=account.bank,
            evaluation=evaluation,
        )
        return txn

    def _fraud_transaction(self, t: float, step: fraud.FraudStep) -> TransactionEvent:
        known = self._rng.random() < self.config.fraud_known_share
        evaluation = "fraudulent" if known else "unidentified"
        p = step.profile
        txn = self._make(
            p,
            t,
            step.transaction_type,
            step.amount,
            p.currency,
            step.counterparty,
            step.status,
            evaluation,
        )
        self.stats.fraud[step.scenario] += 1
        return TransactionEvent(
            txn,
            {
                "kind": "transaction",
                "transaction_id": txn.transaction_id,
                "account_id": txn.account_id,
                "is_fraud": True,
                "scenario": step.scenario,
                "episode": step.episode,
                "evaluation": evaluation,
            },
        )

    def _start_episode(self, t: float) -> Iterator[AccountEvent]:
        rng = self._rng
        cum = self._scenario_cum
        name = self.config.scenarios[bisect(cum, rng.random() * cum[-1])]
        self.stats.episodes += 1
        opened = len(self._profiles)
        for when, step in fraud.build_episode(name, self, rng, t, self.stats.episodes):
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, step))
        for p in self._profiles[opened:]:
            yield self._publish(p, "new")

    def _update(self) -> AccountEvent:
        rng = self._rng
        if not self._published:
            p = self._profiles[0]
        else:
            p = self._published[int(rng.random() * len(self._published))]
        a = p.account
        r = rng.random()
        if r < 0.6:
            a = replace(a, balance=round(p.balance, 2))
        elif r < 0.7 and a.account_type != "business":
            other = self._profiles[int(rng.random() * len(self._profiles))].account
            a = replace(
                a,
                account_name=a.account_name.split(" ")[0]
                + " "
                + other.account_name.split(" ")[-1],
            )
        else:
            local, _, domain = (a.email or "user@example.com").partition("@")
            a = replace(
                a, email=f"{local.split('.')[0]}.{rng.randint(1, 999)}@{domain}"
            )
        p.account = a
        return self._publish(p, "update")

    def _bad(self, t: float) -> BadEvent:
        rng = self._rng
        pool, cum = self._pools[int(t // 3600) % 24]
        p = pool[bisect(cum, rng.random() * cum[-1])]
        txn = Transaction(
            new_id(rng),
            p.account_id,
            None,
            "payment",
            round(p.typical_amount(rng), 2),
            p.currency,
            "completed",
            datetime.fromtimestamp(round(t, 3), UTC),
            p.account.bank,
            "cleared",
        )
        kind = BAD_KINDS[int(rng.random() * len(BAD_KINDS))]
        payload, detail = corrupt(transaction_dict(txn), kind, rng)
        self.stats.bad[kind] += 1
        truth = {
            "kind": "bad",
            "transaction_id": txn.transaction_id,
            "account_id": p.account_id,
            "is_fraud": False,
            "scenario": None,
        }
        truth.update(detail)
        return BadEvent(p.account_id, payload, truth)
