"""Where a Kafka read starts and ends: one :class:`PartitionSpec` per topic-partition.

``DiscoverPartitionsFn`` runs once at job start: it lists each topic's partitions and fixes,
per partition, the first offset (the group's committed offset, or earliest/latest) and, in
bounded mode, the last one (the high watermark then). ``read.py`` reads the ranges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import apache_beam as beam
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

from pipeline.io.kafka.config import (
    METADATA_TIMEOUT_S,
    UNBOUNDED_END,
    KafkaIOError,
    PartitionSpec,
    ReadSettings,
    allocate_max_records,
    retry_transient,
)

__all__ = ["DiscoverPartitionsFn"]

logger = logging.getLogger(__name__)


class DiscoverPartitionsFn(beam.DoFn):
    """Emits a :class:`PartitionSpec` per partition of each topic, with its offsets."""

    def __init__(self, settings: ReadSettings):
        self._settings = settings

    def process(self, unused_impulse) -> Iterable[PartitionSpec]:
        consumer = self._settings.new_consumer()
        try:
            specs = [
                spec
                for topic in self._settings.topics
                for spec in self._specs(consumer, topic)
            ]
        finally:
            consumer.close()
        if self._settings.max_records is not None:
            specs = self._capped(specs)
        yield from specs

    def _specs(self, consumer: Consumer, topic: str) -> list[PartitionSpec]:
        partitions = self._partitions(consumer, topic)
        committed = {}
        if self._settings.start == "committed":
            tps = [TopicPartition(topic, p) for p in partitions]
            found = retry_transient(
                lambda: consumer.committed(tps, timeout=METADATA_TIMEOUT_S)
            )
            committed = {tp.partition: tp.offset for tp in found}
        specs = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S
            )
            start = committed.get(partition, OFFSET_INVALID)
            if start < 0:
                start = high if self._settings.start == "latest" else low
            # A commit older than the retention (or past the end) is clamped.
            start = min(max(start, low), high)
            stop = high if self._settings.bounded else UNBOUNDED_END
            specs.append(PartitionSpec(topic, partition, start, stop))
            logger.info(
                "Kafka %s[%d]: reading offsets [%d, %s)", topic, partition, start, stop
            )
        return specs

    def _partitions(self, consumer: Consumer, topic: str) -> list[int]:
        where = f"Kafka at {self._settings.bootstrap_servers}"
        try:
            metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            msg = f"DiscoverPartitions: cannot reach {where} to read topic {topic!r}: {exc}"
            raise KafkaIOError(msg) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            reason = found.error if found is not None else "no metadata"
            msg = f"DiscoverPartitions: topic {topic!r} not found on {where} ({reason})"
            raise KafkaIOError(msg)
        return sorted(found.partitions)

    def _capped(self, specs: list[PartitionSpec]) -> list[PartitionSpec]:
        available = [spec.stop_offset - spec.start_offset for spec in specs]
        shares = allocate_max_records(available, self._settings.max_records)
        return [
            spec._replace(stop_offset=spec.start_offset + share)
            for spec, share in zip(specs, shares)
        ]


