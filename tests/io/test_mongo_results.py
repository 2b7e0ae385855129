"""The MongoDB results sink against the local MongoDB-wire server: upserts on ``_id``."""

from __future__ import annotations

import uuid

import apache_beam as beam
import pytest
from pymongo import MongoClient

from pipeline.io.mongo import WriteToMongo
from pipeline.transforms.results import with_mongo_id


@pytest.fixture(scope="module")
def mongo_uri(stack_up) -> str:
    endpoints = stack_up("mongo")["mongo"]
    return endpoints.get("uri") or "mongodb://127.0.0.1:27017"


@pytest.fixture
def database(mongo_uri):
    client = MongoClient(mongo_uri)
    name = f"test_mongo_{uuid.uuid4().hex[:8]}"
    yield client[name]
    client.drop_database(name)
    client.close()


def users(count: int) -> list[dict]:
    return [
        {
            "account_id": f"u{i % (count // 2)}",
            "account_name": f"User {i % (count // 2)}",
            "email": f"u{i % (count // 2)}@example.com",
        }
        for i in range(count)
    ]  # every user twice


def write(uri, db, coll, docs, batch_size=100):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create(docs)
            | beam.Map(with_mongo_id("account_id"))
            | WriteToMongo(uri, db, coll, batch_size)
        )


def test_write_to_mongo_upserts_on_id(mongo_uri, database):
    docs = users(200)
    write(mongo_uri, database.name, "users", docs)
    write(mongo_uri, database.name, "users", docs)
    assert database.users.count_documents({}) == 100
    assert database.users.find_one({"_id": "u7"})["email"] == "u7@example.com"


def test_a_correction_replaces_the_stored_document(mongo_uri, database):
    """A later version of one ``_id`` replaces the stored document whole: changed fields
    take the new values and a field the correction no longer carries is gone."""
    first = {"transaction_id": "t1", "account_name": "Owen Carroll", "risk_score": 40,
             "risk_reasons": ["night"], "stale_hint": "from the first version"}
    corrected = {"transaction_id": "t1", "account_name": "Owen Trub", "risk_score": 55,
                 "risk_reasons": ["night", "large_amount"]}
    for version in (first, corrected):
        with beam.Pipeline(runner="FnApiRunner") as pipeline:
            _ = (
                pipeline
                | beam.Create([version])
                | beam.Map(with_mongo_id("transaction_id"))
                | WriteToMongo(mongo_uri, database.name, "transactions")
            )
    assert list(database.transactions.find({})) == [{"_id": "t1", **corrected}]


def test_a_versioned_document_gives_way_only_to_a_newer_one(mongo_uri, database):
    """With a version field the newest version stays whatever order the versions come in:
    in one batch, or an older one written after a newer one (a runner may deliver them so)."""
    def result(tid, name, second):
        return {"_id": tid, "account_name": name,
                "processed_at": f"2026-11-01T13:00:0{second}.000000+00:00"}

    def upsert(docs):
        with beam.Pipeline(runner="FnApiRunner") as pipeline:
            _ = (
                pipeline
                | beam.Create(docs)
                | WriteToMongo(mongo_uri, database.name, "transactions",
                               version_field="processed_at")
            )

    upsert([result("t1", "Corrected", 2), result("t1", "First", 1), result("t2", "First", 1)])
    upsert([result("t2", "Corrected", 2), result("t3", "Corrected", 2)])
    upsert([result("t3", "First", 1)])
    found = {doc["_id"]: doc["account_name"] for doc in database.transactions.find({})}
    assert found == {"t1": "Corrected", "t2": "Corrected", "t3": "Corrected"}


def test_write_to_mongo_rejects_empty_settings():
    with pytest.raises(ValueError, match="collection"):
        WriteToMongo("mongodb://127.0.0.1:27017", "db", "")
