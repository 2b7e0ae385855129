"""Reads Kafka topics into Beam as :class:`~pipeline.records.KafkaRecord` (see ``kafka.py``).

Impulse → ``_DiscoverPartitionsFn`` (one ``_PartitionSpec`` per topic-partition, with the
start offset and, in bounded mode, the end offset fixed once at job start) → Reshuffle (so a
runner spreads partitions over its workers) → ``_ReadPartitionFn``, a splittable DoFn whose
restriction is the partition's ``OffsetRange``. The restriction is the only state that must
survive a restart: a runner checkpoints it, and a job started afresh resumes from the offsets
committed to the consumer group.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pipeline.records import KafkaRecord

__all__ = ["KafkaIOError", "ReadFromKafka", "allocate_max_records"]

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


class _PartitionOffsetTracker(OffsetRestrictionTracker):
    """An offset tracker that splits only to self-checkpoint.

    Two readers of one partition would commit offsets out of order (a commit past an unread
    range loses it on a fresh start), so runner-initiated splits are declined.
    """

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)

    def is_bounded(self):
        return self._range.stop < UNBOUNDED_END


class _PartitionRestrictionProvider(RestrictionProvider):
    """A partition's restriction is its ``OffsetRange``; it is never split up front."""

    def initial_restriction(self, spec: _PartitionSpec) -> OffsetRange:
        return OffsetRange(spec.start_offset, spec.stop_offset)

    def create_tracker(self, restriction: OffsetRange) -> _PartitionOffsetTracker:
        return _PartitionOffsetTracker(restriction)

    def split(self, spec, restriction):
        yield restriction

    def restriction_size(self, spec, restriction) -> int:
        return restriction.size()

    def truncate(self, spec, restriction):
        # On drain an unbounded read stops; a bounded one finishes its slice.
        return restriction if restriction.stop < UNBOUNDED_END else None


# The SDF's parameters, module-level so both DoFn classes share them.
_OFFSETS = beam.DoFn.RestrictionParam(_PartitionRestrictionProvider())
_WATERMARK = beam.DoFn.WatermarkEstimatorParam(
    ManualWatermarkEstimator.default_provider()
)


class _PartitionReader:
    """A consumer assigned to one partition, and the next offset it will return."""

    def __init__(self, consumer: Consumer, topic: str, partition: int, offset: int):
        self.consumer = consumer
        self.tp = TopicPartition(topic, partition)
        self.next_offset = offset
        consumer.assign([TopicPartition(topic, partition, offset)])

    def seek(self, offset: int) -> None:
        if offset == self.next_offset:
            return
        target = TopicPartition(self.tp.topic, self.tp.partition, offset)
        try:
            self.consumer.seek(target)
        except KafkaException:
            # seek() is refused while the assignment is still being set up.
            self.consumer.assign([target])
        self.next_offset = offset

    def fetch(self, max_records: int, timeout_s: float) -> list:
        """Up to ``max_records`` messages; errors are raised when fatal, else logged."""
        # consume(n, timeout) waits for all n or the timeout, so take what is prefetched and
        # block only for the first record of an empty queue.
        batch = self.consumer.consume(max_records, timeout=0)
        if not batch:
            batch = self.consumer.consume(1, timeout=timeout_s)
            if batch and max_records > 1:
                batch += self.consumer.consume(max_records - 1, timeout=0)
        messages = []
        for msg in batch:
            error = msg.error()
            if error is None:
                messages.append(msg)
            elif error.fatal():
                raise KafkaIOError(
                    f"ReadPartitions: {self.tp.topic}[{self.tp.partition}]: {error}"
                )
            else:
                logger.warning(
                    "Kafka %s[%d]: %s", self.tp.topic, self.tp.partition, error
                )
        if messages:
            self.next_offset = messages[-1].offset() + 1
        return messages

    def position(self) -> int:
        """The consumer's fetch position (past transaction markers), or ``next_offset``."""
        position = self.consumer.position([self.tp])[0].offset
        return max(position, self.next_offset)

    def high_watermark(self) -> int | None:
        """The partition's end offset as of the last fetch, if one has been seen."""
        _, high = self.consumer.get_watermark_offsets(self.tp, cached=True)
        return high if high >= 0 else None


