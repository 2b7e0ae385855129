"""WriteWindowedJson against the local S3 server: deterministic, deduplicated, replay-safe."""

from __future__ import annotations

import json
import uuid

import apache_beam as beam
import boto3
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import TimestampedValue

from pipeline.io.s3 import WriteWindowedJson, object_path

START = 1_772_460_000  # 2026-03-02T14:00:00Z, a window start for 60 s windows


@pytest.fixture
def s3(s3_config):
    """A boto3 client on the stack's S3 server."""
    return boto3.client(
        "s3",
        endpoint_url=s3_config["endpoint_url"],
        aws_access_key_id=s3_config["s3_access_key_id"],
        aws_secret_access_key=s3_config["s3_secret_access_key"],
        region_name=s3_config["s3_region_name"],
    )


def objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``: key -> body."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def write(s3_config, prefix: str, docs: list[tuple[dict, int]]) -> dict[str, int]:
    """Runs WriteWindowedJson once on ``(doc, timestamp)`` pairs; returns its counters."""
    pipeline = beam.Pipeline(
        runner="FnApiRunner", options=PipelineOptions(s3_config["pipeline_args"])
    )
    _ = (
        pipeline
        | beam.Create([TimestampedValue(doc, ts) for doc, ts in docs])
        | "WriteJson" >> WriteWindowedJson(prefix, window_s=60, id_field="id", num_shards=2)
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace("riskpipe"))["counters"]
    return {c.key.metric.name: c.committed for c in counters}


def test_objects_are_partitioned_deduplicated_and_replay_safe(s3_config, s3):
    bucket, folder = s3_config["bucket"], f"test-s3-{uuid.uuid4().hex[:8]}"
    docs = [({"id": f"u{i:02d}", "n": i}, START + 7 * i) for i in range(20)]
    docs += [({"id": "u03", "n": 3}, START + 21)]  # a duplicate of u03, same window
    first_counters = write(s3_config, f"s3://{bucket}/{folder}", docs)
    first = objects(s3, bucket, folder)

    assert all("/dt=2026-03-02/hour=14/part-" in key for key in first)
    assert {key.rsplit("/", 1)[1].split("-")[1] for key in first} == {
        str(START),
        str(START + 60),
        str(START + 120),
    }
    lines = [json.loads(line) for body in first.values() for line in body.splitlines()]
    assert sorted(d["id"] for d in lines) == [f"u{i:02d}" for i in range(20)]
    for body in first.values():
        ids = [json.loads(line)["id"] for line in body.splitlines()]
        assert ids == sorted(set(ids))
    assert first_counters["s3_records_written"] == 20
    assert first_counters["s3_objects_written"] == len(first)

    write(s3_config, f"s3://{bucket}/{folder}", list(reversed(docs)))
    assert objects(s3, bucket, folder) == first


def test_object_path_is_a_pure_function():
    assert object_path("s3://b/users/", START, 1) == object_path("s3://b/users", START, 1)
    assert object_path("s3://b/users", START, 1).endswith(f"hour=14/part-{START}-01.jsonl")


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="window_s"):
        WriteWindowedJson("s3://b/t", window_s=7)
    with pytest.raises(ValueError, match="prefix"):
        WriteWindowedJson("b/t")
