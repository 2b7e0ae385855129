"""ValidateUnidentified against a real `python -m validator` process.

Batch sizes and refusals are read from the validator's own /metrics (a histogram of
transactions per /validate/batch call, requests by outcome), so the tests see what the
service received.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections import Counter
from datetime import timedelta

import apache_beam as beam
import pytest
import requests
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils import proto_utils

from pipeline.io.validator_client import ValidatorClient, build_validation_request
from pipeline.records import AttributedTransaction
from pipeline.transforms.validate import ValidateUnidentified, shard_of
from validator.process import ValidatorProcess

from factories import T0, transaction
from .pipelines import batch_pipeline, run_and_count

# A real validator process (started here) answers these tests.
pytestmark = pytest.mark.services

API_KEY = "validate-test-key"
WRONG_KEY_REASON = "validator rejected the request (HTTP 401: missing or invalid X-API-Key header)"


def records(count: int, **overrides) -> list[AttributedTransaction]:
    """Unidentified transactions; every third one is large enough for the validator to flag."""
    return [
        AttributedTransaction(
            transaction(
                transaction_id=f"t{i:03d}",
                amount=60_000.0 if i % 3 == 0 else 25.0,
                **overrides,
            ),
            "Ada Lovelace",
            risk_score=10,
            risk_reasons=("scored",),
        )
        for i in range(count)
    ]


def expected_verdicts(url: str, batch: list[AttributedTransaction]) -> dict[str, bool]:
    """What the validator says about each transaction when asked directly."""
    with ValidatorClient(url, api_key=API_KEY) as client:
        results = client.validate_batch([build_validation_request(r) for r in batch])
    return {r.transaction_id: r.is_fraudulent for r in results}


def _metric(text: str, pattern: str) -> int:
    found = re.search(re.escape(pattern) + r" ([0-9.e+]+)", text)
    return int(float(found.group(1))) if found else 0


def batch_sizes(url: str) -> tuple[int, int, int]:
    """(calls, transactions, calls of at most 10) seen by the validator's /metrics."""
    text = requests.get(url + "/metrics", timeout=5).text
    return (
        _metric(text, "riskpipe_validator_batch_size_count"),
        _metric(text, "riskpipe_validator_batch_size_sum"),
        _metric(text, 'riskpipe_validator_batch_size_bucket{le="10.0"}'),
    )


def batch_outcomes(url: str) -> Counter:
    """/validate/batch requests by outcome (ok, unauthorized, invalid, too_large, ...)."""
    text = requests.get(url + "/metrics", timeout=5).text
    found = re.findall(
        r'riskpipe_validator_requests_total\{endpoint="/validate/batch",outcome="(\w+)"\} '
        r"([0-9.e+]+)",
        text,
    )
    return Counter({outcome: int(float(value)) for outcome, value in found})


def validate(url: str, api_key: str = API_KEY, **overrides) -> ValidateUnidentified:
    settings = {"batch_size": 10, "timeout_s": 2.0}
    settings.update(overrides)
    return ValidateUnidentified(url, api_key, **settings)


def summary(record: AttributedTransaction) -> tuple[str, bool, str]:
    return record.transaction_id, record.is_fraudulent, record.validated_by


def shard_sizes(batch: list[AttributedTransaction]) -> list[int]:
    return list(Counter(shard_of(r.transaction_id) for r in batch).values())


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
    assert_that(out.records | beam.Map(summary), equal_to(expected))
    assert_that(out.dead_letters, equal_to([]), label="NoDeadLetters")
    counters = run_and_count(pipeline)
    assert counters["validated_fraudulent"] == sum(verdicts.values())
    assert counters["validated_clean"] == 25 - sum(verdicts.values())
    assert "validator_failures" not in counters and "validator_rejected" not in counters


def test_batches_are_bounded_by_size(validator):
    batch = records(25)
    before = batch_sizes(validator.url)
    pipeline = batch_pipeline()
    out = pipeline | beam.Create(batch) | "Validate" >> validate(validator.url)
    assert_that(out.records | beam.combiners.Count.Globally(), equal_to([25]))
    run_and_count(pipeline)
    calls, sent, small = (a - b for a, b in zip(batch_sizes(validator.url), before))
    # Per shard: the bundle's transactions in calls of at most 10.
    expected_calls = sum(math.ceil(n / 10) for n in shard_sizes(batch))
    assert (calls, sent, small) == (expected_calls, 25, expected_calls)


