"""Reads Kafka topics into Beam as :class:`~pipeline.records.KafkaRecord` (usage: the package).

Partition discovery is in ``discovery.py`` and the read's settings in ``config.py``; this
module holds the splittable DoFn that reads one partition's offset range.

Impulse → ``DiscoverPartitionsFn`` (one ``PartitionSpec`` per topic-partition, with the
start offset and, in bounded mode, the end offset fixed once at job start) → Reshuffle (so a
runner spreads partitions over its workers) → ``_ReadPartitionFn``, a splittable DoFn whose
restriction is the partition's ``OffsetRange``. The restriction is the only state that must
survive a restart: a runner checkpoints it, and a job started afresh resumes from the offsets
committed to the consumer group.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import ClassVar

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    TopicPartition,
)

from pipeline import metrics
from pipeline.io.kafka.commit import OffsetCommitter
from pipeline.io.kafka.config import (
    FETCH_CHUNK,
    STARTS,
    UNBOUNDED_END,
    KafkaIOError,
    PartitionSpec,
    ReadSettings,
)
from pipeline.io.kafka.discovery import DiscoverPartitionsFn
from pipeline.records import KafkaRecord

__all__ = ["ReadFromKafka", "consume_available"]

logger = logging.getLogger(__name__)

# The reader's input is the Impulse's, in the global window. Its records are emitted as
# WindowedValues in it: Beam would assign each TimestampedValue its window afresh (a
# GlobalWindow built per record, about 2 µs).
_GLOBAL_WINDOWS = (GlobalWindow(),)


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

    def initial_restriction(self, spec: PartitionSpec) -> OffsetRange:
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


def consume_available(consumer: Consumer, max_records: int, timeout_s: float) -> list:
    """Up to ``max_records`` messages: what the consumer has prefetched, waiting up to
    ``timeout_s`` only while it has none. (``consume(n, timeout)`` itself waits for all ``n``
    or the whole timeout, at the end of the input too.)"""
    batch = consumer.consume(max_records, timeout=0)
    if not batch:
        batch = consumer.consume(1, timeout=timeout_s)
        if batch and max_records > 1:
            batch += consumer.consume(max_records - 1, timeout=0)
    return batch


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
        batch = consume_available(self.consumer, max_records, timeout_s)
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

    def close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            logger.warning("Closing the consumer of %s failed", self.tp, exc_info=True)


class _ReaderPool:
    """This process's idle partition readers for one read's settings.

    Beam keeps a bundle's DoFn instances until the runner finalizes the bundle (on Flink,
    after the next checkpoint, up to ``--checkpointing_interval`` later), and a bundle that
    starts meanwhile gets instances of its own. With a consumer per DoFn instance and
    partition, an SDK worker held a consumer per partition for every bundle of a checkpoint
    interval, each fetching its partition in the background (149 consumers in one worker,
    and Kafka serving every record to each of them; ``docs/flink-notes.md``). A bundle now
    takes a reader of its partition from here and gives it back when its ``process`` ends,
    so a process holds about one consumer per partition it reads.
    """

    _pools: ClassVar[dict[ReadSettings, _ReaderPool]] = {}
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: ReadSettings):
        self._settings = settings
        self._idle: dict[tuple[str, int], list[_PartitionReader]] = {}
        self._users = 0

    @classmethod
    def join(cls, settings: ReadSettings) -> _ReaderPool:
        """The pool of ``settings`` (made on first use); a DoFn's ``setup`` joins it."""
        with cls._pools_lock:
            pool = cls._pools.get(settings)
            if pool is None:
                pool = cls._pools[settings] = cls(settings)
            pool._users += 1
            return pool

    def leave(self) -> None:
        """A DoFn's ``teardown``: the last one out closes the idle consumers."""
        with self._pools_lock:
            self._users -= 1
            if self._users > 0:
                return
            self._pools.pop(self._settings, None)
            readers = [r for idle in self._idle.values() for r in idle]
            self._idle = {}
        logger.debug("Kafka: closing %d consumers", len(readers))
        for reader in readers:
            reader.close()

    def take(self, spec: PartitionSpec, offset: int) -> _PartitionReader:
        """An idle reader of the partition, moved to ``offset``, or a new one."""
        with self._pools_lock:
            idle = self._idle.get((spec.topic, spec.partition))
            reader = idle.pop() if idle else None
        if reader is None:
            return _PartitionReader(
                self._settings.new_consumer(), spec.topic, spec.partition, offset
            )
        reader.seek(offset)
        return reader

    def give_back(self, reader: _PartitionReader) -> None:
        with self._pools_lock:
            if self._users > 0:
                self._idle.setdefault((reader.tp.topic, reader.tp.partition), []).append(reader)
                return
        reader.close()  # every user has left meanwhile


