"""The README's two queries return each fraud's sender and receiver names and emails.

The DuckDB query reads the JSON-lines objects from the local S3 server (mirrored through
Beam's filesystem, see tools.queries); the $lookup runs on the local MongoDB.
"""

from __future__ import annotations

import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from pymongo import MongoClient

from pipeline.io.s3 import WriteEventTimeJson
from tools.queries import (
    FRAUD_TOPIC,
    USERS_TOPIC,
    duckdb_fraud_rows,
    fraud_lookup_pipeline,
)

TS = 1_772_460_000
USERS = [
    {
        "account_id": "s1",
        "account_name": "Ada Lovelace",
        "email": "ada@example.com",
        "address": "1 Analytical St",
    },
    {
        "account_id": "r1",
        "account_name": "Bo Receiver",
        "email": "bo@example.com",
        "address": "2 Engine Rd",
    },
    {"account_id": "x9"},  # a receiver that is no known account
]
FRAUDS = [
    {
        "transaction_id": "t1",
        "sender_id": "s1",
        "receiver_id": "r1",
        "amount": 60000.0,
        "currency": "EUR",
        "datetime_occurred": "2026-03-02T14:00:00+00:00",
        "validated_by": "bank",
    },
    {
        "transaction_id": "t2",
        "sender_id": "r1",
        "receiver_id": "x9",
        "amount": 10.0,
        "currency": "EUR",
        "datetime_occurred": "2026-03-02T14:00:30+00:00",
        "validated_by": "validator",
    },
]
EXPECTED = [
    ("t1", "Ada Lovelace", "ada@example.com", "1 Analytical St", "Bo Receiver", "bo@example.com"),
    ("t2", "Bo Receiver", "bo@example.com", "2 Engine Rd", None, None),
]


def joined(rows: list[dict]) -> list[tuple]:
    return [
        (
            r["transaction_id"],
            r["sender_name"],
            r["sender_email"],
            r["sender_address"],
            r.get("receiver_name"),
            r.get("receiver_email"),
        )
        for r in rows
    ]


def test_duckdb_joins_the_s3_results(s3_config):
    root = f"s3://{s3_config['bucket']}/test-queries-{uuid.uuid4().hex[:8]}"
    pipeline = beam.Pipeline(
        runner="FnApiRunner", options=PipelineOptions(s3_config["pipeline_args"])
    )
    # A user is in the object of each fraudulent transaction involving them: r1 also as an
    # id-only document an hour earlier (when it was no known account yet).
    dated_users = [(TS, u) for u in USERS] + [(TS - 3600, {"account_id": "r1"})]
    dated_frauds = [(f["datetime_occurred"], f) for f in FRAUDS]
    for name, topic, dated, key in (
        ("Users", USERS_TOPIC, dated_users, "account_id"),
        ("Frauds", FRAUD_TOPIC, dated_frauds, "transaction_id"),
    ):
        _ = (
            pipeline
            | f"Create{name}" >> beam.Create(dated)
            | f"Write{name}" >> WriteEventTimeJson(f"{root}/{topic}", key, window_s=60)
        )
    pipeline.run().wait_until_finish()
    assert joined(duckdb_fraud_rows(root, s3_config["pipeline_args"])) == EXPECTED


@pytest.fixture(scope="module")
def mongo_uri(stack_up) -> str:
    endpoints = stack_up("mongo")["mongo"]
    return endpoints.get("uri") or "mongodb://127.0.0.1:27017"


def test_mongo_lookup_joins_users(mongo_uri):
    client = MongoClient(mongo_uri)
    db = client[f"test_queries_{uuid.uuid4().hex[:8]}"]
    try:
        db.users.insert_many([{"_id": u["account_id"], **u} for u in USERS])
        db.transactions.insert_many([{"_id": t["transaction_id"], **t} for t in FRAUDS])
        rows = list(db.transactions.aggregate(fraud_lookup_pipeline()))
    finally:
        client.drop_database(db.name)
        client.close()
    assert joined(rows) == EXPECTED