def test_each_bundle_is_validated_when_it_arrives_without_a_timer(validator):
    """Two bundles of 3, no processing time passing between them: each bundle's transactions
    are sent when the bundle hands them on, one call per shard of that bundle, not buffered
    together until a timer or the end of input.

    Only the validator's own counts are checked: what the END timer emits at the end of a
    streaming run is behind the watermark, and assert_that's GroupByKey drops it as late.
    """
    batch = records(6)
    shards = [shard_of(r.transaction_id) for r in batch]
    per_bundle = len(set(shards[:3])) + len(set(shards[3:]))
    assert per_bundle > len(set(shards))  # the two ways of batching give different counts
    stream = (
        BeamTestStream()
        .add_elements([TimestampedValue(r, T0.timestamp()) for r in batch[:3]])
        .add_elements([TimestampedValue(r, T0.timestamp()) for r in batch[3:]])
        .advance_watermark_to_infinity()
    )
    before = batch_sizes(validator.url)
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(["--streaming"])
    )
    _ = pipeline | stream | "Validate" >> validate(validator.url)
    pipeline.run().wait_until_finish()
    got_calls, sent, _ = (a - b for a, b in zip(batch_sizes(validator.url), before))
    assert (got_calls, sent) == (per_bundle, 6)


def test_a_corrected_row_replaces_the_one_it_corrects(validator):
    """The join corrects a row when an older account version arrives after it, and the
    correction carries that version's older timestamp. Both wait in one batch: only the
    correction is validated and emitted, never the stale row after it."""
    first, second = records(2)
    stale = dataclasses.replace(first, account_name="Ada", processed_at=T0)
    fixed = dataclasses.replace(
        first, account_name="Ada King", processed_at=T0 + timedelta(seconds=1)
    )
    before = batch_sizes(validator.url)
    pipeline = batch_pipeline()
    out = (
        pipeline
        | beam.Create([
            TimestampedValue(stale, T0.timestamp() + 60),
            TimestampedValue(second, T0.timestamp() + 30),
            TimestampedValue(fixed, T0.timestamp()),
        ])
        | "Validate" >> validate(validator.url)
    )
    assert_that(
        out.records | beam.Map(lambda r: (r.transaction_id, r.account_name)),
        equal_to([(first.transaction_id, "Ada King"), (second.transaction_id, "Ada Lovelace")]),
    )
    run_and_count(pipeline)
    assert batch_sizes(validator.url)[1] - before[1] == 2


class _StartOnFirstFailure(logging.Handler):
    """Starts ``server`` (and waits until it answers) when the step first logs that the
    validator is unavailable: the validator is down for the first call, then back."""

    def __init__(self, server: ValidatorProcess):
        super().__init__(logging.WARNING)
        self.server = server
        self.failures = 0

    def emit(self, record):  # called under the handler's own lock
        if "validator unavailable" not in record.getMessage():
            return
        self.failures += 1
        if self.server.process is None:
            self.server.start()


@pytest.fixture
def down_then_back():
    server = ValidatorProcess(api_key=API_KEY)
    handler = _StartOnFirstFailure(server)
    logger = logging.getLogger("pipeline.transforms.validate")
    logger.addHandler(handler)
    try:
        yield server, handler
    finally:
        logger.removeHandler(handler)
        server.stop()


def test_validator_down_then_back_loses_and_clears_nothing(down_then_back):
    """Bounded: full batches fail in process(), the validator comes back, and the step's
    retries (the end-of-input attempt waits for the scheduled one) validate every one."""
    server, handler = down_then_back
    batch = records(25)
    pipeline = batch_pipeline()
    out = pipeline | beam.Create(batch) | "Validate" >> validate(server.url, batch_size=5)
    attributed = out.records | beam.Map(lambda r: (r.transaction_id, r.validated_by))
    assert_that(attributed, equal_to([(r.transaction_id, "validator") for r in batch]))
    counters = run_and_count(pipeline)
    verdicts = expected_verdicts(server.url, batch)
    assert handler.failures >= 1
    assert counters["validator_failures"] == handler.failures
    assert counters["validator_retries"] >= 1
    assert counters["validated_fraudulent"] == sum(verdicts.values())
    assert counters["validated_fraudulent"] + counters["validated_clean"] == len(batch)


def test_streaming_retries_come_from_the_timer(down_then_back):
    """Streaming: the FLUSH timer fails, fires again after its backoff, and validates all
    before the watermark moves (what only the end-of-input timer emitted would be late)."""
    server, handler = down_then_back
    batch = records(6)
    stream = (
        BeamTestStream()
        .add_elements([TimestampedValue(r, T0.timestamp()) for r in batch])
        .advance_processing_time(int(T0.timestamp()) + 10**9)
        .advance_watermark_to_infinity()
    )
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(["--streaming"])
    )
    out = pipeline | stream | "Validate" >> validate(server.url)
    assert_that(
        out.records | beam.Map(lambda r: r.transaction_id),
        equal_to([r.transaction_id for r in batch]),
    )
    pipeline.run().wait_until_finish()
    assert handler.failures >= 1
    assert batch_sizes(server.url)[1] == 6


def test_validator_down_at_end_of_input_fails_loudly():
    server = ValidatorProcess(api_key=API_KEY)  # never started
    pipeline = batch_pipeline()
    _ = pipeline | beam.Create(records(5)) | "Validate" >> validate(server.url)
    started = time.monotonic()
    with pytest.raises(
        Exception,
        match=r"ValidateUnidentified: end of input with \d transactions not validated: "
        r"the validator at http://127\.0\.0\.1:\d+ did not answer",
    ):
        pipeline.run().wait_until_finish()
    assert time.monotonic() - started < 60  # a bounded wait, not a drain loop


