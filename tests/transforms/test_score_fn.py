"""Tests of the scoring DoFn and of parse → join → score as one small pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.domain.scoring import THRESHOLD, WEIGHTS
from pipeline.records import AttributedTransaction, KafkaRecord
from pipeline.transforms.join import JoinedTransaction, JoinWithAccounts
from pipeline.transforms.parse import ParseAccounts, ParseTransactions
from pipeline.transforms.score import ScoreRisk

from factories import T0, account, transaction
from .pipelines import batch_pipeline, run_and_count, stream_pipeline

PROCESSED_AT = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    return PROCESSED_AT


def joined_at(minutes: float, txn_id: str, amount: float = 40.0) -> TimestampedValue:
    when = T0 + timedelta(minutes=minutes)
    txn = transaction(transaction_id=txn_id, amount=amount, datetime_occurred=when)
    return TimestampedValue(JoinedTransaction(txn, account()), when.timestamp())


def score_stream(events) -> BeamTestStream:
    """A TestStream of TimestampedValues (one bundle each, in order) and watermarks."""
    test_stream = BeamTestStream()
    for event in events:
        if isinstance(event, TimestampedValue):
            test_stream.add_elements([event])
        else:
            test_stream.advance_watermark_to(event.timestamp())
    return test_stream.advance_watermark_to_infinity()


def summary(scored: AttributedTransaction) -> tuple:
    return scored.transaction_id, scored.risk_score, scored.risk_reasons


def test_scores_with_the_features_of_earlier_transactions():
    events = [joined_at(i, f"t{i}") for i in range(6)]
    with stream_pipeline() as pipeline:
        scored = pipeline | score_stream(events) | ScoreRisk(clock=fixed_clock)
        weight = WEIGHTS["velocity"]
        assert_that(
            scored | beam.Map(summary),
            equal_to(
                [
                    ("t0", 0, ()),
                    ("t1", 0, ()),
                    ("t2", 0, ()),
                    ("t3", 0, ()),
                    ("t4", weight, (f"velocity: 5 transactions in 10 min (+{weight})",)),
                    ("t5", weight, (f"velocity: 6 transactions in 10 min (+{weight})",)),
                ]
            ),
        )


def test_emits_attributed_transactions_not_yet_validated():
    event = joined_at(0, "t0")
    with stream_pipeline() as pipeline:
        scored = pipeline | score_stream([event]) | ScoreRisk(clock=fixed_clock)
        expected = AttributedTransaction(
            transaction=event.value.transaction,
            account_name="Ada Lovelace",
            risk_score=0,
            risk_reasons=(),
            is_fraudulent=False,
            validated_by="none",
            processed_at=PROCESSED_AT,
        )
        assert_that(scored, equal_to([expected]))


@pytest.mark.parametrize(
    "idle_gap, outlier", [(timedelta(days=1), True), (timedelta(days=8), False)]
)
def test_idle_features_are_dropped(idle_gap, outlier):
    history = [joined_at(i * 60, f"h{i}") for i in range(5)]
    gap_minutes = idle_gap.total_seconds() / 60
    watermark = T0 + timedelta(minutes=4 * 60 + gap_minutes - 1)
    events = [*history, watermark, joined_at(4 * 60 + gap_minutes, "big", amount=900.0)]
    with stream_pipeline() as pipeline:
        scored = pipeline | score_stream(events) | ScoreRisk(features_idle=timedelta(days=7))
        flagged = (
            scored
            | beam.Filter(lambda s: s.transaction_id == "big")
            | beam.Map(
                lambda s: any(
                    r.startswith(("amount_outlier", "amount_extreme")) for r in s.risk_reasons
                )
            )
        )
        assert_that(flagged, equal_to([outlier]))


def test_counts_scored_and_high_risk_transactions():
    night_drain = transaction(
        transaction_id="bad",
        amount=4_900.0,
        transaction_type="withdrawal",
        datetime_occurred=T0.replace(hour=3),
    )
    pipeline = batch_pipeline()
    scored = (
        pipeline
        | beam.Create(
            [
                JoinedTransaction(transaction(), account()),
                JoinedTransaction(transaction(transaction_id="t2", account_id="a2"), None),
                JoinedTransaction(night_drain, account(account_id="a3", created_at=T0)),
            ]
        )
        | "ScoreRisk" >> ScoreRisk()
    )
    assert_that(
        scored | beam.Map(lambda s: (s.transaction_id, s.risk_score >= THRESHOLD)),
        equal_to([("t1", False), ("t2", False), ("bad", True)]),
    )
    assert run_and_count(pipeline) == {"scored": 3, "high_risk": 1}


def kafka(topic: str, offset: int, payload: dict) -> KafkaRecord:
    return KafkaRecord(
        topic, 0, offset, 0, payload["account_id"].encode(), json.dumps(payload).encode()
    )


def test_parse_join_and_score_fit_together():
    txn = transaction(datetime_occurred=datetime.now(UTC) - timedelta(hours=1))
    pipeline = batch_pipeline()
    accounts = (
        pipeline
        | "ReadAccounts" >> beam.Create([kafka("accounts", 0, account().to_dict())])
        | "ParseAccounts" >> ParseAccounts()
    )
    transactions = (
        pipeline
        | "ReadTransactions" >> beam.Create([kafka("transactions", 0, txn.to_dict())])
        | "ParseTransactions" >> ParseTransactions()
    )
    scored = (
        (
            accounts.records | "KeyAccounts" >> beam.WithKeys(lambda a: a.account_id),
            transactions.records | "KeyTransactions" >> beam.WithKeys(lambda t: t.account_id),
        )
        | "JoinWithAccounts" >> JoinWithAccounts(ttl=timedelta(minutes=10))
        | "ScoreRisk" >> ScoreRisk()
    )
    assert_that(
        scored | beam.Map(lambda s: (s.transaction, s.account_name)),
        equal_to([(txn, "Ada Lovelace")]),
    )
    assert run_and_count(pipeline)["scored"] == 1


@pytest.mark.parametrize("args", [{"features_idle": 0}, {"clock": "now"}])
def test_bad_arguments_fail_at_construction(args):
    with pytest.raises(ValueError):
        ScoreRisk(**args)
