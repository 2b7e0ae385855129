"""What the S3 results cost: object writes and S3 requests of a live fraud-results stream.

    python -m tools.bench_s3 [--rate 1000] [--minutes 10] [--flush_s 30] [--window_s 60]

Runs ``pipeline.io.s3.WriteEventTimeJson`` (real MinIO of the local stack) on the Python
DirectRunner in streaming mode, fed by a ``TestStream``: ``--rate`` documents per minute of
processing time, each occurring up to ``--lag_s`` seconds before it arrives (a live
stream), over ``--minutes`` minutes. Processing time is the TestStream's clock, so ten
minutes take seconds: the writer's own clock is pointed at it for the run. Prints one JSON
object: documents, object writes (and per minute), S3 requests by operation (counted on
the boto3 client) and the objects finally stored. The bench folder is deleted afterwards.

Measured here (10 minutes, 4 shards, 60 s windows, documents up to 5 s old on arrival):
1,000 documents/min cost 12 object writes/min with ``--flush_s 30`` (28 with 10), each
write about 5.3 S3 requests (HEAD, GET of the stored object, a three-part multipart
upload); 2,000/min cost the same 12: the writes follow the objects touched, not the rate.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections import Counter
from unittest import mock

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct import clock as direct_clock
from apache_beam.testing.test_stream import TestStream
from apache_beam.utils.timestamp import Timestamp
from botocore.client import BaseClient

import stack
from pipeline.io import s3 as s3_io
from tools.bench_data import delete_s3_objects

STEP_S = 2  # processing time between two arrivals of documents


def stream(rate_per_min: int, minutes: float, lag_s: float, start_s: float, seed: int = 1):
    """A TestStream of ``(event time, fraud result)`` pairs arriving at ``rate_per_min``."""
    rng = random.Random(seed)
    events = TestStream().advance_watermark_to(start_s - 60)
    per_step, carry, n = rate_per_min * STEP_S / 60, 0.0, 0
    for step in range(int(minutes * 60 / STEP_S)):
        now = start_s + step * STEP_S
        carry += per_step
        batch = []
        while carry >= 1:
            carry -= 1
            n += 1
            occurred = now - rng.uniform(0, lag_s)
            batch.append((occurred, {"transaction_id": f"t{n:08d}", "risk_score": n % 100,
                                     "processed_at": f"{now:.3f}"}))
        events = events.add_elements(batch).advance_processing_time(STEP_S)
        events = events.advance_watermark_to(now - lag_s)
    return events.advance_watermark_to_infinity(), n


def run(rate: int, minutes: float, flush_s: float, window_s: int, lag_s: float) -> dict:
    s3 = stack.up(["s3"])["s3"]
    folder = f"bench-s3-{uuid.uuid4().hex[:8]}"
    prefix = f"s3://{s3['bucket']}/{folder}"
    clocks: list = []
    original_init = direct_clock.TestClock.__init__

    def remember(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        clocks.append(self)

    requests: Counter = Counter()
    original_call = BaseClient._make_api_call

    def count(self, operation, params):
        requests[operation] += 1
        return original_call(self, operation, params)

    start_s = 1_780_000_000.0
    events, documents = stream(rate, minutes, lag_s, start_s)
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner",
        options=PipelineOptions([*s3["pipeline_args"], "--streaming"]),
    )
    _ = pipeline | events | s3_io.WriteEventTimeJson(
        prefix, "transaction_id", window_s=window_s, version_field="processed_at",
        flush_s=flush_s,
    )
    with (
        mock.patch.object(direct_clock.TestClock, "__init__", remember),
        mock.patch.object(BaseClient, "_make_api_call", count),
        # The writer sets its flush timers by this clock: make it the TestStream's.
        mock.patch.object(s3_io.Timestamp, "now", staticmethod(
            lambda: Timestamp(clocks[-1].time() if clocks else 0.0))),
    ):
        result = pipeline.run()
        result.wait_until_finish()
    stored = delete_s3_objects(s3, folder + "/")
    writes = requests["CompleteMultipartUpload"]  # Beam's S3 filesystem: one per object write
    return {
        "documents": documents, "rate_per_min": rate, "minutes": minutes, "flush_s": flush_s,
        "window_s": window_s, "lag_s": lag_s, "object_writes": writes,
        "object_writes_per_min": round(writes / minutes, 1),
        "objects_stored": stored, "s3_requests": dict(sorted(requests.items())),
        "s3_requests_per_object_write": round(sum(requests.values()) / max(writes, 1), 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_s3", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="documents per minute")
    parser.add_argument("--minutes", type=float, default=10, help="processing time simulated")
    parser.add_argument("--flush_s", type=float, default=s3_io.DEFAULT_FLUSH_S)
    parser.add_argument("--window_s", type=int, default=60)
    parser.add_argument("--lag_s", type=float, default=5.0,
                        help="documents occur up to this long before they arrive")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.rate, args.minutes, args.flush_s, args.window_s, args.lag_s)))


if __name__ == "__main__":
    main()
