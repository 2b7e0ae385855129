"""Commits the reader's offsets so that a partition's committed offset never moves backwards
within one run of the job.

Why this is not a plain ``consumer.commit()`` per finalized bundle: after a checkpoint the
Flink runner finalizes every bundle since the previous one at once, and those bundles ran on
whichever SDK worker process was free (``--sdk_worker_parallelism``), each with its own
consumer. Their commits race, and an older bundle's commit can land last: on 2026-12-02 a
partition committed 25,954, then 10,000, then 20,000 after a backlog, and stayed there.

So every process has one :class:`OffsetCommitter` per consumer group, and a finalized bundle
only *asks* it for an offset (:meth:`OffsetCommitter.want`). Its thread keeps, per partition,
the highest offset asked for; it reads the group's committed offsets and commits where they
are lower — also when another process's older commit landed after this one's, which the next
check (a second later) repairs. The committed offset thus converges to the highest finalized
offset of any process. Each commit carries the run's id as its metadata: a later run of the
job (a new submission, e.g. from an older savepoint or with ``--start_offset=earliest``)
commits its own offsets even when they are lower than the previous run's.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import ClassVar

from confluent_kafka import KafkaException, TopicPartition

from pipeline.io.kafka.config import METADATA_TIMEOUT_S, ReadSettings

__all__ = ["CHECK_INTERVAL_S", "FLUSH_ATTEMPTS", "SETTLE_CHECKS", "OffsetCommitter"]

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
# After the last offset asked for, the group's offsets are checked this many more times
# (a second apart) before the thread rests: time for other processes' commits to land.
SETTLE_CHECKS = 5
# A flush (teardown, exit) tries this many times, a check interval apart, while the broker
# answers with an error (a group coordinator that is loading or moving).
FLUSH_ATTEMPTS = 3


class OffsetCommitter:
    """The process's committer for one consumer group and run (see the module's text)."""

    _instances: ClassVar[dict[tuple[str, str, str], OffsetCommitter]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, settings: ReadSettings) -> OffsetCommitter:
        """The committer of ``settings``' group and run in this process (made on first use)."""
        key = (settings.bootstrap_servers, settings.group_id, settings.run_id)
        with cls._instances_lock:
            committer = cls._instances.get(key)
            if committer is None:
                committer = cls._instances[key] = cls(settings)
            return committer

    def __init__(self, settings: ReadSettings):
        self._settings = settings
        self._run_id = settings.run_id
        self._consumer = None
        self._lock = threading.Lock()  # guards _wanted and _checks_left
        self._sync_lock = threading.Lock()  # one sync (read, then commit) at a time
        self._wanted: dict[tuple[str, int], int] = {}
        # What this committer last saw the group hold, or committed itself, per partition.
        self._confirmed: dict[tuple[str, int], int] = {}
        self._checks_left = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def want(self, topic: str, partition: int, offset: int) -> None:
        """Asks for ``offset`` (the next offset to read) to be committed; never blocks."""
        with self._lock:
            key = (topic, partition)
            if offset <= self._wanted.get(key, -1):
                return  # an older bundle finalized after a newer one
            self._wanted[key] = offset
            self._checks_left = SETTLE_CHECKS + 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"kafka-commit-{self._settings.group_id}", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush)
        self._wake.set()

    def flush(self) -> None:
        """Commits what is asked for and not yet committed, in the caller's thread
        (teardown, exit)."""
        for attempt in range(FLUSH_ATTEMPTS):
            if attempt:
                time.sleep(CHECK_INTERVAL_S)
            if self._check(only_new=True):
                return

    def _check(self, only_new: bool = False) -> bool:
        """One sync; False (logged) when the broker answered with an error."""
        try:
            self._sync(only_new)
            return True
        except (KafkaException, RuntimeError) as exc:
            logger.warning("Kafka: committing offsets of group %s failed: %s",
                           self._settings.group_id, exc)
            return False

    def wanted(self) -> dict[tuple[str, int], int]:
        """The offsets asked for so far, per (topic, partition)."""
        with self._lock:
            return dict(self._wanted)

    def _run(self) -> None:
        while True:
            self._wake.wait(CHECK_INTERVAL_S)
            self._wake.clear()
            with self._lock:
                if self._checks_left <= 0:
                    continue
            if self._check():  # a failed check is tried again a second later
                with self._lock:
                    self._checks_left -= 1

    def _sync(self, only_new: bool = False) -> None:
        """Reads the group's offsets of the wanted partitions; commits those that are lower
        (or were committed by another run). ``only_new``: only if something asked for is not
        confirmed yet."""
        with self._sync_lock:
            wanted = self.wanted()
            if not wanted or (only_new and wanted == self._confirmed):
                return
            if self._consumer is None:
                self._consumer = self._settings.new_consumer(client_id="riskpipe-committer")
            current = self._consumer.committed(
                [TopicPartition(topic, partition) for topic, partition in wanted],
                timeout=METADATA_TIMEOUT_S,
            )
            behind = []
            for tp in current:
                key = (tp.topic, tp.partition)
                if tp.metadata != self._run_id or tp.offset < wanted[key]:
                    behind.append(TopicPartition(tp.topic, tp.partition, wanted[key],
                                                 metadata=self._run_id))
                else:
                    self._confirmed[key] = wanted[key]
            if not behind:
                return
            for tp in self._consumer.commit(offsets=behind, asynchronous=False):
                if tp.error is not None:
                    logger.warning("Kafka: commit of %s[%d] at %d failed: %s",
                                   tp.topic, tp.partition, tp.offset, tp.error)
                else:
                    self._confirmed[(tp.topic, tp.partition)] = tp.offset
            logger.debug("Kafka: committed %d partition(s) of group %s",
                         len(behind), self._settings.group_id)
