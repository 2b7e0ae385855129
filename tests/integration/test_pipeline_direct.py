"""End to end on the DirectRunner (FnApiRunner, bounded) against the real local stack.

The simulator writes a seeded bank (≈3000 transactions, 1% malformed, late accounts) to
topics of its own; ``python -m pipeline.main`` reads them to the end offsets and writes
Postgres, Mongo, S3 and Kafka. The tests then check every output against the
simulator's ground truth, and that a second run over the same offsets changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pymongo
import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.domain.scoring import (
    WEIGHTS,
    AccountFeatures,
    score_transaction,
    update,
)
from pipeline.io.postgres import ACCOUNT_COLUMNS
from pipeline.records import Account, Transaction
from stack.kafka import ensure_topics

REPO = Path(__file__).resolve().parents[2]
SEED = 4242
COUNT = 3000
ACCOUNTS = 200
BAD_RATE = 0.01
README_QUERY = (
    "SELECT transaction_id, account_id, account_name, amount, risk_score "
    "FROM banking.attributed_transactions ORDER BY datetime_occurred DESC LIMIT 5;"
)
# Columns compared between two runs: all of them but processed_at.
COMPARED = (
    "transaction_id, account_id, counterparty_account_id, transaction_type, amount, "
    "currency, transaction_status, datetime_occurred, sender_bank, evaluation, "
    "account_name, risk_score, risk_reasons, is_fraudulent, validated_by"
)
REASON_WEIGHT = re.compile(r"\(\+(\d+)\)$")


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary on stdout: {stdout[-2000:]!r}"
    return json.loads(lines[-1])


class Run:
    """One simulated bank on its own topics, and the pipeline runs over it."""

    def __init__(self, stack: dict, tmp: Path):
        self.bootstrap = stack["kafka"]["bootstrap_servers"]
        self.dsn = stack["postgres"]["dsn"]
        self.mongo_uri = stack["mongo"]["uri"]
        self.validator_url = stack["validator"]["url"]
        self.s3 = stack["s3"]
        self.prefix = f"it{uuid.uuid4().hex[:10]}."
        self.mongo_db = self.prefix.rstrip(".")
        self.topics = {
            "dead_letter": self.prefix + "dead-letters",
            "fraud_results": self.prefix + "fraudulent-transactions-result",
            "users": self.prefix + "users",
        }
        self.ground_truth_file = tmp / "ground-truth.jsonl"
        self.sim_summary: dict = {}
        self.truth: list[dict] = []
        self.runs: list[dict] = []

    def simulate(self, *overrides: str) -> None:
        """The seeded bank; ``overrides`` are simulator flags given after (and over) these."""
        done = _python(
            "-m", "simulator", "--seed", str(SEED), "--count", str(COUNT),
            "--accounts", str(ACCOUNTS), "--bad-rate", str(BAD_RATE),
            "--late-account-rate", "0.05", "--update-rate", "0", "--fraud-rate", "0.03",
            "--topic-prefix", self.prefix, "--bootstrap-servers", self.bootstrap,
            "--postgres-dsn", self.dsn, "--ground-truth-all",
            "--ground-truth-file", str(self.ground_truth_file), "--quiet", *overrides,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        self.sim_summary = _last_json(done.stdout)
        self.truth = [json.loads(line) for line in self.ground_truth_file.read_text().splitlines()]

    def rows(self, kind: str) -> list[dict]:
        return [row for row in self.truth if row["kind"] == kind]

    def pipeline(self, group: str) -> dict:
        args = [
            "-m", "pipeline.main",
            f"--kafka_bootstrap={self.bootstrap}",
            f"--postgres_dsn={self.dsn}",
            f"--mongo_uri={self.mongo_uri}",
            f"--mongo_db={self.mongo_db}",
            f"--validator_url={self.validator_url}",
            f"--s3_bucket={self.s3.get('bucket', 'riskpipe')}",
            f"--accounts_topic={self.prefix}accounts",
            f"--transactions_topic={self.prefix}transactions",
            f"--dead_letter_topic={self.topics['dead_letter']}",
            f"--fraud_results_topic={self.topics['fraud_results']}",
            f"--users_topic={self.topics['users']}",
            f"--consumer_group={self.prefix}{group}",
            "--start_offset=earliest",
        ]
        done = _python(*args, timeout=150)
        assert done.returncode == 0, done.stderr[-4000:]
        result = _last_json(done.stdout)
        assert result["state"] == "DONE", result
        self.runs.append(result)
        return result

    def snapshot(self, ids: list[str]) -> list[tuple]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT {COMPARED} FROM banking.attributed_transactions "
                "WHERE transaction_id = ANY(%s) ORDER BY transaction_id",
                (ids,),
            )
            return cur.fetchall()

    def mongo_counts(self) -> dict[str, int]:
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            db = client[self.mongo_db]
            return {name: db[name].count_documents({}) for name in db.list_collection_names()}
        finally:
            client.close()

    def dead_letters(self) -> list[dict]:
        """Every message of the dead-letter topic, read to its end offsets."""
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"{self.prefix}dl-reader",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 4 * 1024 * 1024,
        })
        topic = self.topics["dead_letter"]
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            out, deadline = [], time.monotonic() + 30
            while ends and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is None or message.error():
                    continue
                out.append(json.loads(message.value()))
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
            assert not ends, f"dead-letter topic not read to its end: {ends}"
            return out
        finally:
            consumer.close()

    def cleanup(self) -> None:
        ids = [row["transaction_id"] for row in self.rows("transaction")]
        if ids:
            with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    "DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                    (ids,),
                )
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(self.mongo_db)
        finally:
            client.close()


@pytest.fixture(scope="module")
def run(pipeline_stack, tmp_path_factory):
    """The simulated bank, processed once; ``run.runs[0]`` is the pipeline's summary."""
    bank = Run(pipeline_stack, tmp_path_factory.mktemp("bank"))
    ensure_topics({name: 1 for name in bank.topics.values()}, bootstrap=bank.bootstrap)
    bank.simulate()
    # The seed fixes the ids: rows of an earlier session must not count for this one.
    bank.cleanup()
    bank.pipeline("first")
    yield bank
    bank.cleanup()


