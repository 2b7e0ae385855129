"""The two older systems' streams through the job on the standalone Flink cluster.

The same fixture streams as the DirectRunner tests (``tests/legacy_streams.py``) are written
unkeyed to per-test topics before the job starts; the job is submitted detached
(``python -m pipeline.main --runner=FlinkRunner`` with the flags of the README's migration
sections) with per-test outputs and job name; each test polls until every good record is in
Postgres and every bad one in the dead-letter topic, checks the content, then cancels the job.
"""

from __future__ import annotations

import sys
import uuid

from stack import flink_rest
from tests.e2e.conftest import run, topic_size, wait_until
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

SETTLE_S = 240.0
S3_SETTLE_S = 150.0  # objects are 60 s event-time windows, written once the watermark passes


def _submit(outputs: Outputs, services: dict, *flags: str) -> str:
    """Submits the job (detached); returns its id once every task runs."""
    name = outputs.prefix.rstrip(".")
    before = {j["jid"] for j in flink_rest.jobs()}
    submitted = run(
        [
            sys.executable,
            "-m",
            "pipeline.main",
            "--runner=FlinkRunner",
            f"--job_name={name}",
            *outputs.job_flags(),
            f"--validator_url={services['validator']['url']}",
            *flags,
        ],
        180,
    )
    assert submitted.returncode == 0, submitted.stderr[-4000:]
    job_id = flink_rest.wait_for_job_id(name, 60, exclude=before)
    flink_rest.wait_until_running(job_id, timeout=120)
    return job_id


def _settled(
    outputs: Outputs, job_id: str, ids: list[str], dead: int, poc: PocStream | None = None
):
    """A poll: the figures once every row and dead letter is there (and, for the PoC, every
    fraud result and user in Kafka and Mongo), else None; fails at once if the job stopped."""

    def poll():
        state = flink_rest.job_state(job_id)
        assert state == "RUNNING", (state, flink_rest.exceptions(job_id)[:4000])
        rows = len(outputs.rows(ids, ("account_name",)))
        now = {
            "rows": rows,
            "dead_letters": topic_size(outputs.bootstrap, outputs.topics["dead_letters"]),
        }
        done = rows >= len(ids) and now["dead_letters"] >= dead
        if poc is not None and done:
            fraudulent = outputs.fraudulent(ids)
            now.update(
                fraudulent=len(fraudulent),
                results=topic_size(outputs.bootstrap, outputs.topics["results"]),
                users=topic_size(outputs.bootstrap, outputs.topics["users"]),
                mongo=len(outputs.mongo_docs("transactions")),
                mongo_users=len(outputs.mongo_docs("users")),
            )
            # a user document per sender and per receiver (never the same in the fixture)
            done = (
                now["results"] >= len(fraudulent)
                and now["mongo"] >= len(fraudulent)
                and now["users"] >= 2 * len(fraudulent)
                and now["mongo_users"] >= len(users_of(poc, fraudulent))
            )
        return now if done else None

    return poll


def _no_restarts(job_id: str) -> None:
    history = flink_rest.request("GET", f"/jobs/{job_id}/exceptions")
    entries = (history or {}).get("exceptionHistory", {}).get("entries", [])
    assert not entries, entries[0]["stacktrace"][:4000]


def _cancel(job_id: str) -> None:
    if flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
        flink_rest.cancel(job_id)
    assert flink_rest.wait_for_job_state(job_id, "CANCELED", timeout=60) == "CANCELED"


