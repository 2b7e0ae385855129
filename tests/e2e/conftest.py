"""Shared helpers of the end-to-end tests on the standalone Flink cluster.

:class:`Scenario` owns one test's world: per-test topics (the outputs compacted), consumer
group, job name, Mongo database and S3 folders (all named after a random prefix), a seeded
simulation whose transaction ids are known up front (a dry run) so an earlier run's Postgres
rows can be deleted, the job's submission and the sinks' reconciliation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import psycopg2
import pytest
from botocore.config import Config
from confluent_kafka import Consumer, TopicPartition

from stack import flink_rest
from stack.kafka import COMPACTED, ensure_topics
from tools.reconcile import Reconciliation, Target, check

REPO = Path(__file__).resolve().parents[2]
EVENT_RATE = 100  # event-time transactions/s: the same for the dry run and the real one


def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def topic_size(bootstrap: str, topic: str, partition: int = 0) -> int:
    """Messages in one partition of a topic (high minus low watermark)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-size-{uuid.uuid4().hex}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return high - low
    finally:
        consumer.close()


def wait_until(what: str, predicate, timeout: float, interval: float = 1.0):
    """Polls ``predicate`` until it returns a truthy value; fails with ``what`` and the last
    value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s: {what} (last: {value!r})")
        time.sleep(interval)


def kill_taskmanager() -> int:
    """SIGKILLs the stack's TaskManager (its whole process group); returns its pid."""
    import stack
    from stack import process

    tm = stack.SERVICES["flink"].taskmanager
    pid = process.read_pid(tm.pid_path)
    assert pid, f"no live TaskManager pid in {tm.pid_path}"
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 15
    while process.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process.is_alive(pid), f"TaskManager {pid} survived SIGKILL"
    return pid


@pytest.fixture
def services(stack_up):
    return stack_up("kafka", "postgres", "mongo", "s3", "workerpool", "flink", "validator")


