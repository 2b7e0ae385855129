"""The two older systems' streams through ``python -m pipeline.main`` (DirectRunner, bounded).

Fixture streams (``tests/legacy_streams.py``) are written unkeyed to per-test topics of the
real Kafka: the Flink SQL job's ``accounts`` + ``bank_transactions`` (a third of the
transactions before their accounts), and the fraud PoC's one ``bank-transactions`` topic.
The job runs once per shape with the flags the README's migration sections give; the tests
then check Postgres, the dead-letter topic and, for the PoC, the fraud results in Kafka,
MongoDB and S3 under the PoC's field names, against values written out in the fixtures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import psycopg2
import pymongo
import pytest
from botocore.config import Config

from stack.kafka import ensure_topics
from tests.legacy_streams import FlinkSqlStream, PocStream, read_json

REPO = Path(__file__).resolve().parents[2]
ROW_COLUMNS = (
    "account_id", "account_name", "counterparty_account_id", "transaction_type", "amount",
    "currency", "transaction_status", "datetime_occurred", "evaluation",
)


class Job:
    """Per-test output topics, Mongo database and consumer group, and the bounded run."""

    def __init__(self, stack: dict, prefix: str):
        self.stack = stack
        self.bootstrap = stack["kafka"]["bootstrap_servers"]
        self.dsn = stack["postgres"]["dsn"]
        self.mongo_uri = stack["mongo"]["uri"]
        self.prefix = prefix
        self.mongo_db = prefix.rstrip(".").replace(".", "_")
        self.topics = {
            "dead_letters": f"{prefix}dead-letters",
            "results": f"{prefix}fraudulent-transactions-result",
            "users": f"{prefix}users",
        }
        ensure_topics({t: 1 for t in self.topics.values()}, self.bootstrap)

    def run(self, *flags: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.main",
             f"--kafka_bootstrap={self.bootstrap}", f"--postgres_dsn={self.dsn}",
             f"--mongo_uri={self.mongo_uri}", f"--mongo_db={self.mongo_db}",
             f"--validator_url={self.stack['validator']['url']}",
             f"--s3_bucket={self.stack['s3']['bucket']}",
             f"--dead_letter_topic={self.topics['dead_letters']}",
             f"--fraud_results_topic={self.topics['results']}",
             f"--users_topic={self.topics['users']}",
             f"--consumer_group={self.prefix}job", "--start_offset=earliest", *flags],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        summary = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert summary, done.stdout[-2000:]
        result = json.loads(summary[-1])
        assert result["state"] == "DONE", result
        return result

    def rows(self, ids: list[str], columns: tuple[str, ...]) -> dict[str, dict]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT transaction_id, {', '.join(columns)} FROM banking.attributed_transactions "
                "WHERE transaction_id = ANY(%s)",
                (ids,),
            )
            found = {row[0]: dict(zip(columns, map(_plain, row[1:]))) for row in cur.fetchall()}
        conn.close()
        return found

    def dead_letters(self) -> dict[bytes, tuple[str, str]]:
        letters = read_json(self.bootstrap, self.topics["dead_letters"])
        assert all(letter["payload_encoding"] == "utf-8" for letter in letters)
        return {letter["payload"].encode(): (letter["reason"], letter["step"]) for letter in letters}

    def s3_docs(self, folder: str) -> list[dict]:
        s3 = self.stack["s3"]
        client = boto3.client(
            "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["s3_access_key_id"],
            aws_secret_access_key=s3["s3_secret_access_key"], region_name=s3["s3_region_name"],
            config=Config(s3={"addressing_style": "path"}),
        )
        docs = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3["bucket"], Prefix=f"{folder}/"
        ):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=s3["bucket"], Key=obj["Key"])["Body"].read()
                docs += [json.loads(line) for line in body.splitlines() if line.strip()]
        return docs

    def cleanup(self, ids: list[str]) -> None:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                (ids,),
            )
        conn.close()
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(self.mongo_db)
        finally:
            client.close()


def _plain(value):
    return float(value) if value.__class__.__name__ == "Decimal" else value


# -- the Flink SQL risk job's stream (shape A) ------------------------------------------------


@pytest.fixture(scope="module")
def flinksql(pipeline_stack):
    prefix = f"itA{uuid.uuid4().hex[:8]}."
    stream, job = FlinkSqlStream(prefix), Job(pipeline_stack, prefix)
    stream.create_topics(job.bootstrap)
    stream.publish(job.bootstrap)
    job.summary = job.run(
        "--input_format=flinksql",
        f"--accounts_topic={stream.accounts_topic}",
        f"--transactions_topic={stream.transactions_topic}",
    )
    yield stream, job
    job.cleanup(list(stream.expected.rows))


def test_flinksql_counters(flinksql):
    stream, job = flinksql
    assert job.summary["dead_lettered"] == len(stream.expected.dead_letters) == 8
    assert job.summary["parsed"] == len(stream.transactions) + len(stream.accounts)
    assert job.summary["joined"] == job.summary["postgres_rows_written"] == 60
    assert job.summary["expired_unjoined"] == 0


def test_flinksql_every_transaction_is_attributed_and_written(flinksql):
    stream, job = flinksql
    expected = stream.expected.rows
    rows = job.rows(list(expected), (*ROW_COLUMNS, "validated_by"))
    assert set(rows) == set(expected)
    for tid, row in rows.items():
        assert row["account_name"] is not None, tid
        assert {c: row[c] for c in ROW_COLUMNS} == {c: expected[tid][c] for c in ROW_COLUMNS}, tid
        # no evaluation in the shape: the validator decided every one
        assert row["validated_by"] == "validator", tid


def test_flinksql_malformed_records_are_dead_lettered_with_their_reasons(flinksql):
    stream, job = flinksql
    letters = job.dead_letters()
    assert {payload: reason for payload, (reason, _) in letters.items()} == (
        stream.expected.dead_letters
    )
    steps = {payload: step for payload, (_, step) in letters.items()}
    assert {steps[p] for p, _ in stream.bad_accounts} == {"ParseAccounts"}
    assert {steps[p] for p, _ in stream.bad_transactions} == {"ParseTransactions"}


@pytest.mark.xfail(
    strict=True,
    reason="ScoreRisk does not yet hand the joined account on (AttributedTransaction.account)",
)
def test_flinksql_rows_carry_the_account_columns_of_the_old_table(flinksql):
    stream, job = flinksql
    expected = stream.expected.rows
    rows = job.rows(list(expected), ("email", "account_type", "balance"))
    assert rows == {
        tid: {c: want[c] for c in ("email", "account_type", "balance")}
        for tid, want in expected.items()
    }


# -- the fraud PoC's stream (shape B) ------------------------------------------------------------


@pytest.fixture(scope="module")
def poc(pipeline_stack):
    prefix = f"itB{uuid.uuid4().hex[:8]}."
    stream, job = PocStream(prefix), Job(pipeline_stack, prefix)
    stream.create_topics(job.bootstrap)
    stream.publish(job.bootstrap)
    # auto: each message is recognised as a PoC transfer by its keys
    job.summary = job.run("--accounts_topic=", f"--transactions_topic={stream.topic}")
    yield stream, job
    job.cleanup(list(stream.expected.rows))


def test_poc_counters(poc):
    stream, job = poc
    assert job.summary["dead_lettered"] == len(stream.expected.dead_letters) == 6
    assert job.summary["parsed"] == job.summary["joined"] == 48
    assert job.summary["postgres_rows_written"] == 48
    assert job.summary["expired_unjoined"] == 0


def test_poc_every_transfer_is_attributed_and_written(poc):
    stream, job = poc
    expected = stream.expected.rows
    rows = job.rows(list(expected), (*ROW_COLUMNS, "email", "is_fraudulent", "validated_by"))
    assert set(rows) == set(expected)
    for tid, row in rows.items():
        assert {c: row[c] for c in (*ROW_COLUMNS, "email")} == {
            c: expected[tid][c] for c in (*ROW_COLUMNS, "email")
        }, tid
        if tid in stream.expected.fraudulent_by_bank:
            assert (row["is_fraudulent"], row["validated_by"]) == (True, "bank"), tid
        elif expected[tid]["evaluation"] == "cleared":
            assert (row["is_fraudulent"], row["validated_by"]) == (False, "none"), tid
        else:
            assert row["validated_by"] == "validator", tid


def test_poc_malformed_transfers_are_dead_lettered_with_their_reasons(poc):
    stream, job = poc
    letters = job.dead_letters()
    assert {payload: reason for payload, (reason, _) in letters.items()} == (
        stream.expected.dead_letters
    )


def _fraudulent(job, stream) -> set[str]:
    rows = job.rows(list(stream.expected.rows), ("is_fraudulent",))
    found = {tid for tid, row in rows.items() if row["is_fraudulent"]}
    assert stream.expected.fraudulent_by_bank <= found
    return found


def _check_result(doc: dict, stream: PocStream) -> None:
    want = stream.expected.rows[doc["transaction_id"]]
    users = stream.expected.users
    assert doc["sender_bank_account"] == want["sender_bank_account"]
    assert doc["receiver_bank_account"] == want["receiver_bank_account"]
    assert doc["sender_details"] == users[want["account_id"]]
    assert doc["receiver_details"] == users[want["counterparty_account_id"]]
    assert doc["amount"] == want["amount"]
    assert doc["status"] == want["transaction_status"]
    assert doc["evaluation"] == want["evaluation"]
    assert doc["transfer_date"] == want["datetime_occurred"].strftime("%Y-%m-%d %H:%M:%S")
    assert doc["sender_bank"] == "Harbor Trust"
    assert doc["is_fraudulent_transaction"] is True


def _users_of(stream: PocStream, ids: set[str]) -> set[str]:
    rows = stream.expected.rows
    return {rows[t][k] for t in ids for k in ("account_id", "counterparty_account_id")}


def test_poc_fraud_results_reach_kafka_under_the_poc_names(poc):
    stream, job = poc
    fraudulent = _fraudulent(job, stream)
    results = read_json(job.bootstrap, job.topics["results"])
    assert {doc["transaction_id"] for doc in results} == fraudulent
    for doc in results:
        _check_result(doc, stream)
    users = read_json(job.bootstrap, job.topics["users"])
    assert {doc["id"] for doc in users} == _users_of(stream, fraudulent)
    for doc in users:
        assert {k: doc[k] for k in stream.expected.users[doc["id"]]} == stream.expected.users[doc["id"]]


def test_poc_fraud_results_reach_mongo_and_s3(poc):
    stream, job = poc
    fraudulent = _fraudulent(job, stream)
    client = pymongo.MongoClient(job.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[job.mongo_db]
        transactions = list(db.transactions.find({}))
        users = {doc["_id"]: doc for doc in db.users.find({})}
    finally:
        client.close()
    assert {doc["_id"] for doc in transactions} == fraudulent
    for doc in transactions:
        _check_result(doc, stream)
    assert set(users) == _users_of(stream, fraudulent)
    for uid, doc in users.items():
        assert {k: doc[k] for k in stream.expected.users[uid]} == stream.expected.users[uid]
    s3_results = job.s3_docs(job.topics["results"])
    assert {doc["transaction_id"] for doc in s3_results} == fraudulent
    for doc in s3_results:
        _check_result(doc, stream)
    assert {doc["id"] for doc in job.s3_docs(job.topics["users"])} == _users_of(stream, fraudulent)