def test_flink_reads_the_flinksql_jobs_topics(services):
    prefix = f"e2eA{uuid.uuid4().hex[:8]}."
    stream, outputs = FlinkSqlStream(prefix), Outputs(services, prefix)
    ids = list(stream.expected.rows)
    stream.create_topics(outputs.bootstrap, partitions=4)
    stream.publish(outputs.bootstrap)
    job_id = _submit(
        outputs,
        services,
        "--input_format=flinksql",
        f"--accounts_topic={stream.accounts_topic}",
        f"--transactions_topic={stream.transactions_topic}",
    )
    try:
        dead = len(stream.expected.dead_letters)
        wait_until(
            f"{len(ids)} rows and {dead} dead letters",
            _settled(outputs, job_id, ids, dead),
            SETTLE_S,
            2,
        )
        rows = outputs.rows(ids, (*ROW_COLUMNS, "validated_by"))
        assert set(rows) == set(ids)
        for tid, row in rows.items():
            want = stream.expected.rows[tid]
            assert {c: row[c] for c in ROW_COLUMNS} == {c: want[c] for c in ROW_COLUMNS}, tid
            assert row["validated_by"] == "validator", tid
        letters = outputs.dead_letters()
        assert len(letters) == len(stream.expected.dead_letters)
        assert {p: reason for p, reason, _ in letters} == stream.expected.dead_letters
        _no_restarts(job_id)
    finally:
        _cancel(job_id)
        outputs.cleanup(ids)


def test_flink_reads_the_fraud_pocs_topic(services):
    prefix = f"e2eB{uuid.uuid4().hex[:8]}."
    stream, outputs = PocStream(prefix), Outputs(services, prefix)
    ids = list(stream.expected.rows)
    stream.create_topics(outputs.bootstrap, partitions=4)
    stream.publish(outputs.bootstrap)
    job_id = _submit(
        outputs,
        services,
        "--input_format=poc",
        "--accounts_topic=",
        f"--transactions_topic={stream.topic}",
    )
    try:
        dead = len(stream.expected.dead_letters)
        wait_until(
            f"{len(ids)} rows, {dead} dead letters and every fraud result",
            _settled(outputs, job_id, ids, dead, poc=stream),
            SETTLE_S,
            2,
        )
        rows = outputs.rows(ids, (*ROW_COLUMNS, "email"))
        assert set(rows) == set(ids)
        for tid, row in rows.items():
            want = stream.expected.rows[tid]
            columns = (*ROW_COLUMNS, "email")
            assert {c: row[c] for c in columns} == {c: want[c] for c in columns}, tid
        letters = outputs.dead_letters()
        assert len(letters) == len(stream.expected.dead_letters)
        assert {p: reason for p, reason, _ in letters} == stream.expected.dead_letters

        fraudulent = outputs.fraudulent(ids)
        assert stream.expected.fraudulent_by_bank <= fraudulent
        # A compacted topic keyed by transaction: a consumer reads the latest value per key
        # (an unkeyed producer spreads an account over partitions, so rows get corrected).
        results = {doc["transaction_id"]: doc
                   for doc in read_json(outputs.bootstrap, outputs.topics["results"])}
        assert set(results) == fraudulent
        for doc in results.values():
            check_fraud_result(doc, stream)
        users_topic = read_json(outputs.bootstrap, outputs.topics["users"])
        assert {doc["id"] for doc in users_topic} == users_of(stream, fraudulent)
        for doc in users_topic:
            check_user(doc, stream)
        mongo = outputs.mongo_docs("transactions")
        assert {doc["_id"] for doc in mongo} == fraudulent
        for doc in mongo:
            check_fraud_result(doc, stream)
        users = outputs.mongo_docs("users")
        assert {doc["_id"] for doc in users} == users_of(stream, fraudulent)
        for doc in users:
            check_user(doc, stream)

        def s3_complete():
            found = {doc["transaction_id"] for doc in outputs.s3_docs(outputs.topics["results"])}
            return found if found >= fraudulent else None

        found = wait_until(
            f"S3 {outputs.topics['results']} holding {len(fraudulent)} results",
            s3_complete,
            S3_SETTLE_S,
            5,
        )
        assert found == fraudulent
        _no_restarts(job_id)
    finally:
        _cancel(job_id)
        outputs.cleanup(ids)
