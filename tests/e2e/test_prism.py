"""The whole job on Prism, Beam's portable reference runner, against the FnApiRunner.

A seeded simulation (3,000 messages over 1,000 accounts: 1 % malformed, 5 % of the accounts
late, 60 account updates, 3 % fraud) goes to fresh topics. ``python -m pipeline.main --runner=PrismRunner``
reads them bounded, to their end offsets, on the Prism binary the stack builds
(``stack/prism.py``); then the same command without a runner (the FnApiRunner) reads them
again with a consumer group of its own. The Postgres rows and the MongoDB fraud results of
each run are read after it and deleted before the next.

What the two runs must agree on:

- every transaction's row: ``account_name``, ``risk_score``, ``risk_reasons``,
  ``is_fraudulent``, ``validated_by`` (a row depends on the input, never on the order a
  runner happened to read it in);
- the fraud results in MongoDB, every field but ``processed_at``;
- the counters counted once per record or transaction: ``kafka_records_read``, ``parsed``,
  ``dead_lettered``, ``joined``, ``expired_unjoined``, ``scored``.

The other counters count rows as they are written, corrections included: a transaction read
before a newer version of its account is written again once that version arrives, so
``postgres_rows_written``, ``high_risk`` (of a transaction's first row) and the routing
counters follow the order in which a runner interleaved the two topics.

The rows agree within the bound the join keeps them exact in: the newest ``LOG_SIZE``
transactions of an account (``pipeline/domain/attribution.py``). An account version read
after more of its account's transactions keeps the older ones' rows as first written, and a
runner may read one topic's partition well ahead of the other. No account of this
simulation has more transactions than that, which the test checks first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import psycopg2
import pymongo
import pytest

from pipeline.domain.attribution import LOG_SIZE
from pipeline.runners.flags import prism_binary_name
from stack import config
from stack.prism import prism_binary
from tools.bench_data import SERVICES, SeededTopics

REPO = Path(__file__).resolve().parents[2]
SEED = 7311
COUNT = 3_000
ACCOUNTS = 1_000
RUN_TIMEOUT_S = 420
# Counted once per Kafka record or per transaction, whatever the order of reading.
ORDER_FREE_COUNTERS = (
    "kafka_records_read", "parsed", "dead_lettered", "joined", "expired_unjoined", "scored",
)
# Each run's consumer group (suffix).
GROUPS = {"PrismRunner": "prism", "FnApiRunner": "fnapi"}
# The row columns compared (Postgres banking.attributed_transactions).
COMPARED = "account_name, risk_score, risk_reasons, is_fraudulent, validated_by"


def _run_job(data: SeededTopics, group: str, *extra: str) -> tuple[dict, str]:
    """Runs the job bounded over ``data``'s topics; returns its summary and its stderr."""
    args = data.job_args(group, *extra)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.main", *args],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"{group} run failed:\n{done.stderr[-4000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{group}: no summary on stdout: {done.stdout[-2000:]!r}"
    summary = json.loads(lines[-1])
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(f"{group}: {summary}")
    return summary, done.stderr


def _rows(data: SeededTopics) -> dict[str, tuple]:
    conn = psycopg2.connect(data.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT transaction_id, {COMPARED} FROM banking.attributed_transactions "
                "WHERE transaction_id = ANY(%s)",
                (data.ids,),
            )
            found = cur.fetchall()
    finally:
        conn.close()
    return {tid: (name, score, tuple(reasons or ()), fraud, by)
            for tid, name, score, reasons, fraud, by in found}


def _fraud_results(data: SeededTopics) -> dict[str, dict]:
    """Every MongoDB fraud result and user by collection and ``_id`` (``processed_at``
    left out: it is when a run wrote it); the database is dropped afterwards."""
    client = pymongo.MongoClient(data.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[data.mongo_db]
        found = {
            f"{name}/{doc['_id']}": {k: v for k, v in doc.items() if k != "processed_at"}
            for name in ("transactions", "users")
            for doc in db[name].find()
        }
        client.drop_database(data.mongo_db)
        return found
    finally:
        client.close()


def _delete_s3_folders(s3: dict, folders: list[str]) -> None:
    """Deletes the S3 objects the runs wrote (one folder per result topic)."""
    client = boto3.client(
        "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["s3_access_key_id"],
        aws_secret_access_key=s3["s3_secret_access_key"], region_name=s3["s3_region_name"],
    )
    for folder in folders:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3["bucket"], Prefix=f"{folder}/"
        ):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=s3["bucket"], Key=obj["Key"])


@pytest.fixture(scope="module")
def runs(stack_up):
    """The simulation, the job on Prism and the job on the FnApiRunner, once."""
    binary = prism_binary()  # built on first use (about 90 s), then cached
    endpoints = stack_up(*SERVICES)
    data = SeededTopics(endpoints, prefix="prism")
    try:
        simulated = data.simulate(
            COUNT, SEED, ACCOUNTS, "--bad-rate", "0.01", "--late-account-rate", "0.05",
            "--update-rate", "0.02", "--fraud-rate", "0.03",
        )
        data.clear_rows(data.ids)  # the seed fixes the ids: rows of an earlier session go
        per_account = Counter(
            row["account_id"] for row in data.truth if row.get("kind") == "transaction"
        )
        results = {
            "simulated": simulated, "binary": binary, "ids": data.ids,
            "busiest_account": max(per_account.values()),
        }
        for runner, group in GROUPS.items():
            summary, stderr = _run_job(data, group, f"--runner={runner}")
            results[runner] = {
                "summary": summary, "stderr": stderr,
                "args": data.job_args(group, f"--runner={runner}"),
                "rows": _rows(data), "mongo": _fraud_results(data),
            }
            data.clear_rows(data.ids)
        yield results
    finally:
        data.cleanup()
        _delete_s3_folders(
            endpoints["s3"], [data.topics["fraud_results"], data.topics["users"]]
        )


def test_no_account_has_more_transactions_than_the_join_keeps_exact(runs):
    assert runs["busiest_account"] <= LOG_SIZE
    assert runs["simulated"]["accounts"]["update"] > 0 and runs["simulated"]["accounts"]["late"] > 0


def test_the_job_ran_on_the_stacks_prism_binary(runs):
    binary = runs["binary"]
    assert binary == config.cache_dir() / prism_binary_name()
    prism = runs["PrismRunner"]
    assert f"--prism_location={binary}" in prism["args"]
    # Beam logs the command of the runner process it starts.
    assert str(binary) in prism["stderr"]
    assert prism["summary"]["state"] == "DONE"


def test_both_runners_count_every_record_once(runs):
    simulated = runs["simulated"]
    prism, fnapi = runs["PrismRunner"]["summary"], runs["FnApiRunner"]["summary"]
    differ = {name: (prism[name], fnapi[name]) for name in ORDER_FREE_COUNTERS
              if prism[name] != fnapi[name]}
    reported = [line for runner in GROUPS for line in runs[runner]["stderr"].splitlines()
                if "as the runner reported" in line]
    assert not differ, f"counters differ (Prism, FnApiRunner): {differ}; {reported}"
    assert prism["joined"] == simulated["transactions"] == len(runs["ids"])
    assert prism["dead_lettered"] == simulated["bad"]["messages"] > 0
    assert prism["expired_unjoined"] == 0
    for summary in (prism, fnapi):
        assert summary["postgres_rows_written"] >= summary["joined"]


def test_both_runners_write_the_same_row_for_every_transaction(runs):
    ids = runs["ids"]
    prism, fnapi = runs["PrismRunner"]["rows"], runs["FnApiRunner"]["rows"]
    assert len(prism) == len(fnapi) == len(ids)
    differ = [(tid, prism[tid], fnapi[tid]) for tid in ids if prism[tid] != fnapi[tid]]
    assert not differ, f"{len(differ)} rows differ (Prism, FnApiRunner), e.g. {differ[:3]}"
    decided = {row[4] for row in prism.values()}
    assert {"bank", "validator", "none"} <= decided, decided


def test_both_runners_write_the_same_fraud_results(runs):
    prism, fnapi = runs["PrismRunner"]["mongo"], runs["FnApiRunner"]["mongo"]
    assert any(key.startswith("transactions/") for key in prism)
    assert sorted(prism) == sorted(fnapi)
    differ = [key for key in prism if prism[key] != fnapi[key]]
    assert not differ, f"{len(differ)} documents differ, e.g. {differ[:3]}"