class Scenario:
    """One test's topics, simulation and job (see the module docstring)."""

    PARTITIONS = 4

    def __init__(self, services: dict, tmp_path: Path, *, seed: int, count: int,
                 accounts: int = 200, bad_rate: float = 0.01, fraud_rate: float = 0.02,
                 extra_sim_args: tuple[str, ...] = ()):
        self.services = services
        self.bootstrap = services["kafka"]["bootstrap_servers"]
        self.dsn = services["postgres"]["dsn"]
        self.mongo_uri = services["mongo"].get("uri", "mongodb://127.0.0.1:27017")
        self.tmp_path = tmp_path
        self.seed, self.count, self.accounts = seed, count, accounts
        self.bad_rate, self.fraud_rate = bad_rate, fraud_rate
        self.extra_sim_args = list(extra_sim_args)
        self.prefix = f"e2e{uuid.uuid4().hex[:10]}"
        self.group = self.prefix
        self.topics = {
            "accounts": f"{self.prefix}.accounts",
            "transactions": f"{self.prefix}.transactions",
            "dead_letters": f"{self.prefix}.dead-letters",
            "results": f"{self.prefix}.fraudulent-transactions-result",
            "users": f"{self.prefix}.users",
            "ground_truth": f"{self.prefix}.ground-truth",
        }
        self.job_ids: list[str] = []
        self.ids: list[str] = []
        self.truth: list[dict] = []

    # -- setup ----------------------------------------------------------------------------
    def _sim_args(self) -> list[str]:
        return [sys.executable, "-m", "simulator", *self.simulator_arguments()]

    def simulator_arguments(self) -> list[str]:
        """The simulator's arguments for this scenario (without the output options)."""
        return [
            "--seed", str(self.seed),
            "--count", str(self.count), "--accounts", str(self.accounts),
            "--bad-rate", str(self.bad_rate), "--fraud-rate", str(self.fraud_rate),
            "--event-rate", str(EVENT_RATE), *self.extra_sim_args,
        ]

    def prepare(self) -> None:
        """Creates the topics; learns the ids (dry run) and deletes their old rows."""
        t = self.topics
        ensure_topics(
            {
                t["accounts"]: self.PARTITIONS, t["transactions"]: self.PARTITIONS,
                t["dead_letters"]: 1, t["results"]: 1, t["users"]: 1, t["ground_truth"]: 1,
            },
            self.bootstrap,
            configs={t[name]: COMPACTED for name in ("dead_letters", "results", "users")},
        )
        truth_file = self.truth_file = self.tmp_path / f"truth-{self.prefix}.jsonl"
        dry = run(
            [*self._sim_args(), "--dry-run", "--ground-truth-all",
             "--ground-truth-file", str(truth_file), "--quiet"],
            120,
        )
        assert dry.returncode == 0, dry.stderr
        self.truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
        self.ids = [r["transaction_id"] for r in self.truth if r.get("kind") == "transaction"]
        assert len(self.ids) == len(set(self.ids))
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                (self.ids,),
            )
        conn.close()

    # -- simulation -----------------------------------------------------------------------
    def start_simulator(self, tps: float = 0) -> subprocess.Popen:
        """Starts the (paced with ``tps``) simulation in the background."""
        return subprocess.Popen(
            [*self._sim_args(), "--tps", str(tps), "--topic-prefix", f"{self.prefix}.",
             "--bootstrap-servers", self.bootstrap, "--postgres-dsn", self.dsn, "--quiet"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def finish_simulator(self, proc: subprocess.Popen, timeout: float = 300) -> dict:
        """Waits for the simulation; checks and returns its summary (sets ``self.bad``)."""
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-4000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["delivery_failures"] == 0, summary
        assert summary["transactions"] == len(self.ids), (summary["transactions"], len(self.ids))
        self.bad = summary["bad"]["messages"]
        assert summary["transactions"] + self.bad == self.count
        self.summary = summary
        return summary

    def simulate(self, tps: float = 0) -> dict:
        return self.finish_simulator(self.start_simulator(tps))

    # -- job ------------------------------------------------------------------------------
    def submit(self, *, start_offset: str = "earliest", extra: tuple[str, ...] = (),
               wait_running: bool = True) -> str:
        """Submits the job (detached) and returns its id once every task runs."""
        t = self.topics
        before = {j["jid"] for j in flink_rest.jobs()}
        submit = run(
            [sys.executable, "-m", "pipeline.main", "--runner=FlinkRunner",
             f"--job_name={self.prefix}", f"--kafka_bootstrap={self.bootstrap}",
             f"--postgres_dsn={self.dsn}",
             f"--accounts_topic={t['accounts']}", f"--transactions_topic={t['transactions']}",
             f"--dead_letter_topic={t['dead_letters']}",
             f"--fraud_results_topic={t['results']}", f"--users_topic={t['users']}",
             f"--consumer_group={self.group}", f"--start_offset={start_offset}",
             f"--mongo_db={self.prefix}", f"--s3_bucket={self.services['s3']['bucket']}",
             *extra],
            180,
        )
        assert submit.returncode == 0, submit.stderr[-4000:]

        job_id = flink_rest.wait_for_job_id(self.prefix, 60, exclude=before)
        self.job_ids.append(job_id)
        if wait_running:
            flink_rest.wait_until_running(job_id, timeout=120)
        return job_id

    def cancel_all(self) -> None:
        for job_id in self.job_ids:
            try:
                if flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
                    flink_rest.cancel(job_id)
                flink_rest.wait_for_job_state(job_id, flink_rest.TERMINAL_STATES, timeout=60)
            except Exception as exc:  # noqa: BLE001 - cleanup reports, never masks the test
                print(f"cleanup of job {job_id}: {exc}")

    def wait_checkpoint(self, job_id: str, after: int = 0, timeout: float = 60) -> int:
        """Waits for a completed checkpoint with id > ``after``; returns its id."""
        def latest():
            done = (flink_rest.checkpoints(job_id).get("latest") or {}).get("completed")
            return done["id"] if done and done["id"] > after else None

        return wait_until(f"a completed checkpoint of {job_id} after #{after}", latest, timeout)

    # -- figures --------------------------------------------------------------------------
    def postgres_figures(self) -> dict:
        """Progress only (a primary key holds each id once): rows and fraudulent rows."""
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE is_fraudulent)"
                " FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                (self.ids,),
            )
            rows, fraudulent = cur.fetchone()
        conn.close()
        return {"rows": rows, "fraudulent": fraudulent}

    def target(self, with_s3: bool = True) -> Target:
        """Every sink of this scenario, for tools.reconcile."""
        t, s3 = self.topics, self.services["s3"]
        return Target(
            self.bootstrap, t["transactions"], t["dead_letters"], self.dsn, t["accounts"],
            t["results"], self.mongo_uri, self.prefix,
            f"s3://{s3['bucket']}/{t['results']}" if with_s3 else None, s3["pipeline_args"],
        )

    def reconcile(self, final: bool = False, with_s3: bool = True) -> Reconciliation:
        """Every sink reconciled (with the ground truth when ``final``)."""
        truth = str(self.truth_file) if final else None
        return check(self.target(with_s3), truth)[0]

    def wait_reconciled(self, timeout: float, with_s3: bool = True) -> Reconciliation:
        """Waits until no sink misses anything; returns the final reconciliation (with the
        ground truth). Fails with the last figures after ``timeout`` seconds."""

        def complete():
            rec = self.reconcile(with_s3=with_s3)
            if rec.missing == 0:
                return rec
            print(f"  waiting: {rec.line()}")
            return None

        wait_until("every sink holding every transaction", complete, timeout, 3)
        return self.reconcile(final=True, with_s3=with_s3)

    def rows_processed_after(self, epoch_s: float) -> int:
        """How many of this scenario's rows were (re)written after ``epoch_s``."""
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM banking.attributed_transactions"
                " WHERE transaction_id = ANY(%s) AND processed_at > to_timestamp(%s)",
                (self.ids, epoch_s),
            )
            (count,) = cur.fetchone()
        conn.close()
        return count

    def fraudulent_ids(self) -> set[str]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT transaction_id FROM banking.attributed_transactions"
                " WHERE transaction_id = ANY(%s) AND is_fraudulent",
                (self.ids,),
            )
            found = {r[0] for r in cur.fetchall()}
        conn.close()
        return found

    def dead_letter_origins(self) -> Counter:
        """(partition, offset) of each dead letter from the transactions topic, with repeats."""
        from tools.reconcile import dead_letter_origins

        if topic_size(self.bootstrap, self.topics["dead_letters"]) == 0:
            return Counter()
        return Counter(
            dead_letter_origins(
                self.bootstrap, self.topics["dead_letters"], self.topics["transactions"]
            )
        )

    def bad_origins(self) -> set[tuple[int, int]]:
        """(partition, offset) of every message of the transactions topic without a row-able
        transaction: what must be dead-lettered (the messages whose id is not in ``ids``)."""
        from tools.reconcile import read_topic, transaction_id_of

        wanted = set(self.ids)
        return {
            (m.partition(), m.offset())
            for m in read_topic(self.bootstrap, self.topics["transactions"])
            if transaction_id_of(m.value()) not in wanted
        }

    def s3_ids(self, folder: str, id_field: str = "transaction_id") -> list[str]:
        """Every record id in the S3 objects under ``<bucket>/<folder>/`` (repeats kept)."""
        s3 = self.services["s3"]
        client = boto3.client(
            "s3", endpoint_url=s3["endpoint_url"],
            aws_access_key_id=s3.get("s3_access_key_id") or s3.get("access_key"),
            aws_secret_access_key=s3.get("s3_secret_access_key") or s3.get("secret_key"),
            region_name=s3.get("s3_region_name") or "us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        ids: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3["bucket"], Prefix=f"{folder}/"
        ):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=s3["bucket"], Key=obj["Key"])["Body"].read()
                ids += [json.loads(line)[id_field] for line in body.splitlines() if line.strip()]
        return ids