def _dead_letter_summary(letter) -> tuple[str, str, str]:
    return json.loads(letter.payload)["transaction_id"], letter.step, letter.reason


def test_wrong_key_decides_every_transaction_for_review(validator):
    batch = records(12)
    before = batch_outcomes(validator.url)
    pipeline = batch_pipeline()
    out = pipeline | beam.Create(batch) | "Validate" >> validate(validator.url, api_key="wrong")
    assert_that(
        out.records | beam.Map(lambda r: (*summary(r), r.risk_reasons)),
        equal_to(
            [
                (r.transaction_id, False, "none", ("scored", "review: " + WRONG_KEY_REASON))
                for r in batch
            ]
        ),
    )
    assert_that(
        out.dead_letters | beam.Map(_dead_letter_summary),
        equal_to([(r.transaction_id, "ValidateUnidentified", WRONG_KEY_REASON) for r in batch]),
        label="DeadLetters",
    )
    counters = run_and_count(pipeline)
    assert counters["validator_rejected"] == 12
    assert "validator_failures" not in counters and "validated_clean" not in counters
    # A refused key is not worth one request per transaction: one call per batch.
    refused = batch_outcomes(validator.url) - before
    assert refused == Counter({"unauthorized": sum(math.ceil(n / 10) for n in shard_sizes(batch))})


def test_one_invalid_transaction_does_not_take_its_batch_down(validator):
    batch = records(8)
    bad = AttributedTransaction(
        transaction(transaction_id="t-bad", currency="EURO"), "Ada Lovelace", risk_score=10
    )
    shard = shard_of("t-bad")
    mates = [r for r in batch if shard_of(r.transaction_id) == shard]
    assert mates, "the bad transaction must share its batch with good ones"
    other_batches = len({shard_of(r.transaction_id) for r in batch} - {shard})
    verdicts = expected_verdicts(validator.url, batch)
    before = batch_outcomes(validator.url)
    pipeline = batch_pipeline()
    out = pipeline | beam.Create([*batch, bad]) | "Validate" >> validate(validator.url)
    assert_that(
        out.records | beam.Map(summary),
        equal_to(
            [(tx, verdict, "validator") for tx, verdict in verdicts.items()]
            + [("t-bad", False, "none")]
        ),
    )
    prefix = "validator rejected the request (HTTP 422: invalid request: transactions[0].currency"
    assert_that(
        out.dead_letters
        | beam.Map(lambda d: (json.loads(d.payload)["transaction_id"], d.reason.startswith(prefix))),
        equal_to([("t-bad", True)]),
        label="DeadLetters",
    )
    counters = run_and_count(pipeline)
    assert counters["validator_rejected"] == 1
    assert counters["validated_fraudulent"] + counters["validated_clean"] == 8
    # The bad batch once as a whole (422), then once per transaction of that batch.
    outcomes = batch_outcomes(validator.url) - before
    assert outcomes == Counter({"invalid": 2, "ok": other_batches + len(mates)})


def test_a_batch_over_the_server_limit_is_sent_one_by_one():
    batch = records(10)
    oversized = sum(1 for n in shard_sizes(batch) if n > 2)
    assert oversized >= 1
    with ValidatorProcess(api_key=API_KEY, extra_args=["--max-batch-size", "2"]) as server:
        pipeline = batch_pipeline()
        out = pipeline | beam.Create(batch) | "Validate" >> validate(server.url)
        assert_that(
            out.records | beam.Map(lambda r: r.validated_by), equal_to(["validator"] * 10)
        )
        counters = run_and_count(pipeline)
        outcomes = batch_outcomes(server.url)
    assert "validator_rejected" not in counters
    assert outcomes["too_large"] == oversized


def test_shards_are_stable_and_bounded():
    assert {shard_of(f"t{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_of("t42", 4) == shard_of("t42", 4)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        ValidateUnidentified("http://x", batch_size=0)
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        ValidateUnidentified("http://x", timeout_s=0)
    with pytest.raises(ValueError, match="validator_url must not be empty"):
        ValidateUnidentified("")


def test_the_key_travels_with_the_pipeline():
    """The key is part of the step's serialized DoFn, so SDK workers (Flink's EXTERNAL worker
    pool) send it without reading their own environment."""
    pipeline = beam.Pipeline(runner="FnApiRunner")
    _ = pipeline | beam.Create(records(1)) | "Validate" >> validate("http://x", api_key="k-42")
    proto = pipeline.to_runner_api()
    (call,) = [
        t
        for t in proto.components.transforms.values()
        if "/CallValidator/" in t.unique_name and t.spec.urn == common_urns.primitives.PAR_DO.urn
    ]
    payload = proto_utils.parse_Bytes(call.spec.payload, beam_runner_api_pb2.ParDoPayload)
    fn = pickler.loads(payload.do_fn.payload)[0]  # what an SDK worker unpickles
    assert (fn.api_key, fn.validator_url) == ("k-42", "http://x")