class _ReadPartitionFn(beam.DoFn):
    """Reads one topic-partition's offset range; self-checkpoints every bundle.

    A bundle reads at most ``max_batch`` records or for ``max_bundle_s``, then defers the rest
    of the range (at once if behind, after ``idle_resume_s`` if caught up), so a runner that
    never splits a Python SDF (Flink) still checkpoints. An unbounded read also defers as
    soon as it has read up to the partition's end: records then leave with this bundle,
    not after ``max_bundle_s`` of waiting for more. The watermark follows record
    timestamps; a caught-up partition moves it to now − ``watermark_allowance_s``. A finalized
    bundle commits its last offset + 1 to the consumer group.
    """

    def __init__(self, settings: ReadSettings):
        self._settings = settings
        self._pool: _ReaderPool | None = None

    def setup(self):
        self._pool = _ReaderPool.join(self._settings)
        self._read = metrics.counter("kafka_records_read")
        self._read_by_topic = {
            t: metrics.counter(f"kafka_records_read_{self._settings.metric_label(t)}")
            for t in self._settings.topics
        }

    def teardown(self):
        OffsetCommitter.of(self._settings).flush()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.leave()

    def process(
        self,
        spec: PartitionSpec,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=_OFFSETS,
        watermark_estimator=_WATERMARK,
    ):
        restriction = tracker.current_restriction()
        if restriction.start >= restriction.stop:
            return
        started = time.monotonic()
        reader = self._pool.take(spec, restriction.start)
        try:
            claimed, last_offset = yield from self._read_range(
                reader, restriction, tracker, watermark_estimator, started
            )
            self._report(spec, reader, claimed, time.monotonic() - started)
        except GeneratorExit:  # the runner stopped reading this bundle's output
            self._pool.give_back(reader)
            raise
        except BaseException:
            reader.close()  # its consumer may be what failed
            raise
        self._pool.give_back(reader)
        if last_offset is not None:
            commit = functools.partial(
                self._commit, spec.topic, spec.partition, last_offset + 1
            )
            bundle_finalizer.register(commit)

    def _read_range(self, reader, restriction, tracker, watermark_estimator, started):
        """Emits the range's records until the bundle should end (the class's text);
        returns how many it claimed and the last one's offset."""
        deadline = started + self._settings.max_bundle_s
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
            if not self._settings.bounded and self._caught_up(reader):
                # Hand what was read on now and resume at once: waiting here for the next
                # record would hold this bundle's output (and the partitions after this
                # one in the runner's bundle) for up to max_bundle_s.
                self._advance_watermark(watermark_estimator, Timestamp.now())
                tracker.defer_remainder()
                break
        return claimed, last_offset

    def _claim(self, batch, tracker, watermark_estimator):
        """Claims and emits ``batch`` in order, then moves the watermark to its newest
        timestamp; returns how many were emitted (fewer if the range ends inside it).

        A batch that lies wholly inside the range is claimed once, by its last offset (a
        claim covers every offset up to it); one that crosses the range's end is claimed
        record by record, up to the end.
        """
        if batch[-1].offset() < tracker.current_restriction().stop:
            claimed = batch if tracker.try_claim(batch[-1].offset()) else []
        else:
            claimed = []
            for msg in batch:
                if not tracker.try_claim(msg.offset()):
                    break
                claimed.append(msg)
        newest = None
        for msg in claimed:
            millis = _millis(msg)
            if newest is None or millis > newest:
                newest = millis
            record = KafkaRecord(
                msg.topic(), msg.partition(), msg.offset(), millis, msg.key(), msg.value()
            )
            yield windowed_value.create(record, millis * 1000, _GLOBAL_WINDOWS)
        if newest is not None:
            self._advance_watermark(watermark_estimator, Timestamp(micros=newest * 1000))
        return len(claimed)

    @staticmethod
    def _caught_up(reader: _PartitionReader) -> bool:
        """True when the reader is at the partition's end offset as of its last fetch."""
        high = reader.high_watermark()
        return high is not None and reader.next_offset >= high

    def _keep_polling(
        self, reader, restriction, tracker, watermark_estimator, deadline
    ) -> bool:
        """After an empty fetch: finishes the range, or defers it, or says to poll again.

        Only a bounded read polls again (its records are known to exist); an unbounded one
        defers, so one quiet partition never holds up the output of a runner's bundle.
        """
        position = reader.position()
        high = reader.high_watermark()
        if position >= restriction.stop:
            tracker.try_claim(restriction.stop)  # past the end: the range is done
        elif high is not None and position >= high:
            self._advance_watermark(watermark_estimator, Timestamp.now())
            tracker.defer_remainder(Duration(seconds=self._settings.idle_resume_s))
        elif self._settings.bounded and time.monotonic() < deadline:
            return True
        else:
            tracker.defer_remainder()
        return False

    def _advance_watermark(self, estimator, event_time: Timestamp) -> None:
        candidate = event_time - Duration(seconds=self._settings.watermark_allowance_s)
        current = estimator.current_watermark()
        if current is None or candidate > current:
            estimator.set_watermark(candidate)

    def _report(
        self, spec: PartitionSpec, reader: _PartitionReader, claimed: int, took: float
    ) -> None:
        if claimed:
            self._read.inc(claimed)
            self._read_by_topic[spec.topic].inc(claimed)
        high = reader.high_watermark()
        if high is not None:
            label = self._settings.metric_label(spec.topic)
            name = f"kafka_lag_{label}_p{spec.partition}"
            metrics.gauge(name).set(
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
        """Bundle-finalization callback: asks the process's committer for ``offset``."""
        OffsetCommitter.of(self._settings).want(topic, partition, offset)


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
    """:class:`_ReadPartitionFn` marked unbounded, so its output is a streaming PCollection."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        spec: PartitionSpec,
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
        metrics_name: the name in this read's metrics, ``kafka_records_read_<name>`` and
            ``kafka_lag_<name>_p<partition>``, so dashboards need not know topic names
            (e.g. ``transactions``); default: the topic, other characters than letters,
            digits and ``_`` replaced by ``_``. Give it only to a read of one topic.
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
        metrics_name: str | None = None,
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
        if metrics_name is not None and (
            len(topics) != 1 or not re.fullmatch(r"[A-Za-z0-9_]+", metrics_name)
        ):
            raise ValueError(
                "ReadFromKafka: metrics_name needs one topic and letters, digits or _ only, "
                f"got {metrics_name!r} for {topics!r}"
            )
        if max_batch < 1 or poll_timeout_s <= 0 or max_bundle_s <= 0:
            raise ValueError(
                "ReadFromKafka: max_batch, poll_timeout_s and max_bundle_s must be > 0"
            )
        self._settings = ReadSettings(
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
            metrics_name=metrics_name or "",
            run_id=uuid.uuid4().hex,
        )
        self._first: beam.PCollection | None = None

    def after(self, first: beam.PCollection) -> "ReadFromKafka":
        """This read, held until ``first`` is complete; a bounded read only.

        The end offsets are still those at job start; only the reading waits. A bounded
        job reads the accounts topic before the transactions topic this way.
        """
        if not self._settings.bounded:
            raise ValueError("ReadFromKafka.after: only a bounded read can wait for another")
        read = copy.copy(self)
        read._first = first
        return read

    def expand(self, pbegin):
        read_fn = (
            _ReadPartitionFn if self._settings.bounded else _ReadUnboundedPartitionFn
        )
        specs = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "DiscoverPartitions" >> beam.ParDo(DiscoverPartitionsFn(self._settings))
        )
        if self._first is not None:
            # A side input is complete before any element sees it: no spec leaves before.
            done = self._first | "CountFirst" >> beam.combiners.Count.Globally()
            specs = specs | "WaitForFirst" >> beam.Map(
                lambda spec, _: spec, beam.pvalue.AsSingleton(done)
            )
        return (
            specs
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadPartitions"
            >> beam.ParDo(read_fn(self._settings)).with_output_types(KafkaRecord)
        )
