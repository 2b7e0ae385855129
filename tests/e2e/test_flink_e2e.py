"""End to end on the standalone Flink cluster: simulator → Kafka → job on Flink → sinks.

A seeded simulation writes 2,000 messages (about 1 % malformed) to per-test topics; the job
is submitted detached (``python -m pipeline.main --runner=FlinkRunner``) with per-test topics
(the outputs compacted), consumer group, job name, Mongo database and S3 folders; the test
polls until every sink holds every transaction it should (:mod:`tools.reconcile`), checks
each sink's figures and the exact counts, then cancels the job.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import psycopg2

from stack import flink_rest
from stack.kafka import COMPACTED, ensure_topics
from tests.e2e.conftest import run
from tools.reconcile import Target, check

SEED = 20260105
COUNT = 2_000
ACCOUNTS = 200
TIMEOUT_S = 240.0
STALL_TIMEOUT_S = 90.0


def test_flink_end_to_end(services, tmp_path):
    bootstrap = services["kafka"]["bootstrap_servers"]
    dsn = services["postgres"]["dsn"]
    prefix = f"e2e{uuid.uuid4().hex[:10]}"
    topics = {
        "accounts": f"{prefix}.accounts",
        "transactions": f"{prefix}.transactions",
        "dead_letters": f"{prefix}.dead-letters",
        "results": f"{prefix}.fraudulent-transactions-result",
        "users": f"{prefix}.users",
        "ground_truth": f"{prefix}.ground-truth",
    }
    ensure_topics(
        {
            topics["accounts"]: 4, topics["transactions"]: 4, topics["dead_letters"]: 1,
            topics["results"]: 1, topics["users"]: 1, topics["ground_truth"]: 1,
        },
        bootstrap,
        configs={topics[n]: COMPACTED for n in ("dead_letters", "results", "users")},
    )

    # The seed fixes the transaction ids: forget what an earlier run of this test wrote.
    truth_file = tmp_path / "truth.jsonl"
    dry = run(
        [sys.executable, "-m", "simulator", "--seed", str(SEED), "--count", str(COUNT),
         "--accounts", str(ACCOUNTS), "--bad-rate", "0.01", "--fraud-rate", "0.02",
         "--dry-run", "--ground-truth-all", "--ground-truth-file", str(truth_file), "--quiet"],
        120,
    )
    assert dry.returncode == 0, dry.stderr
    truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
    ids = [row["transaction_id"] for row in truth if row.get("kind") == "transaction"]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)", (ids,)
        )
    conn.close()

    sim = run(
        [sys.executable, "-m", "simulator", "--seed", str(SEED), "--count", str(COUNT),
         "--accounts", str(ACCOUNTS), "--bad-rate", "0.01", "--fraud-rate", "0.02",
         "--topic-prefix", f"{prefix}.", "--bootstrap-servers", bootstrap,
         "--postgres-dsn", dsn, "--quiet"],
        300,
    )
    assert sim.returncode == 0, sim.stderr
    summary = json.loads(sim.stdout.strip().splitlines()[-1])
    assert summary["delivery_failures"] == 0
    assert summary["transactions"] == len(ids) == len(set(ids))
    bad = summary["bad"]["messages"]
    assert bad > 0 and summary["transactions"] + bad == COUNT

    def uploaded_jars() -> set[str]:
        return {jar["id"] for jar in flink_rest.request("GET", "/jars")["files"]}

    def submit() -> str:
        before = {j["jid"] for j in flink_rest.jobs()}
        jars_before = uploaded_jars()
        submitted = run(
            [sys.executable, "-m", "pipeline.main", "--runner=FlinkRunner",
             f"--job_name={prefix}", f"--kafka_bootstrap={bootstrap}", f"--postgres_dsn={dsn}",
             f"--accounts_topic={topics['accounts']}",
             f"--transactions_topic={topics['transactions']}",
             f"--dead_letter_topic={topics['dead_letters']}",
             f"--fraud_results_topic={topics['results']}", f"--users_topic={topics['users']}",
             f"--consumer_group={prefix}", "--start_offset=earliest", f"--mongo_db={prefix}",
             f"--s3_bucket={services['s3']['bucket']}"],
            180,
        )
        assert submitted.returncode == 0, submitted.stderr[-4000:]
        new = flink_rest.wait_for_job_id(prefix, 60, exclude=before)
        # The JobManager keeps the job's jars in its blob server; the ~160 MB upload is
        # deleted once the job is submitted, not left behind for every run.
        assert uploaded_jars() - jars_before == set()
        flink_rest.wait_until_running(new, timeout=120)
        return new

    def first_rows(timeout: float = STALL_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM banking.attributed_transactions"
                    " WHERE transaction_id = ANY(%s)", (ids,),
                )
                (rows,) = cur.fetchone()
            conn.close()
            if rows:
                return True
            time.sleep(2)
        return False

    # Every message is in Kafka before the job starts, so a job with no row after
    # STALL_TIMEOUT_S has stalled at start (what --finish_bundle_before_checkpointing,
    # a runner default, prevents: pipeline/runners/flags.py).
    job_id = submit()
    # The local cluster has two TaskManagers and the job runs at parallelism 2 (the runner
    # default on two cores): the stateful step has a subtask on each TaskManager.
    stateful = [v for v in flink_rest.job(job_id)["vertices"]
                if v["name"].startswith("[") and "AttributeTransactions" in v["name"]]
    assert stateful and all(v["parallelism"] >= 2 for v in stateful), stateful
    hosts = flink_rest.request(
        "GET", f"/jobs/{job_id}/vertices/{stateful[0]['id']}/taskmanagers")["taskmanagers"]
    assert len({h["taskmanager-id"] for h in hosts}) == 2, hosts
    if not first_rows():
        flink_rest.cancel(job_id)
        raise AssertionError(f"job {job_id} is RUNNING but wrote no row in "
                             f"{STALL_TIMEOUT_S:.0f} s: stalled at start")
    target = Target(
        bootstrap, topics["transactions"], topics["dead_letters"], dsn, topics["accounts"],
        topics["results"], services["mongo"].get("uri", "mongodb://127.0.0.1:27017"), prefix,
        f"s3://{services['s3']['bucket']}/{topics['results']}", services["s3"]["pipeline_args"],
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            state = flink_rest.job_state(job_id)
            assert state == "RUNNING", (state, flink_rest.exceptions(job_id)[:4000])
            now = check(target)[0]
            if now.missing == 0:
                break
            assert time.monotonic() < deadline, f"after {TIMEOUT_S:.0f} s: {now.line()}"
            time.sleep(3)

        final = check(target, str(truth_file))[0]
        print(f"e2e figures: {final.line()}")
        assert final.in_postgres == len(ids) == summary["transactions"], final.line()
        assert final.dead_lettered == bad, final.line()
        for name, sink in final.sinks.items():
            assert sink.missing == 0 and not sink.duplicated and sink.extra == 0, (
                name, sink.examples)
            assert not sink.stale_names and not sink.wrong_names, (name, sink.examples)
        fraudulent = final.sinks["kafka"].found
        assert fraudulent > 0
        assert final.sinks["mongo"].found == final.sinks["s3"].found == fraudulent
        assert final.ok, (final.line(), final.examples)
        # No failed attempt replayed output: the job never restarted, so no record (result
        # or dead letter) was sent twice.
        history = flink_rest.request("GET", f"/jobs/{job_id}/exceptions")
        entries = (history or {}).get("exceptionHistory", {}).get("entries", [])
        assert not entries, entries[0]["stacktrace"][:4000]
        assert final.sinks["kafka"].redelivered == final.sinks["dead_letters"].redelivered == 0
    finally:
        if flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
            flink_rest.cancel(job_id)
        assert flink_rest.wait_for_job_state(job_id, "CANCELED", timeout=60) == "CANCELED"
