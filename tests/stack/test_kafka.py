"""Kafka from the local stack: the project's topics exist and a message makes a round trip."""

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from stack import kafka

TIMEOUT_S = 30


def test_project_topics_exist_with_their_partitions(kafka_bootstrap):
    topics = (
        AdminClient({"bootstrap.servers": kafka_bootstrap})
        .list_topics(timeout=10)
        .topics
    )

    for name, partitions in kafka.TOPICS.items():
        assert name in topics
        assert len(topics[name].partitions) == partitions


def test_produce_consume_round_trip(kafka_bootstrap):
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics({topic: 2}, kafka_bootstrap)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"acc-1", value=b'{"amount": 12.5}')
    assert producer.flush(TIMEOUT_S) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        received, deadline = None, time.monotonic() + TIMEOUT_S
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received = message
    finally:
        consumer.close()

    assert received is not None, f"nothing consumed from {topic} within {TIMEOUT_S} s"
    assert (received.key(), received.value()) == (b"acc-1", b'{"amount": 12.5}')
