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

import pytest

from tests.legacy_streams import (
    ROW_COLUMNS,
    FlinkSqlStream,
    Outputs,
    PocStream,
    check_fraud_result,
    check_user,
    read_json,
    users_of,
)

REPO = Path(__file__).resolve().parents[2]


class Job(Outputs):
    """The outputs of one bounded run of the job."""

    def run(self, *flags: str) -> dict:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.main",
                *self.job_flags(),
                f"--validator_url={self.endpoints['validator']['url']}",
                *flags,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        summary = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert summary, done.stdout[-2000:]
        result = json.loads(summary[-1])
        assert result["state"] == "DONE", result
        return result


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
    # one first row per transaction (a later correction may write a row again)
    assert job.summary["joined"] == 60
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
    assert len(letters) == len(stream.expected.dead_letters)
    assert {payload: reason for payload, reason, _ in letters} == (stream.expected.dead_letters)
    steps = {payload: step for payload, _, step in letters}
    assert {steps[p] for p, _ in stream.bad_accounts} == {"ParseAccounts"}
    assert {steps[p] for p, _ in stream.bad_transactions} == {"ParseTransactions"}


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
    assert len(letters) == len(stream.expected.dead_letters)
    assert {payload: reason for payload, reason, _ in letters} == (stream.expected.dead_letters)


def test_poc_fraud_results_reach_kafka_under_the_poc_names(poc):
    stream, job = poc
    fraudulent = job.fraudulent(list(stream.expected.rows))
    assert stream.expected.fraudulent_by_bank <= fraudulent
    results = read_json(job.bootstrap, job.topics["results"])
    assert {doc["transaction_id"] for doc in results} == fraudulent
    for doc in results:
        check_fraud_result(doc, stream)
    users = read_json(job.bootstrap, job.topics["users"])
    assert {doc["id"] for doc in users} == users_of(stream, fraudulent)
    for doc in users:
        check_user(doc, stream)


def test_poc_fraud_results_reach_mongo_and_s3(poc):
    stream, job = poc
    fraudulent = job.fraudulent(list(stream.expected.rows))
    transactions = job.mongo_docs("transactions")
    assert {doc["_id"] for doc in transactions} == fraudulent
    for doc in transactions:
        check_fraud_result(doc, stream)
    users = job.mongo_docs("users")
    assert {doc["_id"] for doc in users} == users_of(stream, fraudulent)
    for doc in users:
        check_user(doc, stream)
    s3_results = job.s3_docs(job.topics["results"])
    assert {doc["transaction_id"] for doc in s3_results} == fraudulent
    for doc in s3_results:
        check_fraud_result(doc, stream)
    assert {doc["id"] for doc in job.s3_docs(job.topics["users"])} == users_of(stream, fraudulent)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--accounts_topic=missing-{unique}", "kafka: topic(s) missing-"),
        ("--transactions_topic=", "kafka: --transactions_topic must name a topic"),
        ("--direct_num_workers=2", "runner: --direct_num_workers=2 is not supported"),
    ],
)
def test_a_missing_topic_ends_with_one_clear_line(pipeline_stack, flag, message):
    flag = flag.format(unique=uuid.uuid4().hex[:8])  # not in the id: xdist workers must agree
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.main",
            f"--kafka_bootstrap={pipeline_stack['kafka']['bootstrap_servers']}",
            f"--postgres_dsn={pipeline_stack['postgres']['dsn']}",
            flag,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"riskpipe: error: {message}"), lines