class _ReadPartitionFn(beam.DoFn):
    """Reads one topic-partition's offset range; self-checkpoints every bundle.

    A bundle reads at most ``max_batch`` records or for ``max_bundle_s``, then defers the rest
    of the range (at once if behind, after ``idle_resume_s`` if caught up), so a runner that
    never splits a Python SDF (Flink) still checkpoints. The watermark follows record
    timestamps; a caught-up partition moves it to now − ``watermark_allowance_s``. A finalized
    bundle commits its last offset + 1 to the consumer group.
    """

    def __init__(self, settings: _ReadSettings):
        self._settings = settings
        self._readers: dict[tuple[str, int], _PartitionReader] = {}

    def setup(self):
        self._readers = {}
        self._read = Metrics.counter(METRICS_NAMESPACE, "kafka_records_read")
        self._read_by_topic = {
            t: Metrics.counter(METRICS_NAMESPACE, f"kafka_records_read_{t}")
            for t in self._settings.topics
        }

    def teardown(self):
        readers, self._readers = self._readers, {}
        logger.debug("Kafka: closing %d consumers", len(readers))
        for reader in readers.values():
            try:
                reader.consumer.close()  # waits for outstanding async commits
            except (KafkaException, RuntimeError):
                logger.warning(
                    "Closing the consumer of %s failed", reader.tp, exc_info=True
                )

    def process(
        self,
        spec: _PartitionSpec,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=_OFFSETS,
        watermark_estimator=_WATERMARK,
    ):
        restriction = tracker.current_restriction()
        if restriction.start >= restriction.stop:
            return
        started = time.monotonic()
        deadline = started + self._settings.max_bundle_s
        reader = self._reader(spec, restriction.start)
        claimed, last_offset = 0, None
        while True:
            room = min(FETCH_CHUNK, self._settings.max_batch - claimed)
            batch = reader.fetch(room, self._settings.poll_timeout_s)
            if not batch:
                if self._keep_polling(
                    reader, restriction, tracker, watermark_estimator, deadline
                ):
                    continue
                break
            emitted = yield from self._claim(batch, tracker, watermark_estimator)
            if emitted:
                claimed += emitted
                last_offset = batch[emitted - 1].offset()
            if emitted < len(batch):
                break  # a claim failed: the rest is past the end of the range
            if reader.next_offset >= restriction.stop:
                # Read to the end: finish now rather than after one more empty fetch.
                tracker.try_claim(restriction.stop)
                break
            if claimed >= self._settings.max_batch or time.monotonic() >= deadline:
                tracker.defer_remainder()
                break
        self._report(spec, reader, claimed, time.monotonic() - started)
        if last_offset is not None:
            commit = functools.partial(
                self._commit, spec.topic, spec.partition, last_offset + 1
            )
            bundle_finalizer.register(commit)

    def _claim(self, batch, tracker, watermark_estimator):
        """Claims and emits ``batch`` in order, then moves the watermark to its newest
        timestamp; returns how many were emitted (fewer if the range ends inside it)."""
        emitted = 0
        newest = None
        for msg in batch:
            if not tracker.try_claim(msg.offset()):
                break
            millis = _millis(msg)
            newest = millis if newest is None else max(newest, millis)
            record = KafkaRecord(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                millis,
                msg.key(),
                msg.value(),
            )
            yield TimestampedValue(record, Timestamp(micros=millis * 1000))
            emitted += 1
        if newest is not None:
            self._advance_watermark(
                watermark_estimator, Timestamp(micros=newest * 1000)
            )
        return emitted

    def _keep_polling(
        self, reader, restriction, tracker, watermark_estimator, deadline
    ) -> bool:
        """After an empty fetch: finishes the range, or defers it, or says to poll again."""
        position = reader.position()
        high = reader.high_watermark()
        if position >= restriction.stop:
            tracker.try_claim(restriction.stop)  # past the end: the range is done
        elif high is not None and position >= high:
            self._advance_watermark(watermark_estimator, Timestamp.now())
            tracker.defer_remainder(Duration(seconds=self._settings.idle_resume_s))
        elif time.monotonic() < deadline:
            return True
        else:
            tracker.defer_remainder()
        return False

    def _reader(self, spec: _PartitionSpec, offset: int) -> _PartitionReader:
        key = (spec.topic, spec.partition)
        reader = self._readers.get(key)
        if reader is None:
            reader = _PartitionReader(
                self._settings.new_consumer(), spec.topic, spec.partition, offset
            )
            self._readers[key] = reader
        else:
            reader.seek(offset)
        return reader

    def _advance_watermark(self, estimator, event_time: Timestamp) -> None:
        candidate = event_time - Duration(seconds=self._settings.watermark_allowance_s)
        current = estimator.current_watermark()
        if current is None or candidate > current:
            estimator.set_watermark(candidate)

    def _report(
        self, spec: _PartitionSpec, reader: _PartitionReader, claimed: int, took: float
    ) -> None:
        if claimed:
            self._read.inc(claimed)
            self._read_by_topic[spec.topic].inc(claimed)
        high = reader.high_watermark()
        if high is not None:
            name = f"kafka_lag_{spec.topic}_{spec.partition}"
            Metrics.gauge(METRICS_NAMESPACE, name).set(
                max(0, high - reader.next_offset)
            )
        logger.debug(
            "Kafka %s[%d]: %d records up to offset %d in %.3fs",
            spec.topic,
            spec.partition,
            claimed,
            reader.next_offset,
            took,
        )

    def _commit(self, topic: str, partition: int, offset: int) -> None:
        """Bundle-finalization callback: commits ``offset`` asynchronously; never raises."""
        reader = self._readers.get((topic, partition))
        if reader is None:
            logger.info(
                "Kafka %s[%d]: reader closed, commit of %d skipped",
                topic,
                partition,
                offset,
            )
            return
        try:
            reader.consumer.commit(
                offsets=[TopicPartition(topic, partition, offset)], asynchronous=True
            )
        except (KafkaException, RuntimeError) as exc:
            logger.warning(
                "Kafka %s[%d]: commit of offset %d failed: %s",
                topic,
                partition,
                offset,
                exc,
            )


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
    """:class:`_ReadPartitionFn` marked unbounded, so its output is a streaming PCollection."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        spec: _PartitionSpec,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=_OFFSETS,
        watermark_estimator=_WATERMARK,
    ):
        yield from super().process(spec, bundle_finalizer, tracker, watermark_estimator)


def _millis(msg) -> int:
    """The message timestamp in ms since the epoch; wall time when the broker has none."""
    kind, millis = msg.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0:
        return int(time.time() * 1000)
    return millis


class ReadFromKafka(beam.PTransform):
    """Reads topics as :class:`KafkaRecord`, timestamped with the Kafka message timestamp.

    Args:
        bootstrap_servers: ``host:port[,host:port]``.
        topics: a topic name or a list of them; all their partitions are read.
        group_id: the consumer group whose committed offsets start the read and receive commits.
        start: ``committed`` (the group's offset; else earliest), ``earliest`` or ``latest``.
        bounded: read up to each partition's end offset as of job start, then finish
            (DirectRunner, tests, backfills). Otherwise read forever (a streaming PCollection).
        max_records: stop after about this many records: shared over partitions at job start
            by :func:`allocate_max_records`; exact when each partition holds its share
            (gaps from compaction or transaction markers make it fewer).
        consumer_config: librdkafka settings that override the defaults.
        poll_timeout_s: longest wait for one fetch.
        max_batch: most records read by one bundle before it checkpoints.
        max_bundle_s: longest a bundle reads before it checkpoints.
        idle_resume_s: how long a caught-up partition waits before polling again.
        watermark_allowance_s: how far the watermark trails the newest record timestamp (and
            wall time, when a partition is caught up); later records count as late.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: str | Sequence[str],
        group_id: str,
        start: str = "committed",
        bounded: bool = False,
        max_records: int | None = None,
        consumer_config: dict | None = None,
        poll_timeout_s: float = 0.2,
        max_batch: int = 10_000,
        max_bundle_s: float = 1.0,
        idle_resume_s: float = 0.5,
        watermark_allowance_s: float = 2.0,
    ):
        super().__init__()
        topics = (topics,) if isinstance(topics, str) else tuple(topics)
        if not bootstrap_servers:
            raise ValueError("ReadFromKafka: bootstrap_servers is empty")
        if not topics or not all(topics):
            raise ValueError(
                f"ReadFromKafka: topics must be non-empty names, got {topics!r}"
            )
        if not group_id:
            raise ValueError("ReadFromKafka: group_id is empty")
        if start not in STARTS:
            raise ValueError(
                f"ReadFromKafka: start must be one of {STARTS}, got {start!r}"
            )
        if max_records is not None and max_records < 1:
            raise ValueError(
                f"ReadFromKafka: max_records must be >= 1, got {max_records!r}"
            )
        if max_batch < 1 or poll_timeout_s <= 0 or max_bundle_s <= 0:
            raise ValueError(
                "ReadFromKafka: max_batch, poll_timeout_s and max_bundle_s must be > 0"
            )
        self._settings = _ReadSettings(
            bootstrap_servers=bootstrap_servers,
            topics=topics,
            group_id=group_id,
            start=start,
            bounded=bounded,
            max_records=max_records,
            consumer_config=tuple((consumer_config or {}).items()),
            poll_timeout_s=poll_timeout_s,
            max_batch=max_batch,
            max_bundle_s=max_bundle_s,
            idle_resume_s=idle_resume_s,
            watermark_allowance_s=watermark_allowance_s,
        )

    def expand(self, pbegin):
        read_fn = (
            _ReadPartitionFn if self._settings.bounded else _ReadUnboundedPartitionFn
        )
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "DiscoverPartitions" >> beam.ParDo(_DiscoverPartitionsFn(self._settings))
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadPartitions"
            >> beam.ParDo(read_fn(self._settings)).with_output_types(KafkaRecord)
        )
