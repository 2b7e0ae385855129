"""The figures of the Flink benchmark: nearest-rank percentiles and REST metric values."""

from __future__ import annotations

import pytest

from tools.bench_flink import _number, percentile


@pytest.mark.parametrize("q, expected", [(0.5, 50), (0.99, 99), (1.0, 100), (0.0, 1)])
def test_percentile_is_the_nearest_rank(q, expected):
    values = list(range(100, 0, -1))  # order must not matter
    assert percentile(values, q) == expected


def test_rest_metric_values_nan_and_missing_become_none():
    assert _number("154.0") == 154.0
    assert _number(3) == 3.0
    assert _number("NaN") is None
    assert _number(None) is None
    assert _number("n/a") is None
