"""Rolling features of one account's transactions: an exact, order-free fold.

:class:`AccountFeatures` folds in what :func:`facts` keeps of each transaction. Every
aggregate is a function of the *set* of transactions folded in, never of the order they
came in: integer counts and sums, min/max, the newest :data:`MAX_RECENT` transactions
(the top of a set by time), and an hour-of-day histogram. Amounts are kept in EUR cents and
as integer *levels* (``round(1000 * ln(cents))``), so their sums are exact.

One aggregate is bounded by recency instead: the table of counterparties (the
:data:`MAX_PAIRS` most recently paid, by event time, ties by id; the least recent one leaves
first). Folded in event-time order — which is how the history folds them
(:mod:`pipeline.domain.attribution`) — it too is a function of the set.

>>> from datetime import UTC, datetime
>>> from pipeline.records import Transaction
>>> f = AccountFeatures()
>>> f.add(Transaction("t1", "a1", "a2", "transfer", 10.0, "EUR", "completed",
...                   datetime(2026, 1, 1, tzinfo=UTC), None, "cleared"))
>>> (f.count, f.mean_eur, len(f.latest), f.hours[0], f.pair(counterparty_key("a2"))[2])
(1, 10.0, 1, 1, 1)
"""

from __future__ import annotations

import bisect
import math
import operator
import zlib
from typing import NamedTuple

from pipeline.domain.currency import to_eur
from pipeline.records import TRANSACTION_TYPES, Transaction

__all__ = [
    "KINDS",
    "MAX_PAIRS",
    "MAX_RECENT",
    "NO_COUNTERPARTY",
    "AccountFeatures",
    "Facts",
    "amount_cents",
    "amount_level",
    "counterparty_key",
    "facts",
    "least_recent",
]

MAX_RECENT = 32  # newest transactions kept (their facts): velocity and the recent windows
MAX_PAIRS = 32  # counterparties kept, the most recently paid ones
RATE_MIN_SPAN_S = 3600.0  # a rate is never estimated over less history
KINDS = {kind: i for i, kind in enumerate(TRANSACTION_TYPES)}
NO_COUNTERPARTY = 0  # the counterparty key of a transaction without one
# What a level is a logarithm of: 1000 * ln(cents); ln(3) ~ 1099 levels.
LEVELS_PER_NEPER = 1000


class Facts(NamedTuple):
    """What the features keep of a transaction: all integers but the time, so that tuples of
    facts sort without ties on None.

    Attributes:
      seen: epoch seconds of ``datetime_occurred``.
      hour: its UTC hour.
      cents: the amount in EUR cents; -1 for a failed transaction (no money moved).
      kind: index of the transaction type in TRANSACTION_TYPES.
      counterparty: :func:`counterparty_key` of the counterparty (NO_COUNTERPARTY: none).
      level: :func:`amount_level` of the cents; -1 when failed or below one cent.
    """

    seen: float
    hour: int
    cents: int
    kind: int
    counterparty: int
    level: int


def amount_cents(txn: Transaction) -> int:
    """The transaction's amount in EUR cents, rounded: the unit of the amount history.

    >>> from datetime import UTC, datetime
    >>> amount_cents(Transaction("t", "a", None, "payment", 12.345, "EUR", "completed",
    ...              datetime(2026, 1, 1, tzinfo=UTC), None, "cleared"))
    1234
    """
    return round(to_eur(txn.amount, txn.currency) * 100)


def amount_level(cents: int) -> int:
    """``round(1000 * ln(cents))``: amounts on a log scale, as integers (sums stay exact).

    >>> amount_level(100), amount_level(300) - amount_level(100), amount_level(0)
    (4605, 1099, -1)
    """
    return round(LEVELS_PER_NEPER * math.log(cents)) if cents >= 1 else -1


def counterparty_key(counterparty: str | None) -> int:
    """A stable 32-bit key of a counterparty id (crc32; not ``hash()``, salted per process).

    >>> counterparty_key(None), counterparty_key("a2") == counterparty_key("a2")
    (0, True)
    """
    return zlib.crc32(counterparty.encode()) or 1 if counterparty else NO_COUNTERPARTY


