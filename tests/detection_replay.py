"""What the job with the committed fraud model must write, from the pure per-record code.

The same simulator arguments, run in-process (:func:`tools.replay.simulate`), go through the
job's per-record code in event-time order (:func:`tools.replay.replay`) and the committed
model. The tests that run the job itself (on the FnApiRunner, on Flink) compare its
PostgreSQL rows with this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.domain.model import COMMITTED_MODEL_PATH, FraudModel, load_artifact, risk_score
from simulator.__main__ import build_parser, config_from_args
from tools.replay import Dataset, newest_accounts, replay, simulate


@dataclass
class Expected:
    data: Dataset
    scores: np.ndarray  # the model's probability per transaction, in data.ids order
    alerts: np.ndarray  # scores at or above the model's threshold
    reasons: list[str]  # the model's reason, the first of a row's risk_reasons
    model: FraudModel

    def differences(self, rows: dict) -> list[tuple]:
        """The transactions whose row (``rows[id] = (risk_score, risk_reasons, ...)``) has
        another risk_score or model reason than the replay's: (id, row's, expected)."""
        threshold = self.model.threshold
        return [
            (tid, (rows[tid][0], rows[tid][1][0]), (risk_score(p, threshold), reason))
            for tid, p, reason in zip(self.data.ids, self.scores, self.reasons)
            if (rows[tid][0], rows[tid][1][0]) != (risk_score(p, threshold), reason)
        ]


def expected(simulator_args: list[str], count: int) -> Expected:
    """The replay of ``python -m simulator *simulator_args`` (with ``--ground-truth-all``)."""
    args = build_parser().parse_args([*simulator_args, "--ground-truth-all"])
    sim = simulate(config_from_args(args), count=count)
    data = Dataset.build(replay(sim.events), sim.truth, newest_accounts(sim.events))
    model = FraudModel(load_artifact(COMMITTED_MODEL_PATH))
    scores = model.probabilities(data.X)
    alerts = scores >= model.threshold
    reasons = [model.reason(p) for p in scores]
    for i, shares in zip(np.flatnonzero(alerts), model.contributions(data.X[alerts])):
        reasons[i] = model.reason(scores[i], data.X[i], shares)
    return Expected(data, scores, alerts, reasons, model)
