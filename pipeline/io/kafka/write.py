"""Writes a PCollection to a Kafka topic, at least once (usage: the package docstring)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from confluent_kafka import KafkaException, Producer

from pipeline import metrics
from pipeline.io.kafka.config import KafkaIOError, client_config
from pipeline.records import DeadLetter

__all__ = ["WriteDeadLetters", "WriteToKafka"]

logger = logging.getLogger(__name__)

# How long a full local queue (broker down or slow) may block one produce() before the
# bundle fails and is retried.
PRODUCE_TIMEOUT_S = 60.0
# How long finish_bundle waits for the broker to acknowledge a bundle's records.
FLUSH_TIMEOUT_S = 60.0
# Delivery errors quoted in the exception that fails a bundle.
ERRORS_QUOTED = 3

KeyFn = Callable[[Any], "bytes | str | None"]


def _as_bytes(value) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(
        f"WriteToKafka: key_fn/value_fn must return bytes, str or None, got {type(value).__name__}"
    )


class _WriteKafkaFn(beam.DoFn):
    """Produces each element; ``finish_bundle`` waits for every ack and fails the bundle on
    any delivery error, so the runner retries it (at least once; duplicates are possible)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        key_fn: KeyFn | None,
        value_fn: KeyFn,
        producer_config: dict | None,
    ):
        self._config = client_config(
            bootstrap_servers,
            producer_config,
            enable_idempotence=True,
            acks="all",
            linger_ms=20,
            compression_type="lz4",
            client_id="riskpipe-writer",
        )
        self._topic = topic
        self._key_fn = key_fn
        self._value_fn = value_fn
        self._producer: Producer | None = None

    def setup(self):
        self._producer = Producer(self._config)
        self._written = metrics.counter("kafka_records_written")
        self._failed = metrics.counter("kafka_write_errors")

    def start_bundle(self):
        self._delivered = 0
        self._errors: list[str] = []

    def process(self, element):
        key = _as_bytes(self._key_fn(element)) if self._key_fn is not None else None
        value = _as_bytes(self._value_fn(element))
        deadline = time.monotonic() + PRODUCE_TIMEOUT_S
        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                if time.monotonic() > deadline:
                    raise KafkaIOError(
                        f"WriteToKafka: queue for {self._topic!r} full for {PRODUCE_TIMEOUT_S}s"
                    )
                self._producer.poll(0.1)
        self._producer.poll(0)

    def finish_bundle(self):
        pending = self._producer.flush(FLUSH_TIMEOUT_S)
        self._written.inc(self._delivered)
        if pending or self._errors:
            self._failed.inc(len(self._errors) + pending)
            msg = (
                f"WriteToKafka: {len(self._errors)} records failed and {pending} unacknowledged "
                f"after {FLUSH_TIMEOUT_S}s on topic {self._topic!r}; first errors: {self._errors[:ERRORS_QUOTED]}"
            )
            raise KafkaIOError(msg)

    def teardown(self):
        if self._producer is not None:
            try:
                self._producer.flush(10)
            except KafkaException:
                logger.warning(
                    "Flushing the producer for %r failed", self._topic, exc_info=True
                )
            self._producer = None

    def _on_delivery(self, error, msg) -> None:
        # Called from poll()/flush() on the bundle's own thread.
        if error is None:
            self._delivered += 1
        else:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {error}")


class WriteToKafka(beam.PTransform):
    """Writes each element to ``topic`` with the key and value its functions give.

    Args:
        bootstrap_servers: ``host:port[,host:port]``.
        topic: the topic to write to (it must exist unless the broker creates topics).
        key_fn: element -> key (bytes, str or None); None writes unkeyed records.
        value_fn: element -> value (bytes, str or None).
        producer_config: librdkafka settings that override the defaults (idempotent
            producer, ``acks=all``, ``linger.ms=20``, lz4).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        key_fn: KeyFn | None,
        value_fn: KeyFn,
        producer_config: dict | None = None,
    ):
        super().__init__()
        if not bootstrap_servers:
            raise ValueError("WriteToKafka: bootstrap_servers is empty")
        if not topic:
            raise ValueError("WriteToKafka: topic is empty")
        if not callable(value_fn) or (key_fn is not None and not callable(key_fn)):
            raise ValueError(
                "WriteToKafka: key_fn (or None) and value_fn must be callables"
            )
        self._fn = _WriteKafkaFn(
            bootstrap_servers, topic, key_fn, value_fn, producer_config
        )

    def expand(self, pcoll):
        return pcoll | "Produce" >> beam.ParDo(self._fn)


def dead_letter_key(dead: DeadLetter) -> str:
    """``topic/partition/offset`` of the record's origin; without an origin, the step that
    rejected it and a digest of the reason and payload.

    The dead-letter topic is compacted (the broker keeps the latest record per key), so the
    key must identify the dead letter: a replay re-sends the same key, two different dead
    letters never share one.

    >>> dead_letter_key(DeadLetter(b"x", "bad json", "Parse", "transactions", 2, 41))
    'transactions/2/41'
    >>> dead_letter_key(DeadLetter(b"x", "no account", "Join"))
    'Join/54dbec4eaf1b4b0d7c32d846f291d29a'
    """
    if dead.topic is not None and dead.offset is not None:
        return f"{dead.topic}/{dead.partition}/{dead.offset}"
    digest = hashlib.sha256(dead.reason.encode("utf-8") + b"\0" + (dead.payload or b""))
    return f"{dead.step}/{digest.hexdigest()[:32]}"


def dead_letter_value(dead: DeadLetter) -> bytes:
    """The JSON form of :meth:`DeadLetter.to_dict`."""
    return json.dumps(dead.to_dict(), separators=(",", ":"), sort_keys=True).encode(
        "utf-8"
    )


class WriteDeadLetters(beam.PTransform):
    """Writes :class:`DeadLetter` records as JSON, keyed by :func:`dead_letter_key`."""

    def __init__(
        self, bootstrap_servers: str, topic: str, producer_config: dict | None = None
    ):
        super().__init__()
        self._write = WriteToKafka(
            bootstrap_servers,
            topic,
            dead_letter_key,
            dead_letter_value,
            producer_config,
        )

    def expand(self, pcoll):
        return pcoll | "WriteDeadLetters" >> self._write
