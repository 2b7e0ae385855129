"""The bank, simulated: a pure, seeded generator of accounts, transactions and bad payloads.

``BankSimulator(config).events(count)`` yields events in publish order and does no I/O and
never reads the clock: the same config (seed, start time, ...) gives the same events, ids
and timestamps included. Publishing is :mod:`simulator.publish`'s job.

>>> sim = BankSimulator(SimConfig(seed=7, accounts=20))
>>> kinds = [type(e).__name__ for e in sim.events(count=50)]
>>> kinds.count("TransactionEvent") + kinds.count("BadEvent")
50

Event time: a virtual clock starts at ``config.start_time``. By default it runs at bank
pace (:mod:`simulator.pace`): each account transacts during its active hours,
``config.tx_per_account_per_day`` times a day on average, so the bank's rate follows the
day. With ``config.event_rate`` it advances by exponential gaps at that constant rate (the
CLI sets it to ``--tps`` for live runs, so their timestamps track the wall clock). Fraud
episodes are scheduled on that clock and interleaved, so ``datetime_occurred`` never
decreases along the stream.

Order: all accounts but the *late* ones first; then transactions. A late account is
yielded right after its ``late_after``-th transaction (1-3) or once a minute of event time
has passed since its first one, whichever comes first, or by :meth:`drain` if the run
stops before that. Account updates (balance, name or email) and accounts opened by fraud
episodes appear mid-stream, before their transactions.

The accounts themselves, their roles and counterparties are :class:`simulator.bank.Bank`'s.
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
from simulator.bad import corrupt, kinds_for
from simulator.bank import Bank
from simulator.events import (
    DEFAULT_START,
    AccountEvent,
    BadEvent,
    Event,
    SimConfig,
    Stats,
    TransactionEvent,
)
from simulator.formats import SHAPES, record_dict
from simulator.pace import hourly_rates, next_arrival
from simulator.profiles import (
    CURRENCIES,
    EUR_RATES,
    TRANSFER_HABIT,
    WITHDRAWAL_HABIT,
    AccountProfile,
    ProfileFactory,
    cash,
    new_id,
)

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
MAX_EPISODE_LENGTH = fraud.MAX_LENGTH
# A late account is published at most this long (event time) after its first transaction,
# well within the time a joining pipeline waits for an account.
LATE_MAX_DELAY_S = 60.0


class BankSimulator:
    """Generates the event stream for one :class:`SimConfig`."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.stats = Stats()
        self._rng = rng = random.Random(config.seed)
        self.bank = bank = Bank(
            config, rng, ProfileFactory(random.Random(rng.getrandbits(64)))
        )
        self._profiles = bank.profiles
        start = config.start_time.timestamp()
        self._t = self._next_t = start
        self._published: list[AccountProfile] = []
        self._business = bank.business
        self._pools = [self._pool(h) for h in range(24)]
        if config.event_rate is None:
            self.rates = hourly_rates(
                ((p.weight, p.active_hours) for p in self._profiles),
                config.tx_per_account_per_day,
            )
        else:
            self.rates = (config.event_rate,) * 24
        self._constant_rate = config.event_rate
        self._heap: list = []
        self._late_due: list = []  # (deadline, seq, profile) of late accounts under way
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
        shape = SHAPES[config.message_format]
        self._bad_fields, self._bad_kinds = (
            shape.bad_fields,
            kinds_for(shape.bad_fields),
        )

    @property
    def mean_rate(self) -> float:
        """Transactions per second of event time, averaged over a day."""
        return math.fsum(self.rates) / 24

    def _pool(self, hour: int) -> tuple[list[AccountProfile], tuple[float, ...]]:
        pool = [p for p in self._profiles if p.active_hours[hour]] or self._profiles
        total, cum = 0.0, []
        for p in pool:
            total += p.weight
            cum.append(total)
        return pool, tuple(cum)

    def events(self, count: int | None = None) -> Iterator[Event]:
        """Yields the stream; ``count`` transactions-topic messages (valid + bad), or forever.

        With a ``count`` the late accounts still unpublished are yielded at the end (as
        :meth:`drain` does); without one, call :meth:`drain` after stopping.
        """
        for p in self._profiles:
            if not p.late_after:
                yield self._publish(p, "initial")
        random_ = self._rng.random
        heap, pools, late_due = self._heap, self._pools, self._late_due
        log, rates = math.log, self.rates
        mean_gap = 1.0 / self._constant_rate if self._constant_rate else 0.0
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
            fraud_next = heap and (heap[0][0] <= self._next_t or limit - n < len(heap))
            if late_due:
                yield from self._due_late(heap[0][0] if fraud_next else self._next_t)
            if fraud_next:
                t, _, step = heapq.heappop(heap)
                self._t = t
                self._next_t = max(self._next_t, t)
                yield self._fraud_transaction(t, step)
                continue
            self._t = t = self._next_t
            if mean_gap:
                self._next_t = t - log(1.0 - random_()) * mean_gap  # exponential gaps
            else:
                self._next_t = next_arrival(t, -log(1.0 - random_()), rates)
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
            if p.late_after and not p.published:
                if p.transactions >= p.late_after:
                    yield self._publish_late(p)
                elif p.transactions == 1:
                    self._seq += 1
                    heapq.heappush(late_due, (t + LATE_MAX_DELAY_S, self._seq, p))
        yield from self.drain()

    def _due_late(self, t: float) -> Iterator[AccountEvent]:
        """Publishes the late accounts whose delay is over by event time ``t``."""
        late_due = self._late_due
        while late_due and late_due[0][0] <= t:
            p = heapq.heappop(late_due)[2]
            if not p.published:
                yield self._publish_late(p)

    def drain(self) -> Iterator[AccountEvent]:
        """Yields the late accounts not yet published (call once the stream stops)."""
        self._late_due.clear()
        for p in self._profiles:
            if p.late_after and not p.published:
                yield self._publish_late(p)

    def _publish_late(self, p: AccountProfile) -> AccountEvent:
        return self._publish(
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
        return AccountEvent(p.account, reason, truth, p.currency)

    def _transaction(self, p: AccountProfile, t: float) -> TransactionEvent:
        random_ = self._rng.random
        ttype = TRANSACTION_TYPES[bisect(p.type_cum_weights, random_())]
        eur = math.exp(p.mu + p.sigma * self._normals[int(random_() * 65536.0)])
        counterparty = None
        currency = p.currency
        if ttype == "payment":
            if random_() < 0.3:
                counterparty = self._business[int(random_() * len(self._business))]
                p.paid.add(counterparty)
            if random_() < self._foreign_rate:
                currency = CURRENCIES[int(random_() * len(CURRENCIES))]
        elif ttype == "transfer":
            eur *= TRANSFER_HABIT
            if p.payees and random_() < 0.8:
                counterparty = self._profiles[
                    p.payees[int(random_() * len(p.payees))]
                ].account.account_id
            else:
                cp = int(random_() * self.config.accounts)
                if cp == p.index:
                    cp = (cp + 1) % self.config.accounts
                counterparty = self._profiles[cp].account.account_id
                p.paid.add(counterparty)
        elif ttype == "deposit":
            eur *= 15.0  # salaries and savings: a little more than the account spends
        amount = eur * EUR_RATES[currency]
        if ttype == "withdrawal":
            amount = cash(amount * WITHDRAWAL_HABIT, currency)  # cash comes in notes
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
                "bank_labelled": False,
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
        if stats.first_time is None:
            stats.first_time = t
        stats.last_time = t
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
        if step.counterparty is not None:
            p.paid.add(step.counterparty)
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
                "bank_labelled": known,
            },
        )

    def _start_episode(self, t: float) -> Iterator[AccountEvent]:
        rng = self._rng
        cum = self._scenario_cum
        name = self.config.scenarios[bisect(cum, rng.random() * cum[-1])]
        self.stats.episodes += 1
        opened = len(self._profiles)
        for when, step in fraud.build_episode(
            name, self.bank, rng, t, self.stats.episodes
        ):
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
        # The way it breaks draws from its own RNG: the record shape decides which ways
        # exist, and the rest of the stream must not depend on the shape.
        own = random.Random(rng.getrandbits(64))
        kind = self._bad_kinds[int(own.random() * len(self._bad_kinds))]
        record = record_dict(self.config.message_format, txn, self.bank.parties)
        payload, detail = corrupt(record, kind, own, self._bad_fields)
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
