"""ValidateUnidentified against a real `python -m validator` process.

Batch sizes are read from the validator's own /metrics (a histogram of transactions per
/validate/batch call), so the tests see what the service received.
"""

from __future__ import annotations

import logging
import re
import threading

import apache_beam as beam
import pytest
import requests
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.io.validator_client import ValidatorClient, build_validation_request
from pipeline.records import AttributedTransaction
from pipeline.transforms.validate import ValidateUnidentified, shard_of
from validator.process import ValidatorProcess

from factories import T0, transaction
from .pipelines import batch_pipeline, run_and_count

API_KEY = "validate-test-key"


def records(count: int) -> list[AttributedTransaction]:
    """Unidentified transactions; every third one is large enough for the validator to flag."""
    return [
        AttributedTransaction(
            transaction(transaction_id=f"t{i:03d}", amount=60_000.0 if i % 3 == 0 else 25.0),
            "Ada Lovelace",
            risk_score=10,
        )
        for i in range(count)
    ]


def expected_verdicts(url: str, batch: list[AttributedTransaction]) -> dict[str, bool]:
    """What the validator says about each transaction when asked directly."""
    with ValidatorClient(url, api_key=API_KEY) as client:
        results = client.validate_batch([build_validation_request(r) for r in batch])
    return {r.transaction_id: r.is_fraudulent for r in results}


def batch_sizes(url: str) -> tuple[int, int, int]:
    """(calls, transactions, calls of at most 10) seen by the validator's /metrics."""
    text = requests.get(url + "/metrics", timeout=5).text

    def value(pattern: str) -> int:
        return int(float(re.search(pattern + r" ([0-9.e+]+)", text).group(1)))

    return (
        value("riskpipe_validator_batch_size_count"),
        value("riskpipe_validator_batch_size_sum"),
        value(r'riskpipe_validator_batch_size_bucket\{le="10.0"\}'),
    )


def validate(url: str, **overrides) -> ValidateUnidentified:
    settings = {"batch_size": 10, "max_wait_s": 1.0, "timeout_s": 2.0, "breaker_reset_s": 0.5}
    settings.update(overrides)
    return ValidateUnidentified(url, API_KEY, **settings)


def summary(record: AttributedTransaction) -> tuple[str, bool, str]:
    return record.transaction_id, record.is_fraudulent, record.validated_by


@pytest.fixture
def validator():
    with ValidatorProcess(api_key=API_KEY) as server:
        yield server


def test_verdicts_are_applied_and_attributed_to_the_validator(validator):
    batch = records(25)
    verdicts = expected_verdicts(validator.url, batch)
    assert any(verdicts.values()) and not all(verdicts.values())
    expected = [(tx_id, verdict, "validator") for tx_id, verdict in verdicts.items()]
    pipeline = batch_pipeline()
    out = pipeline | beam.Create(batch) | "Validate" >> validate(validator.url)
    assert_that(out | beam.Map(summary), equal_to(expected))
    counters = run_and_count(pipeline)
    assert counters["validated_fraudulent"] == sum(verdicts.values())
    assert counters["validated_clean"] == 25 - sum(verdicts.values())
    assert "validator_failures" not in counters


def test_batches_are_bounded_by_size(validator):
    before = batch_sizes(validator.url)
    pipeline = batch_pipeline()
    out = pipeline | beam.Create(records(25)) | "Validate" >> validate(validator.url, num_shards=1)
    assert_that(out | beam.combiners.Count.Globally(), equal_to([25]))
    run_and_count(pipeline)
    calls, sent, small = (a - b for a, b in zip(batch_sizes(validator.url), before))
    assert (calls, sent, small) == (3, 25, 3)  # 10 + 10 + the last 5 at end of input


@pytest.mark.parametrize("advance_processing_time, calls", [(True, 2), (False, 1)])
def test_batches_are_bounded_by_time(validator, advance_processing_time, calls):
    """3 transactions, then (maybe) max_wait_s of processing time, then 3 more.

    Only the validator's own counts are checked: what the END timer emits at the end of a
    streaming run is behind the watermark, and assert_that's GroupByKey drops it as late.
    """
    batch = records(6)
    stream = BeamTestStream().add_elements([TimestampedValue(r, T0.timestamp()) for r in batch[:3]])
    if advance_processing_time:
        # The TestStream clock starts at the epoch; the FLUSH timer is set on the wall clock.
        stream = stream.advance_processing_time(int(T0.timestamp()) + 10**9)
    stream = stream.add_elements(
        [TimestampedValue(r, T0.timestamp()) for r in batch[3:]]
    ).advance_watermark_to_infinity()
    before = batch_sizes(validator.url)
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(["--streaming"])
    )
    _ = pipeline | stream | "Validate" >> validate(validator.url, num_shards=1)
    pipeline.run().wait_until_finish()
    got_calls, sent, _ = (a - b for a, b in zip(batch_sizes(validator.url), before))
    assert (got_calls, sent) == (calls, 6)


class _FirstFailure(logging.Handler):
    """Sets ``event`` when the validation step logs that the validator is unavailable."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.event = threading.Event()

    def emit(self, record):
        if "validator unavailable" in record.getMessage():
            self.event.set()


def test_validator_down_then_back_loses_and_clears_nothing():
    server = ValidatorProcess(api_key=API_KEY)
    batch = records(25)
    handler = _FirstFailure()
    logger = logging.getLogger("pipeline.transforms.validate")
    logger.addHandler(handler)

    def start_after_first_failure():
        if handler.event.wait(timeout=120):
            server.start()

    starter = threading.Thread(target=start_after_first_failure, daemon=True)
    starter.start()
    try:
        pipeline = batch_pipeline()
        out = pipeline | beam.Create(batch) | "Validate" >> validate(server.url)
        attributed = out | beam.Map(lambda r: (r.transaction_id, r.validated_by))
        assert_that(attributed, equal_to([(r.transaction_id, "validator") for r in batch]))
        counters = run_and_count(pipeline)
        starter.join(timeout=60)
        verdicts = expected_verdicts(server.url, batch)
    finally:
        logger.removeHandler(handler)
        server.stop()
    assert counters["validator_failures"] >= 1
    assert counters["validator_retries"] >= 1
    assert counters["validated_fraudulent"] == sum(verdicts.values())
    assert counters["validated_fraudulent"] + counters["validated_clean"] == len(batch)


def test_validator_down_at_end_of_input_fails_loudly():
    server = ValidatorProcess(api_key=API_KEY)  # never started
    pipeline = batch_pipeline()
    _ = pipeline | beam.Create(records(5)) | "Validate" >> validate(server.url, drain_timeout_s=1.0)
    with pytest.raises(Exception, match="transactions are not validated"):
        pipeline.run().wait_until_finish()


def test_shards_are_stable_and_bounded():
    assert {shard_of(f"t{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_of("t42", 4) == shard_of("t42", 4)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        ValidateUnidentified("http://x", batch_size=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        ValidateUnidentified("http://x", max_wait_s=0)
