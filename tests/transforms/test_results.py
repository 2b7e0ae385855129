"""Fraud results: the documents, the user lookup in Postgres, and the full fan-out replayed.

The end-to-end test writes to the real Kafka, MongoDB and S3 of the local stack twice with
the same input and checks that the second run changes nothing.
"""

from __future__ import annotations

import json
import uuid

import apache_beam as beam
import boto3
import psycopg2
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from confluent_kafka import Consumer, TopicPartition
from pymongo import MongoClient

from pipeline.io.postgres import lookup_factory
from pipeline.records import Account, AttributedTransaction
from pipeline.transforms.results import WriteFraudResults, fraud_result, user_document
from stack.kafka import COMPACTED, ensure_topics

from factories import T0, account, transaction
from .pipelines import batch_pipeline


@pytest.fixture(scope="module")
def mongo_uri(stack_up) -> str:
    endpoints = stack_up("mongo")["mongo"]
    return endpoints.get("uri") or "mongodb://127.0.0.1:27017"


@pytest.fixture
def accounts(postgres_dsn):
    """Two accounts with unique ids in banking.accounts; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    rows = [
        account(
            account_id=f"s-{tag}",
            account_name="Ada Lovelace",
            email="ada@example.com",
            address="1 Analytical St",
            bank="Bank A",
            bank_account="DE01",
        ),
        account(
            account_id=f"r-{tag}",
            account_name="Bo Receiver",
            email="bo@example.com",
            address="2 Engine Rd",
            bank="Bank B",
            bank_account="FR02",
        ),
    ]
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cursor:
        for a in rows:
            cursor.execute(
                "INSERT INTO banking.accounts (account_id, account_name, email, address, bank,"
                " bank_account, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    a.account_id,
                    a.account_name,
                    a.email,
                    a.address,
                    a.bank,
                    a.bank_account,
                    a.created_at,
                ),
            )
    yield rows
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cursor:
        cursor.execute(
            "DELETE FROM banking.accounts WHERE account_id = ANY(%s)",
            ([a.account_id for a in rows],),
        )


def fraudulent(tx_id: str, sender: str, receiver: str | None) -> AttributedTransaction:
    return AttributedTransaction(
        transaction(
            transaction_id=tx_id,
            account_id=sender,
            counterparty_account_id=receiver,
            evaluation="fraudulent",
        ),
        "Ada Lovelace",
        90,
        ("large_amount",),
        True,
        "bank",
    )


def test_fraud_result_carries_sender_and_receiver_ids():
    doc = fraud_result(fraudulent("t1", "a1", "a2"))
    assert (doc["transaction_id"], doc["sender_id"], doc["receiver_id"]) == ("t1", "a1", "a2")
    assert doc["is_fraudulent"] is True and doc["validated_by"] == "bank"
    json.dumps(doc)  # JSON-ready


def test_user_document_of_a_known_and_an_unknown_account():
    known = user_document("a1", Account("a1", "Ann", email="ann@x", balance=5.0))
    assert known["account_name"] == "Ann" and "balance" not in known
    assert user_document("zz", None) == {"account_id": "zz", "id": "zz"}


def test_users_are_looked_up_in_postgres(postgres_dsn, accounts):
    from pipeline.transforms.results import _UsersFn

    sender, receiver = accounts
    records = [
        fraudulent("t1", sender.account_id, receiver.account_id),
        fraudulent("t2", sender.account_id, "nobody"),
    ]
    pipeline = batch_pipeline()
    users = pipeline | beam.Create(records) | beam.ParDo(_UsersFn(lookup_factory(postgres_dsn)))
    occurred = records[0].transaction.datetime_occurred
    # Each user document carries the event time of the transaction involving the user.
    assert_that(
        users | beam.MapTuple(lambda at, u: (at, u["account_id"], u.get("email"))),
        equal_to(
            [
                (occurred, sender.account_id, sender.email),
                (occurred, receiver.account_id, receiver.email),
                (records[1].transaction.datetime_occurred, sender.account_id, sender.email),
                (records[1].transaction.datetime_occurred, "nobody", None),
            ]
        ),
    )
    pipeline.run().wait_until_finish()


def test_replay_changes_nothing(stack_up, postgres_dsn, mongo_uri, s3_config, accounts):
    bootstrap = stack_up("kafka")["kafka"]["bootstrap_servers"]
    tag = uuid.uuid4().hex[:8]
    topics = {"fraud": f"test-fraud-{tag}", "users": f"test-users-{tag}"}
    ensure_topics({t: 1 for t in topics.values()}, bootstrap=bootstrap,
                  configs={t: COMPACTED for t in topics.values()})
    db_name = f"test_results_{tag}"
    sender, receiver = accounts
    records = [fraudulent(f"t{i}-{tag}", sender.account_id, receiver.account_id) for i in range(5)]
    records.append(fraudulent(f"t9-{tag}", receiver.account_id, None))

    def run():
        pipeline = beam.Pipeline(
            runner="FnApiRunner", options=PipelineOptions(s3_config["pipeline_args"])
        )
        _ = (
            pipeline
            | beam.Create([TimestampedValue(r, T0.timestamp()) for r in records])
            | "WriteFraudResults"
            >> WriteFraudResults(
                bootstrap,
                topics["fraud"],
                topics["users"],
                mongo_uri,
                db_name,
                s3_config["bucket"],
                60,
                lookup_factory(postgres_dsn),
            )
        )
        pipeline.run().wait_until_finish()

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_config["endpoint_url"],
        aws_access_key_id=s3_config["s3_access_key_id"],
        aws_secret_access_key=s3_config["s3_secret_access_key"],
        region_name=s3_config["s3_region_name"],
    )

    def snapshot():
        db = MongoClient(mongo_uri)[db_name]
        listing = []
        for topic in topics.values():
            listing += s3.list_objects_v2(Bucket=s3_config["bucket"], Prefix=topic).get(
                "Contents", []
            )
        bodies = {
            o["Key"]: s3.get_object(Bucket=s3_config["bucket"], Key=o["Key"])["Body"].read()
            for o in listing
        }
        return (db.transactions.count_documents({}), sorted(db.users.distinct("_id")), bodies)

    try:
        run()
        first = snapshot()
        run()
        second = snapshot()
    finally:
        MongoClient(mongo_uri).drop_database(db_name)
    assert first[0] == 6
    assert first[1] == sorted([sender.account_id, receiver.account_id])
    assert len(first[2]) >= 2
    assert second == first
    assert len(kafka_values(bootstrap, topics["fraud"])) == 12  # at least once: 6 per run
    # Keyed by the document's natural id: what compaction folds a repeat by.
    for topic, key in ((topics["fraud"], "transaction_id"), (topics["users"], "account_id")):
        keyed = kafka_values(bootstrap, topic, with_keys=True)
        assert keyed and all(k == v[key].encode() for k, v in keyed)


def kafka_values(bootstrap: str, topic: str, with_keys: bool = False) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}"})
    try:
        tp = TopicPartition(topic, 0, 0)
        end = consumer.get_watermark_offsets(tp, timeout=10)[1]
        consumer.assign([tp])
        values = []
        while len(values) < end:
            message = consumer.poll(30)
            assert message is not None and message.error() is None
            value = json.loads(message.value())
            values.append((message.key(), value) if with_keys else value)
        return values
    finally:
        consumer.close()
