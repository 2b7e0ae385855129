"""How surprising a count is at a usual rate: the features' measure of a burst."""

from __future__ import annotations

import math

__all__ = ["poisson_surprise"]

MIN_EXPECTED = 0.05  # a rate is never taken as lower: a first event is not infinitely odd


def poisson_surprise(count: int, expected: float) -> float:
    """``-log10 P(N >= count)`` for N Poisson with mean ``expected`` (never taken below
    MIN_EXPECTED): how unlikely so many events are at the usual rate.

    >>> poisson_surprise(0, 1), round(poisson_surprise(3, 0.25), 3), round(poisson_surprise(1, 2), 3)
    (0.0, 2.665, 0.063)
    >>> round(poisson_surprise(40, 0.1), 1)  # the tail itself, not 1 - (a sum close to 1)
    88.0
    """
    if count <= 0:
        return 0.0
    rate = max(expected, MIN_EXPECTED)
    if count <= rate:  # a large tail: 1 - P(N < count) loses nothing
        term = below = math.exp(-rate)
        for i in range(1, count):
            term *= rate / i
            below += term
        return -math.log10(max(1.0 - below, 1e-300))
    # A small tail: P(N = count) * (1 + rate/(count+1) + ...), summed in logs.
    log_first = -rate + count * math.log(rate) - math.lgamma(count + 1)
    tail, term, i = 1.0, 1.0, count
    while term > 1e-12 * tail:
        i += 1
        term *= rate / i
        tail += term
    return -(log_first + math.log(tail)) / math.log(10)
