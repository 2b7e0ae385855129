"""Tests of ScoreWithModel (RunInference with the fraud model's handler) on the FnApiRunner."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from factories import transaction
from pipeline.domain.features import FEATURES
from pipeline.records import AttributedTransaction
from pipeline.transforms.model import ScoreWithModel
from tiny_model import AMOUNT, LARGE, tiny_artifact

from .pipelines import batch_pipeline, run_and_count

RULES_REASON = "withdrawal: cash leaves the bank (+10)"


def row(txn_id: str, amount_log: float) -> AttributedTransaction:
    features = [0.0] * len(FEATURES)
    features[AMOUNT] = amount_log
    return AttributedTransaction(transaction(transaction_id=txn_id), "Ada", 10, (RULES_REASON,),
                                 features=tuple(features))


def scored(out: AttributedTransaction):
    model, *rules = out.risk_reasons
    return (out.transaction_id, out.risk_score >= 50, out.is_fraudulent, out.features,
            model.split(": p=")[0], "(alert): amount_eur_log=3 (+" in model, tuple(rules))


def test_alerts_are_fraudulent_scored_50_or_more_and_explained(tmp_path):
    artifact = tiny_artifact(tmp_path / "m")
    with batch_pipeline() as pipeline:
        rows = pipeline | beam.Create([row("big", LARGE), row("small", 0.0)])
        out = rows | ScoreWithModel(artifact)
        assert_that(out | beam.Map(scored), equal_to([
            ("big", True, True, (), "model tiny@1", True, (RULES_REASON,)),
            ("small", False, False, (), "model tiny@1", False, (RULES_REASON,)),
        ]))


def test_counters(tmp_path):
    pipeline = batch_pipeline()
    rows = pipeline | beam.Create([row(f"t{i}", LARGE if i < 3 else 0.0) for i in range(60)])
    _ = rows | ScoreWithModel(tiny_artifact(tmp_path / "m"))
    counts = run_and_count(pipeline)
    assert counts["model_scored"] == 60 and counts["model_alerts"] == 3


def test_rows_keep_their_own_timestamps(tmp_path):
    """RunInference emits its batches at the end of the global window; the rows leave at the
    timestamps they came with."""
    stamped = [TimestampedValue(row(f"t{i}", LARGE if i % 2 else 0.0), 1_000 + i)
               for i in range(70)]
    with batch_pipeline() as pipeline:
        rows = pipeline | beam.Create(stamped)
        out = rows | ScoreWithModel(tiny_artifact(tmp_path / "m"))
        assert_that(
            out | beam.Map(lambda r, ts=beam.DoFn.TimestampParam: (r.transaction_id, float(ts))),
            equal_to([(f"t{i}", 1_000.0 + i) for i in range(70)]),
        )


def test_a_bad_artifact_fails_at_construction():
    with pytest.raises(ValueError):
        ScoreWithModel("models/fraud-lgbm-v1")
