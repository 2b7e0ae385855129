"""Fixtures for the Kafka IO tests: the local broker, fresh topics, a producer and a reader."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

import stack
from stack.kafka import ensure_topics

# What a broker answers while a group's coordinator is loading or moving: try again.
COORDINATOR_ERRORS = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._WAIT_COORD,
}


@pytest.fixture(scope="session")
def kafka_broker(request) -> str:
    """The broker: the suite-wide ``kafka_bootstrap`` fixture if there is one, else the stack's."""
    try:
        return request.getfixturevalue("kafka_bootstrap")
    except pytest.FixtureLookupError:
        return stack.up(["kafka"])["kafka"]["bootstrap_servers"]


@pytest.fixture
def kafka_topic(kafka_broker):
    """Factory: creates a uniquely named topic and returns its name."""

    def create(partitions: int = 4, prefix: str = "test-io") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        ensure_topics({name: partitions}, bootstrap=kafka_broker)
        return name

    return create


@pytest.fixture
def kafka_produce(kafka_broker):
    """Factory: writes ``(partition, key, value)`` triples and waits for every ack."""

    def send(topic: str, messages: list[tuple[int, bytes, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": kafka_broker, "linger.ms": 5})
        for partition, key, value in messages:
            producer.produce(topic, key=key, value=value, partition=partition)
        assert producer.flush(30) == 0

    return send


@pytest.fixture
def kafka_consume_all(kafka_broker):
    """Factory: every message now in ``topic``, as ``(partition, key, value)``, via a plain consumer."""

    def read(
        topic: str, partitions: int = 4, timeout_s: float = 30.0
    ) -> list[tuple[int, bytes, bytes]]:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_broker,
                "group.id": f"check-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        try:
            tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
            ends = {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in tps
            }
            consumer.assign(tps)
            out, wanted = [], sum(ends.values())
            while len(out) < wanted:
                msg = consumer.poll(timeout_s)
                assert msg is not None, (
                    f"timed out with {len(out)} of {wanted} messages"
                )
                assert msg.error() is None, msg.error()
                out.append((msg.partition(), msg.key(), msg.value()))
            return out
        finally:
            consumer.close()

    return read


@pytest.fixture
def kafka_committed(kafka_broker):
    """Factory: the group's committed offset per partition of ``topic`` (negative when none)."""

    def offsets(group_id: str, topic: str, partitions: int = 4) -> dict[int, int]:
        consumer = Consumer(
            {"bootstrap.servers": kafka_broker, "group.id": group_id}
        )
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    found = consumer.committed(tps, timeout=10)
                    return {tp.partition: tp.offset for tp in found}
                except KafkaException as exc:  # a group coordinator loading or moving
                    if exc.args[0].code() not in COORDINATOR_ERRORS or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            consumer.close()

    return offsets
