"""A tiny fraud model for the tests: a booster that learned "large amounts are fraud"."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np

from pipeline.domain.anomaly import AnomalyBaseline, AnomalyReference
from pipeline.domain.features import FEATURES
from pipeline.domain.model import MODEL_INPUTS, ModelArtifact, save_artifact

AMOUNT = FEATURES.index("amount_eur_log")
LARGE = 3.0  # amount_eur_log of a row the tiny model alerts on; 0.0 it does not


def tiny_artifact(folder: Path, threshold: float = 0.5) -> ModelArtifact:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, len(FEATURES)))
    reference = AnomalyReference.fit(X, FEATURES)
    inputs = np.hstack([X, reference.aggregates(X)])
    data = lightgbm.Dataset(inputs, label=X[:, AMOUNT] > 1.5, feature_name=list(MODEL_INPUTS))
    params = {"objective": "binary", "num_leaves": 4, "verbosity": -1, "seed": 1,
              "deterministic": True, "num_threads": 1}
    booster = lightgbm.train(params, data, num_boost_round=20).model_to_string()
    baseline = AnomalyBaseline([0.0, 0.0, 0.0], 0.0, [0.0, 0.0, 0.0])  # the booster alone
    return save_artifact(folder, booster, reference, baseline,
                         {"name": "tiny", "version": "1", "threshold": threshold})
