"""Kafka IO for riskpipe: a Python-native source and sink on confluent-kafka.

Beam's cross-language ``ReadFromKafka`` needs a Java SDK harness in Docker on Flink, which
riskpipe cannot use, so Kafka is read and written here in Python. The reader lives in
``read.py`` (partition discovery in ``discovery.py``, shared settings in ``config.py``), the
writer in ``write.py``; import them from this package.

Reading::

    records = p | "ReadTransactions" >> ReadFromKafka(
        "127.0.0.1:9092", ["transactions"], group_id="riskpipe")   # unbounded: Flink
    # DirectRunner, tests, backfills: up to the end offsets seen at start, or N records.
    sample = p | ReadFromKafka(bootstrap, "transactions", "debug", start="earliest",
                               bounded=True, max_records=1000)

Each element is a :class:`~pipeline.records.KafkaRecord` ``(topic, partition, offset,
timestamp_ms, key, value)`` whose event time is the Kafka message timestamp.

- Offsets: one splittable-DoFn element per topic-partition; its restriction is an
  ``OffsetRange`` from the group's committed offset (else earliest; or ``start=``) to the end
  offset at start (bounded) or 2**63-1 (unbounded). A bundle reads up to ``max_batch`` records
  or ``max_bundle_s`` and then defers the rest (``defer_remainder``), so Flink, which never
  splits a Python SDF, can checkpoint it; the runner's checkpoint holds the position. Each
  worker keeps one consumer per partition, assigned once and sought only when the restriction
  starts elsewhere. Partitions added after the job starts are not read until it restarts.
- Watermarks: a ``ManualWatermarkEstimator`` per partition follows the newest record
  timestamp minus ``watermark_allowance_s``; a partition caught up with its end offset moves
  it to wall time minus the allowance, so an idle partition does not hold event time back.
- Commits: when a bundle is finalized its last offset + 1 goes to the process's committer
  (``commit.py``), which commits the highest offset finalized so far to ``group_id`` and keeps
  it there (bundles of one partition finalize concurrently, in several SDK workers), so
  Kafka's tools show the lag and a job started without a checkpoint resumes there. The
  FnApiRunner (what the DirectRunner runs) finalizes right after each bundle; the Flink
  runner only when a checkpoint completes, i.e. with ``--checkpointing_interval`` set.
  Without finalization nothing is committed; reading still works.
- Metrics (namespace ``riskpipe``): ``kafka_records_read``, ``kafka_records_read_<name>``,
  gauges ``kafka_lag_<name>_p<partition>`` (end offset − position at the last bundle), where
  ``<name>`` is the read's ``metrics_name`` (the job uses ``accounts`` and ``transactions``),
  ``kafka_records_written``, ``kafka_write_errors``.

Writing (at least once: a bundle fails, and is retried, unless the broker acknowledged all of
its records; the producer is idempotent with ``acks=all``, ``linger.ms=20`` and lz4)::

    scored | "WriteResults" >> WriteToKafka(bootstrap, "fraudulent-transactions-result",
                                            key_fn=lambda t: t.transaction_id,
                                            value_fn=lambda t: json.dumps(t.to_dict()))
    dead_letters | WriteDeadLetters(bootstrap, "dead-letters")   # JSON keyed topic/partition/offset

A record written again (a replay from a checkpoint, or a corrected version) has the same
key; the project's output topics are compacted (``stack/kafka.py``), so a consumer keeping
the latest record per key, and in time the broker, hold one record per key.

Why an SDF and not Beam 2.77's experimental ``apache_beam.io.unbounded_source``: a reader on
it worked on the FnApiRunner, with commits in ``CheckpointMark.finalize_checkpoint``, but read
500k records at ~65k/s against ~135k/s here, keeps its position as a pickled source + mark
(the ``OffsetRange`` here is readable in a checkpoint), has no backlog size and no bounded
mode (a reader must fake a MAX watermark to end), and still needs a discovery step for offsets.
"""

from pipeline.io.kafka.config import KafkaIOError, allocate_max_records
from pipeline.io.kafka.read import ReadFromKafka
from pipeline.io.kafka.write import (
    WriteDeadLetters,
    WriteToKafka,
    dead_letter_key,
    dead_letter_value,
)

__all__ = [
    "KafkaIOError",
    "ReadFromKafka",
    "WriteDeadLetters",
    "WriteToKafka",
    "allocate_max_records",
    "dead_letter_key",
    "dead_letter_value",
]
