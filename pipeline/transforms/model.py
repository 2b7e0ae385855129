"""The model step: the fraud model scores each row's features, with Beam's RunInference.

Usage::

    artifact = load_artifact("models/fraud-lgbm-v1")   # checked: one clear line if unfit
    scored = (
        profiled  # AttributedTransactions carrying FEATURES (after ProfileCounterparties)
        | "ScoreWithModel" >> ScoreWithModel(artifact)
    )

``RunInference`` batches the rows within a bundle (:class:`FraudModelHandler`: 50 to 500
a call) and the booster scores a batch in one native call, on one thread. Each row then gets:

- ``risk_score``: the model's probability mapped to 0-100
  (:func:`~pipeline.domain.model.risk_score`: 50 or more exactly when the model alerts);
- ``risk_reasons``: first the model's entry (its name and version, the probability, and for
  alerts the three features that pushed it up most, by their TreeSHAP contributions, computed
  only for the alerted rows of the batch), then the rules' signals, kept as explanations;
- ``is_fraudulent``: the alert (routing keeps the bank's verdict where it gave one, and the
  validation step adds the validator's verdict for ``unidentified`` rows);
- ``features`` emptied: they have been used, and later steps keep rows in state.

Each row keeps its own timestamp: ``RunInference``'s batching emits a batch at the end of
the global window, so the step carries the timestamp through the batch and restores it. (A
row stamped at the end of time would hold the processing-time timers it sets later, in the
validation and S3 steps, until then: the FnApiRunner ends a bounded run with them pending.)

The model travels inside the pipeline (the artifact's text is part of the handler), so
workers need no access to the artifact's folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.utils import windowed_value

from pipeline import metrics
from pipeline.domain.features import FEATURES
from pipeline.domain.model import FraudModel, ModelArtifact, risk_score
from pipeline.metrics import Counters
from pipeline.records import AttributedTransaction

__all__ = ["FraudModelHandler", "ScoreWithModel"]

MIN_BATCH, MAX_BATCH = 50, 500


# An example: a row and its timestamp in microseconds.
Stamped = tuple[int, AttributedTransaction]


class FraudModelHandler(ModelHandler[Stamped, PredictionResult, FraudModel]):
    """Loads the artifact's booster; scores a batch of ``(timestamp_micros, row)`` in one call.

    Each :class:`PredictionResult` holds the example and ``(probability, reason)``.
    """

    def __init__(self, artifact: ModelArtifact):
        super().__init__(min_batch_size=MIN_BATCH, max_batch_size=MAX_BATCH)
        self._artifact = artifact

    def load_model(self) -> FraudModel:
        return FraudModel(self._artifact)

    def run_inference(
        self, batch: Sequence[Stamped], model: FraudModel, inference_args=None
    ) -> Iterable[PredictionResult]:
        X = np.array([row.features for _, row in batch], dtype=np.float64)
        probabilities = model.probabilities(X)
        alerts = np.flatnonzero(probabilities >= model.threshold)
        reasons = [model.reason(p) for p in probabilities]
        if alerts.size:
            for i, shares in zip(alerts, model.contributions(X[alerts])):
                reasons[i] = model.reason(probabilities[i], X[i], shares)
        return [
            PredictionResult(example, (float(p), reason), model.label)
            for example, p, reason in zip(batch, probabilities, reasons)
        ]

    def get_num_bytes(self, batch: Sequence[Stamped]) -> int:
        return 8 * len(FEATURES) * len(batch)  # the feature matrix (the default pickles it)

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE


def _stamp(row: AttributedTransaction, windowed=beam.DoFn.WindowedValueParam) -> Stamped:
    return windowed.timestamp_micros, row


class _ApplyScoreFn(beam.DoFn):
    """Writes a prediction into its row, at the row's own timestamp (module docstring)."""

    def __init__(self, threshold: float):
        self._threshold = threshold
        self._counters = Counters("model_scored", "model_alerts")

    def start_bundle(self):
        self._counters.report_zero()

    def finish_bundle(self):
        self._counters.flush()

    def process(self, result: PredictionResult, windowed=beam.DoFn.WindowedValueParam):
        micros, row = result.example
        probability, reason = result.inference
        score = risk_score(probability, self._threshold)
        alert = probability >= self._threshold
        self._counters.inc("model_scored")
        if alert:
            self._counters.inc("model_alerts")
        # In the element's windows, not a TimestampedValue that Beam would assign afresh.
        yield windowed_value.create(dataclasses.replace(
            row, risk_score=score, risk_reasons=(reason, *row.risk_reasons),
            is_fraudulent=alert, features=(),
        ), micros, windowed.windows)


class ScoreWithModel(beam.PTransform):
    """Rows carrying :data:`~pipeline.domain.features.FEATURES` → rows scored by the model.

    Args:
      artifact: a model artifact from :func:`~pipeline.domain.model.load_artifact`; it is
        loaded once here, so an artifact LightGBM cannot read fails before the job starts.
    """

    def __init__(self, artifact: ModelArtifact):
        super().__init__()
        if not isinstance(artifact, ModelArtifact):
            raise ValueError(f"ScoreWithModel: artifact must be a ModelArtifact, got {artifact!r}")
        FraudModel(artifact)
        self._artifact = artifact

    def expand(self, rows):
        return (
            rows
            | "Stamp" >> beam.Map(_stamp)
            | "RunInference" >> RunInference(FraudModelHandler(self._artifact))
            | "ApplyScores" >> beam.ParDo(_ApplyScoreFn(float(self._artifact.meta["threshold"])))
            .with_output_types(AttributedTransaction)
        )