def test_simulation_is_as_configured(run):
    summary = run.sim_summary
    assert summary["messages"]["transactions"] == COUNT
    assert summary["bad"]["messages"] > 0
    assert summary["accounts"]["late"] > 0
    assert len(run.rows("transaction")) == summary["transactions"]
    assert len(run.rows("bad")) == summary["bad"]["messages"]


def test_counters_match_the_simulation(run):
    figures, summary = run.runs[0], run.sim_summary
    assert figures["dead_lettered"] == summary["bad"]["messages"]
    assert figures["joined"] == summary["transactions"]
    assert figures["postgres_rows_written"] == summary["transactions"]
    assert figures["expired_unjoined"] == 0


def test_every_good_transaction_is_attributed_once(run):
    truth = {row["transaction_id"]: row for row in run.rows("transaction")}
    with psycopg2.connect(run.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT t.transaction_id, t.account_id, t.account_name, a.account_name, "
            "t.risk_score, t.risk_reasons, t.evaluation, t.is_fraudulent, t.validated_by "
            "FROM banking.attributed_transactions t "
            "LEFT JOIN banking.accounts a ON a.account_id = t.account_id "
            "WHERE t.transaction_id = ANY(%s)",
            (list(truth),),
        )
        rows = cur.fetchall()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)) == len(truth)
    late = {row["account_id"] for row in run.rows("late_account")}
    late_seen = 0
    for tid, account_id, name, account_name, score, reasons, evaluation, fraud, by in rows:
        assert account_id == truth[tid]["account_id"], tid
        assert account_name is not None, f"{account_id} not in banking.accounts"
        assert name == account_name, tid
        assert 0 <= score <= 100, tid
        # the score is the capped sum of the weights its reasons name
        weights = [int(REASON_WEIGHT.search(reason).group(1)) for reason in reasons or ()]
        assert score == min(100, sum(weights)), (tid, score, reasons)
        assert all(reason.split(":")[0] in WEIGHTS for reason in reasons or ())
        assert evaluation == truth[tid]["evaluation"], tid
        if evaluation == "fraudulent":
            assert (fraud, by) == (True, "bank"), tid
        elif evaluation == "cleared":
            assert (fraud, by) == (False, "none"), tid
        late_seen += account_id in late
    assert late_seen > 0, "no transaction of a late account was checked"


