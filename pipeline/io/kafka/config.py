"""The settings a Kafka read and write share: client config, read settings, errors.

Used by ``read.py`` (the splittable reader), ``discovery.py`` (where each partition's read
starts and ends) and ``write.py`` (the producer); the package's public face is
``pipeline.io.kafka``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Sequence
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException

__all__ = [
    "FETCH_CHUNK",
    "METADATA_TIMEOUT_S",
    "STARTS",
    "UNBOUNDED_END",
    "KafkaIOError",
    "PartitionSpec",
    "ReadSettings",
    "allocate_max_records",
    "client_config",
    "log_commit_result",
    "retry_transient",
]

logger = logging.getLogger(__name__)

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


def retry_transient(call, timeout_s: float = METADATA_TIMEOUT_S):
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
class ReadSettings:
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
    # Set when the read is built, so one submission's workers share it (also after a
    # failover); commits carry it (commit.py).
    run_id: str = ""

    def metric_label(self, topic: str) -> str:
        """The name a topic's metrics carry: ``metrics_name``, else the topic made safe."""
        return self.metrics_name or re.sub(r"[^A-Za-z0-9_]", "_", topic)

    def new_consumer(self, client_id: str = "riskpipe-reader") -> Consumer:
        """A consumer in the group that never subscribes (partitions are assigned)."""
        config = client_config(
            self.bootstrap_servers,
            dict(self.consumer_config),
            group_id=self.group_id,
            enable_auto_commit=False,
            enable_auto_offset_store=False,
            auto_offset_reset="earliest",
            enable_partition_eof=False,
            client_id=client_id,
        )
        config.setdefault("on_commit", log_commit_result)
        return Consumer(config)


class PartitionSpec(NamedTuple):
    """One topic-partition to read, from ``start_offset`` to ``stop_offset`` (exclusive)."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int


def log_commit_result(error, partitions) -> None:
    if error is not None:
        logger.warning("Kafka offset commit failed: %s (%s)", error, partitions)
    else:
        for tp in partitions:
            if tp.error is not None:
                logger.warning("Kafka offset commit failed for %s: %s", tp, tp.error)


