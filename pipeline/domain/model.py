"""The fraud model: a LightGBM booster over :data:`~pipeline.domain.features.FEATURES`.

An artifact is a folder (``models/<name>/``) holding ``model.txt`` (LightGBM's own text
format: no pickle, readable across LightGBM 4.x) and ``model.json`` (what it is: name and
version, the features in order, the alert threshold, the anomaly reference, how it was
trained and measured). The booster reads the job's features and three anomaly aggregates
computed from them (:mod:`pipeline.domain.anomaly`).
:func:`load_artifact` checks it against this job and fails with one line when it does not
fit; :class:`FraudModel` scores feature vectors.

Scores and decisions:

- the model gives a probability ``p`` of fraud; ``p >= threshold`` is an *alert* (the
  threshold was chosen on validation data for an alert rate of at most 1 %);
- :func:`risk_score` maps ``p`` onto the job's 0-100 ``risk_score`` so that a score of
  :data:`~pipeline.domain.scoring.THRESHOLD` (50) or more means exactly an alert;
- :meth:`FraudModel.reason` says why, as one ``risk_reasons`` entry: the model's version and
  ``p``, and for alerts the features that pushed ``p`` up most, with their TreeSHAP
  contributions in log-odds (LightGBM's ``pred_contrib``: exact per-feature shares of the
  raw score, relative to the average prediction).

>>> risk_score(0.0, 0.4), risk_score(0.39, 0.4), risk_score(0.4, 0.4), risk_score(1.0, 0.4)
(0, 48, 50, 100)
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.domain.anomaly import ANOMALY_FEATURES, AnomalyBaseline, AnomalyReference
from pipeline.domain.features import FEATURES
from pipeline.errors import ConfigurationError

__all__ = [
    "ARTIFACT_FORMAT",
    "COMMITTED_MODEL_PATH",
    "MODEL_INPUTS",
    "FraudModel",
    "ModelArtifact",
    "load_artifact",
    "risk_score",
    "save_artifact",
]

ARTIFACT_FORMAT = "riskpipe-model/1"
META_FILE, BOOSTER_FILE = "model.json", "model.txt"
# The artifact committed with the code (the job uses a model only when --model_path names one).
COMMITTED_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "fraud-lgbm-v1"
TOP_REASONS = 3  # features named in an alert's reason
# What the booster reads: the job's features, then the anomaly aggregates computed from them.
MODEL_INPUTS = FEATURES + ANOMALY_FEATURES
REASON_PREFIX = "model "


class ModelArtifact(NamedTuple):
    """A model as stored: its metadata and the booster's text."""

    path: str
    meta: dict
    booster: str

    @property
    def label(self) -> str:
        """``<name>@<version>``, as the reasons and the metrics name it."""
        return f"{self.meta['name']}@{self.meta['version']}"


def _fail(path, problem: str) -> ConfigurationError:
    return ConfigurationError(f"model: {path} (--model_path) {problem}")


