"""What a benchmark runs on: fresh topics, a seeded simulation on them, the rows it leads to.

    data = SeededTopics(stack.up(SERVICES), prefix="bench")
    data.simulate(20_000, seed=1, accounts=1000)   # data.ids: its transaction ids
    ...                                            # run an engine over data.topics
    check = compare_rows(data.ids, data.rows(data.ids), reference)
    data.clear_rows(data.ids)                      # before the next engine's run
    data.cleanup()                                 # rows, topics, Mongo database, S3 objects

The rows an engine must agree on are the ones every engine computes the same way:
``account_name`` and the rules' signals in ``risk_reasons`` (the verdict columns depend on the
validator, which the baseline and the Quix peer do not call; the job's ``risk_score`` and the
first reason are its fraud model's, which they do not run).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import psycopg2
import pymongo
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.domain.model import REASON_PREFIX as MODEL_REASON_PREFIX
from pipeline.main import JOB_NAME
from pipeline.runners.flags import with_runner_defaults
from stack.kafka import ensure_topics

__all__ = ["SERVICES", "SeededTopics", "compare_rows", "ratios", "rule_reasons"]

logger = logging.getLogger(__name__)
# The services of the in-process runs (the Flink runs add the cluster and the worker pool).
SERVICES = ["kafka", "postgres", "mongo", "s3", "validator"]
REPO = Path(__file__).resolve().parents[1]
# How many differing rows a comparison shows.
EXAMPLES = 3

# A row as the engines must agree on it: (account_name, the rules' risk_reasons).
Row = tuple


def rule_reasons(reasons) -> tuple[str, ...]:
    """The rules' signals of a row's ``risk_reasons``, without the fraud model's entry.

    >>> rule_reasons(["model fraud-lgbm@1: p=0.010 < 0.500", "night: 03:00 UTC (+5)"])
    ('night: 03:00 UTC (+5)',)
    """
    return tuple(r for r in reasons or () if not r.startswith(MODEL_REASON_PREFIX))


def compare_rows(ids: list[str], rows: dict[str, Row], reference: dict[str, Row]) -> dict:
    """How many of ``ids`` have a row, and how many rows equal ``reference``'s.

    >>> compare_rows(["t1", "t2", "t3"], {"t1": ("Ann", 5, ()), "t2": ("Bo", 9, ("x",))},
    ...              {"t1": ("Ann", 5, ()), "t2": ("Bo", 7, ()), "t3": ("Cy", 1, ())})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'transactions': 3, 'rows': 2, 'missing': 1, 'rows_agree': 1,
     'differ': [{'transaction_id': 't2', 'reference': ('Bo', 7, ()), 'row': ('Bo', 9, ('x',))}]}
    """
    present = [i for i in ids if i in rows]
    differ = [i for i in present if rows[i] != reference.get(i)]
    return {
        "transactions": len(ids),
        "rows": len(present),
        "missing": len(ids) - len(present),
        "rows_agree": len(present) - len(differ),
        "differ": [{"transaction_id": i, "reference": reference.get(i), "row": rows[i]}
                   for i in differ[:EXAMPLES]],
    }


def ratios(tps: dict[str, float | None]) -> dict[str, float | None]:
    """Each engine's transactions/s over every later one's, in the order given (None where
    a figure is missing or zero).

    >>> ratios({"flink": 1200.0, "quix": 600.0, "baseline": 0.0})
    {'flink_over_quix': 2.0, 'flink_over_baseline': None, 'quix_over_baseline': None}
    """
    names = list(tps)
    return {
        f"{a}_over_{b}": round(tps[a] / tps[b], 2) if tps[a] is not None and tps[b] else None
        for i, a in enumerate(names) for b in names[i + 1:]
    }


def delete_s3_objects(s3: dict, prefix: str) -> int:
    """Deletes every object whose key starts with ``prefix`` in the bucket of ``s3`` (a
    ``stack.up`` endpoint); returns how many there were."""
    client = boto3.client(
        "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["s3_access_key_id"],
        aws_secret_access_key=s3["s3_secret_access_key"], region_name=s3["s3_region_name"],
    )
    bucket = s3.get("bucket", "riskpipe")
    deleted = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                deleted += len(keys)
    finally:
        client.close()
    return deleted


class SeededTopics:
    """Fresh topics (a per-run prefix), seeded simulations on them, and their rows."""

    def __init__(self, endpoints: dict, prefix: str = "bench"):
        self.bootstrap = endpoints["kafka"]["bootstrap_servers"]
        self.dsn = endpoints["postgres"]["dsn"]
        self.mongo_uri = endpoints["mongo"]["uri"]
        self.validator_url = endpoints["validator"]["url"]
        self.s3 = endpoints["s3"]
        self.s3_bucket = endpoints["s3"].get("bucket", "riskpipe")
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}."
        self.topics = {
            "accounts": self.prefix + "accounts",
            "transactions": self.prefix + "transactions",
            "ground_truth": self.prefix + "ground-truth",
            "dead_letters": self.prefix + "dead-letters",
            "fraud_results": self.prefix + "fraudulent-transactions-result",
            "users": self.prefix + "users",
        }
        self.mongo_db = self.prefix.rstrip(".").replace("-", "_")
        self.truth_file = Path(tempfile.mkdtemp(prefix="riskpipe-bench-")) / "truth.jsonl"
        self.truth: list[dict] = []  # ground truth of the last simulation
        self.ids: list[str] = []  # transaction ids of the last simulation
        self.all_ids: list[str] = []  # of every simulation, for the cleanup

    def simulate(self, count: int | None, seed: int, accounts: int, *extra: str) -> dict:
        """Runs the simulator CLI (``count=None``: ``extra`` says how much); its JSON summary
        plus the CLI's wall time."""
        ensure_topics(
            {self.topics[k]: 1 for k in ("dead_letters", "fraud_results", "users")},
            bootstrap=self.bootstrap,
        )
        command = [
            sys.executable, "-m", "simulator", "--seed", str(seed),
            *(["--count", str(count)] if count is not None else []),
            "--accounts", str(accounts), "--topic-prefix", self.prefix,
            "--bootstrap-servers", self.bootstrap, "--postgres-dsn", self.dsn,
            "--ground-truth-all", "--ground-truth-file", str(self.truth_file), "--quiet",
            *extra,
        ]
        started = time.perf_counter()
        done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"simulator failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.truth = [json.loads(line) for line in self.truth_file.read_text().splitlines()]
        self.ids = [r["transaction_id"] for r in self.truth if r.get("kind") == "transaction"]
        self.all_ids += self.ids
        result["cli_wall_s"] = round(wall, 3)
        return result

    def job_args(self, group: str, *extra: str) -> list[str]:
        """The job's flags to read these topics with consumer group ``<prefix><group>``."""
        return with_runner_defaults([
            f"--kafka_bootstrap={self.bootstrap}",
            f"--postgres_dsn={self.dsn}",
            f"--mongo_uri={self.mongo_uri}",
            f"--mongo_db={self.mongo_db}",
            f"--validator_url={self.validator_url}",
            f"--s3_bucket={self.s3_bucket}",
            f"--accounts_topic={self.topics['accounts']}",
            f"--transactions_topic={self.topics['transactions']}",
            f"--dead_letter_topic={self.topics['dead_letters']}",
            f"--fraud_results_topic={self.topics['fraud_results']}",
            f"--users_topic={self.topics['users']}",
            f"--consumer_group={self.prefix}{group}",
            "--start_offset=earliest",
            *extra,
        ], JOB_NAME)

    def _query(self, sql: str, ids: list[str]) -> list[tuple]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, (ids,))
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def rows(self, ids: list[str]) -> dict[str, Row]:
        """(account_name, the rules' risk_reasons) of each id's row: the fraud model's
        reason, when the job scored with one, is left out."""
        found = self._query("SELECT transaction_id, account_name, risk_reasons "
                            "FROM banking.attributed_transactions "
                            "WHERE transaction_id = ANY(%s)", ids)
        return {tid: (name, rule_reasons(reasons)) for tid, name, reasons in found}

    def row_count(self, ids: list[str]) -> int:
        (count,), = self._query("SELECT count(*) FROM banking.attributed_transactions "
                                "WHERE transaction_id = ANY(%s)", ids)
        return count

    def clear_rows(self, ids: list[str]) -> None:
        """Deletes the rows of ``ids``, so the next run's ``written_at`` is its own, then
        vacuums the table, so each engine upserts into the same table: not one holding the
        dead rows and index entries of the runs before it, as the later engines did."""
        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True  # each statement its own transaction; VACUUM needs none
            with conn.cursor() as cur:
                cur.execute("DELETE FROM banking.attributed_transactions "
                            "WHERE transaction_id = ANY(%s)", (ids,))
                cur.execute("VACUUM (ANALYZE) banking.attributed_transactions")
        finally:
            conn.close()

    def cleanup(self) -> None:
        """Deletes every simulation's rows, the Mongo database, the S3 objects and the
        topics."""
        if self.all_ids:
            self.clear_rows(self.all_ids)
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000)
        try:
            client.drop_database(self.mongo_db)
        except pymongo.errors.PyMongoError as error:  # best effort
            logger.warning("bench: could not drop mongo db %s: %s", self.mongo_db, error)
        finally:
            client.close()
        try:  # the objects the job wrote under <bucket>/<prefix>…/ (one folder per topic)
            delete_s3_objects(self.s3, self.prefix)
        except (BotoCoreError, ClientError) as error:  # best effort
            logger.warning("bench: could not delete the S3 objects under %s: %s",
                           self.prefix, error)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.delete_topics(list(self.topics.values())).values():
            try:
                future.result(30)
            except KafkaException:
                pass
        self.truth_file.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(
        "tools.bench_data is a library, not a command: it is used by python -m tools.bench, python -m tools.evaluate"
    )
