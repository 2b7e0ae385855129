"""How extreme a transaction is, in the directions that point to fraud, against all traffic.

For every feature with a :data:`~pipeline.domain.features.RISK_DIRECTION`, an
:class:`AnomalyReference` keeps the values that only a share ``10**-k`` of transactions
exceed (in the risky direction), for ``k`` = 0.1, 0.2, … 5 (:data:`TAIL_LEVELS`), fitted on
traffic *without looking at labels*. A value's *surprise* is the largest ``k`` whose value
it passes: 2.0 means "fewer than 1 % of transactions go this far". The model gets three
aggregates of the surprises (:data:`ANOMALY_FEATURES`): the largest, the sum of the three
largest, and the sum. They do not depend on which fraud pattern made a transaction extreme,
so a pattern the model never saw in training still reaches it through them.

>>> import numpy as np
>>> ref = AnomalyReference.fit(np.arange(1000.0).reshape(-1, 1), ("count_1h",))
>>> ref.surprises(np.array([[500.0], [995.0], [np.nan]])).round(1).tolist()
[[0.3], [2.3], [0.0]]
"""

from __future__ import annotations

import numpy as np

from pipeline.domain.features import RISK_DIRECTION

__all__ = ["ANOMALY_FEATURES", "TAIL_LEVELS", "AnomalyBaseline", "AnomalyReference"]

STEPS_PER_DECADE = 10
TAIL_LEVELS = 10.0 ** (-np.arange(1, 5 * STEPS_PER_DECADE + 1) / STEPS_PER_DECADE)
ANOMALY_FEATURES = ("anomaly_max", "anomaly_top3", "anomaly_sum")


class AnomalyReference:
    """The tail values of the directional features among ``names`` (see the module doc).

    Attributes:
      columns: indexes (in ``names``) of the features with a risk direction.
      directions: +1 or -1 per column.
      tails: one row per column: the values at TAIL_LEVELS, multiplied by the direction
        (so that larger is always riskier, and each row ascends).
    """

    def __init__(self, names, columns, directions, tails):
        self.names = tuple(names)
        self.columns = np.asarray(columns, dtype=np.int64)
        self.directions = np.asarray(directions, dtype=np.float64)
        self.tails = np.asarray(tails, dtype=np.float64)

    @classmethod
    def fit(cls, X: np.ndarray, names) -> "AnomalyReference":
        """Tail values of each directional column of ``X`` (nan: not counted)."""
        columns = [i for i, name in enumerate(names) if name in RISK_DIRECTION]
        directions = [RISK_DIRECTION[names[i]] for i in columns]
        tails = []
        for i, direction in zip(columns, directions):
            values = direction * X[:, i]
            values = values[~np.isnan(values)]
            if values.size == 0:
                tails.append(np.full(TAIL_LEVELS.size, np.inf))
            else:
                tails.append(np.quantile(values, 1.0 - TAIL_LEVELS, method="higher"))
        return cls(names, columns, directions, np.array(tails).reshape(len(columns), -1))

    def surprises(self, X: np.ndarray) -> np.ndarray:
        """Per row and directional column: -log10 of the share of traffic it passes (0-5)."""
        values = X[:, self.columns] * self.directions
        # Per column, how many of its tail values lie below the value (one call per column:
        # the job scores batches of tens of rows, where per-call overheads dominate).
        passed = np.empty(values.shape, dtype=np.int64)
        for j, tails in enumerate(self.tails):
            passed[:, j] = np.searchsorted(tails, values[:, j], side="left")
        passed[np.isnan(values)] = 0
        return passed / STEPS_PER_DECADE

    def aggregates(self, X: np.ndarray) -> np.ndarray:
        """The :data:`ANOMALY_FEATURES` per row of ``X``."""
        surprises = self.surprises(X)
        top = np.sort(surprises, axis=1)[:, -3:]
        return np.column_stack([top[:, -1], top.sum(axis=1), surprises.sum(axis=1)])

    def most_surprising(self, row: np.ndarray, count: int = 3) -> list[str]:
        """The names of the ``count`` most surprising features of one row (surprise > 0)."""
        surprises = self.surprises(row.reshape(1, -1))[0]
        order = np.argsort(-surprises, kind="stable")[:count]
        return [self.names[self.columns[j]] for j in order if surprises[j] > 0]

    def to_json(self) -> dict:
        return {
            "tail_levels_per_decade": STEPS_PER_DECADE,
            "features": {
                self.names[c]: [float(v) for v in tail] for c, tail in zip(self.columns, self.tails)
            },
        }

    @classmethod
    def from_json(cls, data: dict, names) -> "AnomalyReference":
        if data.get("tail_levels_per_decade") != STEPS_PER_DECADE:
            raise ValueError("anomaly reference: another tail resolution")
        index = {name: i for i, name in enumerate(names)}
        features = data["features"]
        columns = [index[name] for name in features]
        directions = [RISK_DIRECTION[name] for name in features]
        return cls(names, columns, directions, [features[name] for name in features])


class AnomalyBaseline:
    """A logistic model on the :data:`ANOMALY_FEATURES`: the log-odds of fraud that being
    extreme carries, whatever the pattern. The booster learns on top of it (LightGBM's
    ``init_score``), so a pattern without training examples keeps this prior.

    ``margin(a) = bias + sum(weights * (a - means))``; the weights are kept non-negative
    (more extreme is never less risky).

    >>> baseline = AnomalyBaseline([1.0, 0.0, 0.0], -5.0, [2.0, 5.0, 20.0])
    >>> baseline.margin(np.array([[2.0, 5.0, 20.0], [4.0, 9.0, 30.0]])).tolist()
    [-5.0, -3.0]
    """

    def __init__(self, weights, bias: float, means):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self.means = np.asarray(means, dtype=np.float64)

    @classmethod
    def fit(cls, aggregates: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray,
            iterations: int = 25, ridge: float = 1e-3) -> "AnomalyBaseline":
        """Weighted logistic regression (Newton steps); a negative weight is dropped and the
        rest refitted."""
        means = np.average(aggregates, axis=0, weights=sample_weight)
        centred = aggregates - means
        active = np.ones(centred.shape[1], dtype=bool)
        while True:
            beta = _newton(centred[:, active], labels, sample_weight, iterations, ridge)
            if (beta[1:] >= 0).all():
                break
            active[np.flatnonzero(active)[np.argmin(beta[1:])]] = False
        weights = np.zeros(centred.shape[1])
        weights[active] = beta[1:]
        return cls(weights, beta[0], means)

    def margin(self, aggregates: np.ndarray) -> np.ndarray:
        """The prior log-odds per row of aggregates."""
        return self.bias + (aggregates - self.means) @ self.weights

    def shares(self, aggregates: np.ndarray) -> np.ndarray:
        """Each aggregate's part of the margin (the bias excluded), per row."""
        return (aggregates - self.means) * self.weights

    def to_json(self) -> dict:
        return {"weights": self.weights.tolist(), "bias": self.bias, "means": self.means.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "AnomalyBaseline":
        return cls(data["weights"], data["bias"], data["means"])


def _newton(X: np.ndarray, y: np.ndarray, w: np.ndarray, iterations: int, ridge: float):
    X = np.column_stack([np.ones(len(X)), X])
    beta = np.zeros(X.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        gradient = X.T @ (w * (y - p)) - ridge * beta
        hessian = (X * (w * p * (1 - p))[:, None]).T @ X + ridge * np.eye(X.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta
