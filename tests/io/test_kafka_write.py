"""WriteToKafka and WriteDeadLetters against the local broker."""

from __future__ import annotations

import json
import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.io.kafka import (
    WriteDeadLetters,
    WriteToKafka,
    dead_letter_key,
)
from pipeline.records import DeadLetter
from stack.kafka import COMPACTED, ensure_topics

RUNNER = "FnApiRunner"


def test_write_to_kafka_writes_every_record_with_its_key(
    kafka_broker, kafka_topic, kafka_consume_all
):
    topic = kafka_topic(partitions=4)
    rows = [{"account_id": f"a{i % 7}", "n": i} for i in range(300)]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        (
            p
            | beam.Create(rows)
            | WriteToKafka(
                kafka_broker,
                topic,
                key_fn=lambda r: r["account_id"],
                value_fn=lambda r: json.dumps(r),
            )
        )
    read_back = kafka_consume_all(topic)
    assert sorted((k, json.loads(v)["n"]) for _, k, v in read_back) == sorted(
        (r["account_id"].encode(), r["n"]) for r in rows
    )
    # One key, one partition: what per-account ordering downstream relies on.
    partitions_per_key = {}
    for partition, key, _ in read_back:
        partitions_per_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_per_key.values())


def test_write_fails_the_bundle_when_delivery_fails():
    config = {"message.timeout.ms": 500, "socket.connection.setup.timeout.ms": 1000}
    with (
        pytest.raises(
            Exception, match=r"WriteToKafka: 2 records failed .* topic 'nowhere'"
        ),
        test_pipeline.TestPipeline(runner=RUNNER) as p,
    ):
        (
            p
            | beam.Create(["a", "b"])
            | WriteToKafka("127.0.0.1:1", "nowhere", None, lambda s: s, config)
        )


def test_write_dead_letters_as_json_keyed_by_origin(
    kafka_broker, kafka_topic, kafka_consume_all
):
    topic = kafka_topic(partitions=1)
    letters = [
        DeadLetter(
            b'{"amount": "x"',
            "invalid JSON",
            "ParseTransactions",
            "transactions",
            3,
            17,
        ),
        DeadLetter(b"\xff\xfe", "not UTF-8", "ParseAccounts", "accounts", 0, 5),
        DeadLetter(None, "no account", "JoinAccounts"),
    ]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        p | beam.Create(letters) | WriteDeadLetters(kafka_broker, topic)
    read_back = {
        key: json.loads(value)
        for _, key, value in kafka_consume_all(topic, partitions=1)
    }
    assert read_back == {dead_letter_key(d).encode(): d.to_dict() for d in letters}
    assert set(read_back) - {b"transactions/3/17", b"accounts/0/5"} == {
        dead_letter_key(letters[2]).encode()
    }
    assert dead_letter_key(letters[2]).startswith("JoinAccounts/")


def test_dead_letters_without_origin_get_distinct_stable_keys():
    """The dead-letter topic is compacted: two different letters must never share a key."""
    a = DeadLetter(b"one", "no account", "JoinAccounts")
    b = DeadLetter(b"two", "no account", "JoinAccounts")
    c = DeadLetter(b"one", "other reason", "JoinAccounts")
    assert len({dead_letter_key(a), dead_letter_key(b), dead_letter_key(c)}) == 3
    assert dead_letter_key(a) == dead_letter_key(DeadLetter(b"one", "no account", "JoinAccounts"))


def read_topic_to_end(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of partition 0 now, from its first offset (compaction leaves
    gaps in the offsets, so this reads up to the high watermark, not a message count)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
         "enable.auto.commit": False}
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        out = []
        while high > low:
            msg = consumer.poll(10)
            assert msg is not None and msg.error() is None, msg and msg.error()
            out.append((msg.key(), msg.value()))
            if msg.offset() >= high - 1:
                break
        return out
    finally:
        consumer.close()


def test_compaction_keeps_each_dead_letter_once(kafka_broker):
    """Written twice (a replay), on a compacted topic that the broker cleans within seconds:
    once the cleaner has run, the topic holds every dead letter exactly once."""
    topic = f"test-io-compact-{uuid.uuid4().hex[:10]}"
    quick = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
             "min.compaction.lag.ms": "0"}
    ensure_topics({topic: 1}, kafka_broker, configs={topic: {**COMPACTED, **quick}})
    letters = [DeadLetter(b"bad %d" % i, "invalid JSON", "ParseTransactions", "transactions",
                          i % 2, 100 + i) for i in range(20)]
    letters += [DeadLetter(b"x%d" % i, "no account", "JoinAccounts") for i in range(5)]
    for _ in range(2):
        with test_pipeline.TestPipeline(runner=RUNNER) as p:
            p | beam.Create(letters) | WriteDeadLetters(kafka_broker, topic)
    assert len(read_topic_to_end(kafka_broker, topic)) == 2 * len(letters)

    marker = Producer({"bootstrap.servers": kafka_broker})
    deadline = time.monotonic() + 90
    while True:
        # A record in a new segment: the cleaner never touches the active segment.
        marker.produce(topic, key=b"segment-roll", value=b"")
        assert marker.flush(10) == 0
        records = [(k, v) for k, v in read_topic_to_end(kafka_broker, topic)
                   if k != b"segment-roll"]
        if len(records) == len(letters) or time.monotonic() > deadline:
            break
        time.sleep(2)
    keys = [k for k, _ in records]
    assert len(keys) == len(set(keys)) == len(letters), f"{len(records)} records after 90 s"
    assert sorted(json.loads(v)["payload"] for _, v in records) == sorted(
        d.payload.decode() for d in letters
    )


@pytest.mark.parametrize(
    "kwargs", [{"topic": ""}, {"bootstrap_servers": ""}, {"value_fn": None}]
)
def test_bad_parameters_are_refused_at_construction(kwargs):
    args = {
        "bootstrap_servers": "127.0.0.1:9092",
        "topic": "t",
        "key_fn": None,
        "value_fn": str,
    } | kwargs
    with pytest.raises(ValueError, match="WriteToKafka"):
        WriteToKafka(**args)


def test_values_must_be_bytes_or_text():
    from pipeline.io.kafka.write import _as_bytes

    assert _as_bytes("é") == "é".encode()
    assert _as_bytes(None) is None
    with pytest.raises(TypeError, match="bytes, str or None"):
        _as_bytes(3)
