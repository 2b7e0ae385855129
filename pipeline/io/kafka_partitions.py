"""Where a Kafka read starts and ends: partition discovery and the read's settings.

``_DiscoverPartitionsFn`` runs once at job start: it lists each topic's partitions and fixes,
per partition, the first offset (the group's committed offset, or earliest/latest) and, in
bounded mode, the last one (the high watermark then). ``kafka_read.py`` reads the ranges.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import apache_beam as beam
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

__all__ = ["KafkaIOError", "allocate_max_records", "client_config"]

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "riskpipe"
STARTS = ("committed", "earliest", "latest")
# End of an unbounded restriction: far beyond any offset a partition will reach.
UNBOUNDED_END = 2**63 - 1
METADATA_TIMEOUT_S = 10.0
# Records asked of librdkafka per consume() call; a bundle is several of these.
FETCH_CHUNK = 1000


class KafkaIOError(RuntimeError):
    """Kafka cannot be read or written: unreachable broker, missing topic, failed delivery."""


def client_config(bootstrap_servers: str, overrides: dict | None, **defaults) -> dict:
    """librdkafka settings: ``defaults``, then ``bootstrap.servers``, then ``overrides``."""
    config = {k.replace("_", "."): v for k, v in defaults.items()}
    config["bootstrap.servers"] = bootstrap_servers
    config.update(overrides or {})
    return config


def _retry_transient(call, timeout_s: float = METADATA_TIMEOUT_S):
    """Calls ``call`` until it stops raising a retriable Kafka error (e.g. NOT_COORDINATOR
    while a fresh broker creates ``__consumer_offsets``), for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable()
                or error.code()
                in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
            )
            if not retriable or time.monotonic() + delay > deadline:
                raise
            logger.info("Kafka: %s; retrying in %.1fs", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def allocate_max_records(available: Sequence[int], max_records: int) -> list[int]:
    """Shares ``max_records`` over partitions as evenly as their ``available`` records allow.

    Partitions with fewer records than an even share give the rest to the others, so the
    total is ``min(max_records, sum(available))``.

    >>> allocate_max_records([10, 1, 10, 10], 10)
    [3, 1, 3, 3]
    >>> allocate_max_records([UNBOUNDED_END] * 3, 10)
    [4, 3, 3]
    """
    if max_records >= sum(available):
        return list(available)
    # The highest level every partition can be filled to within the cap ...
    low, high = 0, max(available)
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in available) <= max_records:
            low = mid
        else:
            high = mid - 1
    shares = [min(n, low) for n in available]
    # ... then one more record for the first partitions that still have some.
    left = max_records - sum(shares)
    for i, n in enumerate(available):
        if left and n > shares[i]:
            shares[i] += 1
            left -= 1
    return shares


@dataclasses.dataclass(frozen=True)
class _ReadSettings:
    """Everything a worker needs to read; plain data so the DoFns pickle."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str
    start: str
    bounded: bool
    max_records: int | None
    consumer_config: tuple[tuple[str, object], ...]
    poll_timeout_s: float
    max_batch: int
    max_bundle_s: float
    idle_resume_s: float
    watermark_allowance_s: float
    metrics_name: str = ""

    def metric_label(self, topic: str) -> str:
        """The name a topic's metrics carry: ``metrics_name``, else the topic made safe."""
        return self.metrics_name or re.sub(r"[^A-Za-z0-9_]", "_", topic)

    def new_consumer(self) -> Consumer:
        """A consumer in the group that never subscribes (partitions are assigned)."""
        config = client_config(
            self.bootstrap_servers,
            dict(self.consumer_config),
            group_id=self.group_id,
            enable_auto_commit=False,
            enable_auto_offset_store=False,
            auto_offset_reset="earliest",
            enable_partition_eof=False,
            client_id="riskpipe-reader",
        )
        config.setdefault("on_commit", _log_commit_result)
        return Consumer(config)


class _PartitionSpec(NamedTuple):
    """One topic-partition to read, from ``start_offset`` to ``stop_offset`` (exclusive)."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int


def _log_commit_result(error, partitions) -> None:
    if error is not None:
        logger.warning("Kafka offset commit failed: %s (%s)", error, partitions)
    else:
        for tp in partitions:
            if tp.error is not None:
                logger.warning("Kafka offset commit failed for %s: %s", tp, tp.error)


class _DiscoverPartitionsFn(beam.DoFn):
    """Emits a :class:`_PartitionSpec` per partition of each topic, with its offsets."""

    def __init__(self, settings: _ReadSettings):
        self._settings = settings

    def process(self, unused_impulse) -> Iterable[_PartitionSpec]:
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

    def _specs(self, consumer: Consumer, topic: str) -> list[_PartitionSpec]:
        partitions = self._partitions(consumer, topic)
        committed = {}
        if self._settings.start == "committed":
            tps = [TopicPartition(topic, p) for p in partitions]
            found = _retry_transient(
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
            specs.append(_PartitionSpec(topic, partition, start, stop))
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

    def _capped(self, specs: list[_PartitionSpec]) -> list[_PartitionSpec]:
        available = [spec.stop_offset - spec.start_offset for spec in specs]
        shares = allocate_max_records(available, self._settings.max_records)
        return [
            spec._replace(stop_offset=spec.start_offset + share)
            for spec, share in zip(specs, shares)
        ]


