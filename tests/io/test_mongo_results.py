"""Beam's WriteToMongoDB as the results sink: upserts on ``_id``, and how fast it is.

The comparison sink is the shape the other sinks share (a BatchingWriteFn with one client
opened in setup, one bulk ReplaceOne upsert per batch); Beam's opens a client per flush.
"""

from __future__ import annotations

import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.io.mongodbio import WriteToMongoDB
from pymongo import MongoClient, ReplaceOne
from pymongo.errors import AutoReconnect, ConnectionFailure

from pipeline.io.batching import BatchingWriteFn
from pipeline.transforms.results import with_mongo_id

DOCS = 5000


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


class _BulkUpsertFn(BatchingWriteFn):
    """The alternative measured against WriteToMongoDB."""

    SINK = "mongo_bench"
    RETRYABLE_ERRORS = (AutoReconnect, ConnectionFailure)

    def __init__(self, uri, db, coll, batch_size):
        super().__init__(batch_size)
        self.uri, self.db, self.coll = uri, db, coll

    def open_client(self):
        return MongoClient(self.uri)

    def close_client(self, client):
        client.close()

    def write_batch(self, client, batch):
        client[self.db][self.coll].bulk_write(
            [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in batch], ordered=False
        )


def users(count: int) -> list[dict]:
    return [
        {
            "account_id": f"u{i % (count // 2)}",
            "account_name": f"User {i % (count // 2)}",
            "email": f"u{i % (count // 2)}@example.com",
        }
        for i in range(count)
    ]  # every user twice


def write_with_beam(uri, db, coll, docs, batch_size=100):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create(docs)
            | beam.Map(with_mongo_id("account_id"))
            | WriteToMongoDB(uri, db, coll, batch_size)
        )


def write_with_batching_fn(uri, db, coll, docs, batch_size=100):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create(docs)
            | beam.Map(with_mongo_id("account_id"))
            | beam.Reshuffle()
            | beam.ParDo(_BulkUpsertFn(uri, db, coll, batch_size))
        )


def test_write_to_mongodb_upserts_on_id(mongo_uri, database):
    docs = users(200)
    write_with_beam(mongo_uri, database.name, "users", docs)
    write_with_beam(mongo_uri, database.name, "users", docs)
    assert database.users.count_documents({}) == 100
    assert database.users.find_one({"_id": "u7"})["email"] == "u7@example.com"


def test_measure_write_to_mongodb_against_a_batching_sink(mongo_uri, database, capsys):
    docs = users(DOCS)
    timings = {}
    for name, write in (
        ("WriteToMongoDB", write_with_beam),
        ("BatchingWriteFn", write_with_batching_fn),
    ):
        best = float("inf")
        for attempt in range(3):
            coll = f"{name}_{attempt}"
            started = time.perf_counter()
            write(mongo_uri, database.name, coll, docs)
            best = min(best, time.perf_counter() - started)
            assert database[coll].count_documents({}) == DOCS // 2
        timings[name] = best
    with capsys.disabled():
        print(
            f"\nMongo upsert of {DOCS} docs (best of 3): "
            + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        )
    # Keep Beam's unless it is measurably worse; this bound flags a regression, not noise.
    assert timings["WriteToMongoDB"] < 3 * timings["BatchingWriteFn"] + 1.0