def load_artifact(path: str | Path) -> ModelArtifact:
    """Reads and checks an artifact folder; raises ConfigurationError (one line) when it is
    missing, damaged, or was trained on other features than this job computes."""
    folder = Path(path)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        booster = (folder / BOOSTER_FILE).read_text()
    except FileNotFoundError as error:
        raise _fail(folder, f"is not a model artifact: no {Path(error.filename).name}") from None
    except (OSError, ValueError) as error:
        raise _fail(folder, f"cannot be read: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise _fail(folder, f"has format {found!r}; this job reads {ARTIFACT_FORMAT!r}")
    if hashlib.sha256(booster.encode()).hexdigest() != meta.get("sha256"):
        raise _fail(folder, f"is damaged: {BOOSTER_FILE} does not match its sha256")
    features = tuple(meta.get("features") or ())
    if features != FEATURES:
        raise _fail(folder, "was trained on other features than this job computes "
                    f"({_first_difference(features, FEATURES)}); retrain it (make train) or "
                    "pass --model_path='' to score with the rules alone")
    threshold = meta.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise _fail(folder, f"has no usable threshold ({threshold!r})")
    try:
        AnomalyReference.from_json(meta["anomaly_reference"], FEATURES)
        AnomalyBaseline.from_json(meta["anomaly_baseline"])
    except (KeyError, TypeError, ValueError) as error:
        raise _fail(folder, f"has no usable anomaly reference or baseline ({error!r})") from None
    return ModelArtifact(str(folder), meta, booster)


def _first_difference(found: tuple, expected: tuple) -> str:
    for i, (a, b) in enumerate(zip(found, expected)):
        if a != b:
            return f"feature {i} is {a!r}, expected {b!r}"
    return f"{len(found)} features, expected {len(expected)}"


def save_artifact(folder: Path, booster: str, reference: AnomalyReference,
                  baseline: AnomalyBaseline, meta: dict) -> ModelArtifact:
    """Writes ``model.txt`` and ``model.json`` (adding format, features, the anomaly
    reference and baseline, and sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": ARTIFACT_FORMAT,
        **meta,
        "features": list(FEATURES),
        "anomaly_features": list(ANOMALY_FEATURES),
        "sha256": hashlib.sha256(booster.encode()).hexdigest(),
        "anomaly_baseline": baseline.to_json(),
        "anomaly_reference": reference.to_json(),
    }
    (folder / BOOSTER_FILE).write_text(booster)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return load_artifact(folder)


def risk_score(probability: float, threshold: float) -> int:
    """The 0-100 risk score of a model probability: linear from 0 to 50 below the threshold,
    from 50 to 100 above it, so ``risk_score >= 50`` exactly when ``p >= threshold``."""
    if probability < threshold:
        return min(49, math.floor(50 * probability / threshold))
    return min(100, 50 + math.floor(50 * (probability - threshold) / (1 - threshold)))


class FraudModel:
    """A loaded :class:`ModelArtifact`: scores, alerts and explains feature vectors."""

    def __init__(self, artifact: ModelArtifact):
        import lightgbm  # the job imports it only where a model is used

        self.artifact = artifact
        self.threshold = float(artifact.meta["threshold"])
        self.label = artifact.label
        try:
            self._booster = lightgbm.Booster(model_str=artifact.booster)
        except lightgbm.basic.LightGBMError as error:
            raise _fail(artifact.path, f"cannot be loaded by LightGBM: {error}") from None
        if self._booster.num_feature() != len(MODEL_INPUTS):
            raise _fail(artifact.path, f"has {self._booster.num_feature()} inputs, "
                        f"expected {len(MODEL_INPUTS)}")
        self.reference = AnomalyReference.from_json(artifact.meta["anomaly_reference"], FEATURES)
        self.baseline = AnomalyBaseline.from_json(artifact.meta["anomaly_baseline"])

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Probability of fraud per row of ``X`` (``len(FEATURES)`` columns; nan: missing):
        the anomaly baseline's log-odds plus the booster's, through the logistic function."""
        aggregates = self.reference.aggregates(X)
        raw = self._booster.predict(np.hstack([X, aggregates]), num_threads=1, raw_score=True)
        return 1.0 / (1.0 + np.exp(-(raw + self.baseline.margin(aggregates))))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Log-odds contributions per row and model input (MODEL_INPUTS), the last column the
        bias: the booster's TreeSHAP values, plus each anomaly aggregate's share of the
        baseline."""
        aggregates = self.reference.aggregates(X)
        shares = self._booster.predict(np.hstack([X, aggregates]), num_threads=1,
                                       pred_contrib=True)
        shares[:, len(FEATURES):-1] += self.baseline.shares(aggregates)
        shares[:, -1] += self.baseline.bias
        return shares

    def reason(self, probability: float, row: np.ndarray | None = None,
               contributions: np.ndarray | None = None) -> str:
        """The ``risk_reasons`` entry of one row: ``"model <name>@<version>: p=0.93 >= 0.41
        (alert): pair_count=0 (+1.20), …"``; the features only when contributions are given.
        """
        head = f"{REASON_PREFIX}{self.label}: p={probability:.3f}"
        if contributions is None:
            return f"{head} < {self.threshold:.3f}"
        shares = contributions[:-1]
        top = [i for i in np.argsort(-shares, kind="stable")[:TOP_REASONS] if shares[i] > 0]
        named = ", ".join(f"{self._name(i, row)} (+{shares[i]:.2f})" for i in top)
        return f"{head} >= {self.threshold:.3f} (alert): {named}"

    def _name(self, i: int, row: np.ndarray) -> str:
        if i < len(FEATURES):
            return f"{FEATURES[i]}={_value(row[i])}"
        value = self.reference.aggregates(row.reshape(1, -1))[0, i - len(FEATURES)]
        extreme = "+".join(self.reference.most_surprising(row))
        return f"{MODEL_INPUTS[i]}={value:.1f} [{extreme}]"


def _value(value: float) -> str:
    if math.isnan(value):
        return "none"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"
