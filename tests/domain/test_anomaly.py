"""The anomaly reference: a value's surprise is how far into the tails of all traffic it
reaches, in the feature's risky direction."""

from __future__ import annotations

import numpy as np

from pipeline.domain.anomaly import STEPS_PER_DECADE, TAIL_LEVELS, AnomalyReference


def reference() -> AnomalyReference:
    # Two directional features: count_1h (higher is riskier) and account_age_days (lower is).
    # Tail values 1, 2, ... 50 in the risky direction (stored multiplied by the direction).
    levels = np.arange(1.0, TAIL_LEVELS.size + 1)
    return AnomalyReference(
        names=("count_1h", "account_age_days"), columns=[0, 1], directions=[1.0, -1.0],
        tails=[levels, levels],
    )


def test_surprise_counts_the_tail_values_a_value_passes_in_its_risky_direction():
    X = np.array([
        [0.5, -0.5],   # passes no tail value (age -0.5 means +0.5 in the risky direction)
        [3.0, -3.5],   # equal to the 3rd tail value: passes two; -3.5 -> 3.5 passes three
        [999.0, 5.0],  # beyond every tail: the whole range; an old account: none
        [np.nan, np.nan],  # missing: no surprise
    ])
    expected_tails_passed = np.array([[0, 0], [2, 3], [TAIL_LEVELS.size, 0], [0, 0]])
    assert np.array_equal(reference().surprises(X), expected_tails_passed / STEPS_PER_DECADE)


def test_aggregates_are_the_largest_the_top_three_and_the_sum():
    X = np.array([[999.0, -3.5]])  # surprises 5.0 and 0.3
    assert np.allclose(reference().aggregates(X), [[5.0, 5.3, 5.3]])
