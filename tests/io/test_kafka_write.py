"""WriteToKafka and WriteDeadLetters against the local broker."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline

from pipeline.io.kafka import (
    WriteDeadLetters,
    WriteToKafka,
    dead_letter_key,
)
from pipeline.records import DeadLetter

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
    assert set(read_back) == {b"transactions/3/17", b"accounts/0/5", b"JoinAccounts"}


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
