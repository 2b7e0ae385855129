"""Kafka from the local stack: the project's topics exist and a message makes a round trip."""

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import stack
from stack import kafka
from validator.process import free_port

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


def _cleanup_policies(bootstrap: str, topics: list[str]) -> dict[str, str]:
    """``cleanup.policy`` of each topic, as the broker describes it."""
    from confluent_kafka.admin import ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    )
    return {
        resource.name: future.result(TIMEOUT_S)["cleanup.policy"].value
        for resource, future in futures.items()
    }


def test_project_sink_topics_are_compacted(kafka_bootstrap):
    """Dead letters, results and users: the broker keeps the latest record per key."""
    kafka.ensure_topics(bootstrap=kafka_bootstrap)  # what every `stack up` does
    policies = _cleanup_policies(kafka_bootstrap, list(kafka.TOPICS))
    assert {name: policies[name] for name in kafka.SINK_TOPICS} == dict.fromkeys(
        kafka.SINK_TOPICS, "compact"
    )
    # The inputs keep every record: a transaction is never replaced by a later one.
    assert policies["transactions"] == policies["accounts"] == "delete"


def test_configs_are_set_at_creation_and_on_an_existing_topic(kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    fresh, older = f"stack-compact-new-{tag}", f"stack-compact-old-{tag}"
    kafka.ensure_topics({older: 1}, kafka_bootstrap)  # created without configs
    assert _cleanup_policies(kafka_bootstrap, [older]) == {older: "delete"}

    kafka.ensure_topics(
        {fresh: 2, older: 1},
        kafka_bootstrap,
        configs={fresh: kafka.COMPACTED, older: kafka.COMPACTED},
    )
    assert _cleanup_policies(kafka_bootstrap, [fresh, older]) == {
        fresh: "compact",
        older: "compact",
    }
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert (len(topics[fresh].partitions), len(topics[older].partitions)) == (2, 1)


def test_a_new_broker_is_up_only_once_consumer_groups_can_read_and_commit(
    tmp_path, monkeypatch
):
    """On a new broker the first group lookup creates the groups' offsets topic, and until
    its coordinator has loaded it offset reads and commits fail (NOT_COORDINATOR): `up`
    returns only after that, so nothing started next sees the error."""
    monkeypatch.setenv("RISKPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RISKPIPE_KAFKA_PORT", str(free_port()))
    monkeypatch.setenv("RISKPIPE_KAFKA_CONTROLLER_PORT", str(free_port()))
    try:
        stack.up(["kafka"])
        address = stack.SERVICES["kafka"].address
        consumer = Consumer({"bootstrap.servers": address, "group.id": "first-group"})
        try:
            found = consumer.committed([TopicPartition("transactions", 0)], timeout=10)
            assert [tp.error for tp in found] == [None]
            done = consumer.commit(
                offsets=[TopicPartition("transactions", 0, 0)], asynchronous=False
            )
            assert [tp.error for tp in done] == [None]
        finally:
            consumer.close()
    finally:
        stack.down(["kafka"])