def test_risk_scores_equal_the_pure_scorer_replayed_in_publish_order(run):
    """Replays each account's transactions, in the order the simulator published them,
    through scoring.score_transaction/update: the pipeline's scores must be the same."""
    order = [row["transaction_id"] for row in run.rows("transaction")]
    with psycopg2.connect(run.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT transaction_id, account_id, counterparty_account_id, transaction_type, "
            "amount, currency, transaction_status, datetime_occurred, sender_bank, "
            "evaluation, risk_score FROM banking.attributed_transactions "
            "WHERE transaction_id = ANY(%s)",
            (order,),
        )
        stored = {row[0]: row for row in cur.fetchall()}
        cur.execute(
            f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM banking.accounts "
            "WHERE account_id = ANY(%s)",
            (list({row[1] for row in stored.values()}),),
        )
        accounts = {
            row[0]: Account(**{
                c: float(v) if v.__class__.__name__ == "Decimal" else v
                for c, v in zip(ACCOUNT_COLUMNS, row)
            })
            for row in cur.fetchall()
        }
    features: dict[str, AccountFeatures] = {}
    mismatches = []
    for tid in order:
        row = stored[tid]
        txn = Transaction(
            transaction_id=row[0], account_id=row[1], counterparty_account_id=row[2],
            transaction_type=row[3], amount=float(row[4]), currency=row[5],
            transaction_status=row[6], datetime_occurred=row[7], sender_bank=row[8],
            evaluation=row[9],
        )
        state = features.get(txn.account_id, AccountFeatures())
        expected, _ = score_transaction(txn, accounts.get(txn.account_id), state)
        features[txn.account_id] = update(state, txn)
        if expected != row[10]:
            mismatches.append((tid, row[10], expected))
    assert not mismatches, f"{len(mismatches)} scores differ, e.g. {mismatches[:5]}"


def test_every_bad_message_is_dead_lettered_with_reason_and_origin(run):
    letters = run.dead_letters()
    bad = run.rows("bad")
    assert len(letters) == len(bad) == run.sim_summary["bad"]["messages"]
    digests = []
    for letter in letters:
        assert letter["reason"], letter
        assert letter["step"] == "ParseTransactions", letter
        assert letter["topic"] == run.prefix + "transactions", letter
        assert letter["partition"] is not None and letter["offset"] is not None, letter
        text = letter["payload"]
        payload = bytes.fromhex(text) if letter["payload_encoding"] == "hex" else text.encode()
        if not letter["payload_truncated"]:
            assert hashlib.sha256(payload).hexdigest() == letter["payload_sha256"], letter
        digests.append(letter["payload_sha256"])
    assert sorted(digests) == sorted(row["payload_sha256"] for row in bad)


def test_readme_query_returns_five_rows(run):
    with psycopg2.connect(run.dsn) as conn, conn.cursor() as cur:
        cur.execute(README_QUERY)
        rows = cur.fetchall()
    assert len(rows) == 5
    assert all(0 <= row[4] <= 100 for row in rows)


def test_second_run_over_the_same_offsets_changes_nothing(run):
    ids = [row["transaction_id"] for row in run.rows("transaction")]
    before, mongo_before = run.snapshot(ids), run.mongo_counts()
    assert len(before) == len(ids)
    assert sum(mongo_before.values()) > 0, "no fraud result reached Mongo"
    again = run.pipeline("second")
    assert again["postgres_rows_written"] == run.runs[0]["postgres_rows_written"]
    after = run.snapshot(ids)
    assert len(after) == len(before)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert not changed, f"{len(changed)} rows changed, e.g. {changed[:2]}"
    assert run.mongo_counts() == mongo_before


def test_a_bounded_run_reads_the_accounts_first_so_no_row_is_written_twice(
    pipeline_stack, tmp_path
):
    """The accounts topic is read to its end before the transactions topic, so every
    transaction finds its account's versions in state: its row is right the first time.
    Read the other way round (the transactions' read used to run first), each update of an
    account corrected the rows of its transactions already written."""
    bank = Run(pipeline_stack, tmp_path)
    ensure_topics({name: 1 for name in bank.topics.values()}, bootstrap=bank.bootstrap)
    bank.simulate("--count", "1500", "--bad-rate", "0", "--late-account-rate", "0",
                  "--update-rate", "0.02")
    bank.cleanup()
    try:
        figures = bank.pipeline("accounts-first")
        assert bank.sim_summary["accounts"]["update"] > 10, bank.sim_summary["accounts"]
        assert figures["joined"] == bank.sim_summary["transactions"] == 1500
        assert figures["corrected"] == 0, figures
        assert figures["postgres_rows_written"] == 1500, figures
    finally:
        bank.cleanup()


@pytest.mark.parametrize(
    "flag, service",
    [
        ("--kafka_bootstrap=127.0.0.1:1", "kafka"),
        ("--postgres_dsn=postgresql://riskpipe:riskpipe@127.0.0.1:1/riskpipe", "postgres"),
    ],
)
def test_bad_configuration_ends_with_one_clear_line(flag, service):
    done = _python("-m", "pipeline.main", flag, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"riskpipe: error: {service}:"), lines[0]