def facts(txn: Transaction) -> Facts:
    """The :class:`Facts` of a transaction.

    >>> from datetime import UTC, datetime
    >>> facts(Transaction("t", "a", None, "payment", 12.5, "EUR", "failed",
    ...                   datetime(2026, 1, 1, 7, 30, tzinfo=UTC), None, "cleared"))
    Facts(seen=1767252600.0, hour=7, cents=-1, kind=1, counterparty=0, level=-1)
    """
    seen = txn.datetime_occurred.timestamp()
    cents = -1 if txn.transaction_status == "failed" else amount_cents(txn)
    return Facts(
        seen, int(seen // 3600 % 24), cents, KINDS.get(txn.transaction_type, 1),
        counterparty_key(txn.counterparty_account_id), amount_level(cents),
    )


def least_recent(table: dict[int, tuple]) -> int:
    """The key of ``table`` (key -> ``(first_seen, last_seen, ...)``) seen least recently:
    the smallest ``last_seen``, ties by the smaller key."""
    return min(zip(map(_LAST_SEEN, table.values()), table))[1]


_LAST_SEEN = operator.itemgetter(1)


class AccountFeatures:
    """Rolling features of one account's transaction history, folded in place by :meth:`add`.

    Attributes:
      recent: epoch seconds of the newest MAX_RECENT transactions, ascending.
      latest: the :class:`Facts` of the same transactions, ascending.
      count, sum_cents, sumsq_cents: how many non-failed transactions, and the sum and sum of
        squares of their amounts in EUR cents.
      seen, first_seen, last_seen: how many transactions (failed ones included) over which
        span, in epoch seconds; together they give the account's usual rate.
      hours: how many of those transactions happened in each UTC hour of the day.
      kind_count, kind_cents, kind_levels, kind_levels_sq: per transaction type (index of
        TRANSACTION_TYPES), the count of amounts with a level, their sum in cents, and the sum
        and sum of squares of their levels: the habit of each type.
      pairs: counterparty key -> ``(first_seen, last_seen, count, sum of levels)`` of the
        transactions to it (failed ones count, with no level), the MAX_PAIRS most recent.
    """

    __slots__ = ("count", "first_seen", "hours", "kind_cents", "kind_count", "kind_levels",
                 "kind_levels_sq", "last_seen", "latest", "pairs", "recent", "seen", "sum_cents",
                 "sumsq_cents")

    def __init__(self) -> None:
        self.recent: list[float] = []
        self.latest: list[Facts] = []
        self.count = 0
        self.sum_cents = 0
        self.sumsq_cents = 0
        self.seen = 0
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.hours = [0] * 24
        self.kind_count = [0] * len(KINDS)
        self.kind_cents = [0] * len(KINDS)
        self.kind_levels = [0] * len(KINDS)
        self.kind_levels_sq = [0] * len(KINDS)
        self.pairs: dict[int, tuple[float, float, int, int]] = {}

    def add(self, txn: Transaction) -> None:
        """Folds one transaction in (in place)."""
        self.add_facts(facts(txn))

    def add_facts(self, fact: Facts) -> None:
        """Folds in one transaction given as its :func:`facts`."""
        seen, hour, cents, kind, counterparty, level = fact
        recent = self.recent
        if not recent or seen >= recent[-1]:
            recent.append(seen)
        else:
            bisect.insort(recent, seen)
        if len(recent) > MAX_RECENT:
            del recent[0]
        latest = self.latest
        if not latest or fact >= latest[-1]:
            latest.append(fact)
        else:
            bisect.insort(latest, fact)
        if len(latest) > MAX_RECENT:
            del latest[0]
        self.seen += 1
        if self.first_seen is None or seen < self.first_seen:
            self.first_seen = seen
        if self.last_seen is None or seen > self.last_seen:
            self.last_seen = seen
        self.hours[hour] += 1
        if cents >= 0:
            self.count += 1
            self.sum_cents += cents
            self.sumsq_cents += cents * cents
        if level >= 0:
            self.kind_count[kind] += 1
            self.kind_cents[kind] += cents
            self.kind_levels[kind] += level
            self.kind_levels_sq[kind] += level * level
        if counterparty != NO_COUNTERPARTY:
            self._add_pair(counterparty, seen, max(level, 0), level >= 0)

    def _add_pair(self, key: int, seen: float, level: int, counted: bool) -> None:
        pairs = self.pairs
        known = pairs.get(key)
        if known is None:
            pairs[key] = (seen, seen, 1, level if counted else 0)
            if len(pairs) > MAX_PAIRS:
                del pairs[least_recent(pairs)]
            return
        first, last, n, levels = known
        pairs[key] = (min(first, seen), max(last, seen), n + 1, levels + (level if counted else 0))

    def pair(self, key: int) -> tuple[float, float, int, int] | None:
        """``(first_seen, last_seen, count, sum of levels)`` of the transactions to a
        counterparty, or None if none is known."""
        return self.pairs.get(key)

    def copy(self) -> "AccountFeatures":
        """An independent copy."""
        other = AccountFeatures.__new__(AccountFeatures)
        other.recent = list(self.recent)
        other.latest = list(self.latest)
        other.count, other.sum_cents = self.count, self.sum_cents
        other.sumsq_cents = self.sumsq_cents
        other.seen, other.first_seen, other.last_seen = self.seen, self.first_seen, self.last_seen
        other.hours = list(self.hours)
        other.kind_count, other.kind_cents = list(self.kind_count), list(self.kind_cents)
        other.kind_levels, other.kind_levels_sq = list(self.kind_levels), list(self.kind_levels_sq)
        other.pairs = dict(self.pairs)
        return other

    def to_tuple(self) -> tuple:
        """The features as a tuple of primitives (for a state coder); see :meth:`from_tuple`."""
        return (tuple(self.recent), tuple(tuple(f) for f in self.latest), self.count,
                self.sum_cents, self.sumsq_cents, self.seen, self.first_seen, self.last_seen, tuple(self.hours),
                tuple(self.kind_count), tuple(self.kind_cents), tuple(self.kind_levels),
                tuple(self.kind_levels_sq),
                tuple((key, *value) for key, value in sorted(self.pairs.items())))

    @classmethod
    def from_tuple(cls, values: tuple) -> "AccountFeatures":
        """Inverse of :meth:`to_tuple`."""
        features = cls.__new__(cls)
        (recent, latest, features.count, features.sum_cents, features.sumsq_cents, features.seen,
         features.first_seen, features.last_seen, hours, kind_count, kind_cents, kind_levels,
         kind_levels_sq, pairs) = values
        features.recent = list(recent)
        features.latest = [Facts(*f) for f in latest]
        features.hours = list(hours)
        features.kind_count, features.kind_cents = list(kind_count), list(kind_cents)
        features.kind_levels, features.kind_levels_sq = list(kind_levels), list(kind_levels_sq)
        features.pairs = {key: tuple(value) for key, *value in pairs}
        return features

    def __eq__(self, other) -> bool:
        return isinstance(other, AccountFeatures) and self.to_tuple() == other.to_tuple()

    def __repr__(self) -> str:
        return (f"AccountFeatures(seen={self.seen}, count={self.count}, "
                f"mean_eur={self.mean_eur:.2f})")

    @property
    def mean_eur(self) -> float:
        """Mean EUR amount of the non-failed transactions (0 without any)."""
        return self.sum_cents / self.count / 100 if self.count else 0.0

    @property
    def std_eur(self) -> float:
        """Sample standard deviation of the EUR amounts (0 below two transactions)."""
        if self.count < 2:
            return 0.0
        # Exact in integers, then one rounding: the same history gives the same float.
        variance_cents = (self.count * self.sumsq_cents - self.sum_cents**2) / (
            self.count * (self.count - 1)
        )
        return math.sqrt(max(variance_cents, 0.0)) / 100

    def count_between(self, start: float, end: float) -> int:
        """How many recent transactions happened in ``(start, end]`` (epoch seconds)."""
        return bisect.bisect_right(self.recent, end) - bisect.bisect_right(self.recent, start)

    def since(self, start: float) -> list[Facts]:
        """The facts of the recent transactions after ``start`` (epoch seconds), oldest first."""
        latest = self.latest
        # (t, 99) sorts after every fact of time t: hours are below 24.
        return latest[bisect.bisect_right(latest, (start, 99)):]

    def usual_per_second(self) -> float:
        """The account's own rate: transactions per second over its known span, never
        estimated over less than RATE_MIN_SPAN_S."""
        if not self.seen:
            return 0.0
        return self.seen / max(self.last_seen - self.first_seen, RATE_MIN_SPAN_S)
