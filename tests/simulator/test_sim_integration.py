"""The simulator against the local stack's real Kafka and Postgres.

Every run writes to topics of its own (``--topic-prefix``) and deletes its accounts from
``banking.accounts`` afterwards, so tests and other users of the stack do not clash.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.records import Account, Transaction
from simulator.__main__ import main
from simulator.formats import FLINKSQL_COLUMNS, SHAPES

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0


def wait_until(condition, timeout=TIMEOUT_S, interval=0.2, message="condition"):
    """Polls ``condition()`` until it returns a truthy value, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def consume(bootstrap: str, topic: str, expected: int) -> list:
    """All ``expected`` messages of ``topic`` from the beginning, in partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sim-test-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = wait_until(
            lambda: (
                consumer.list_topics(topic, timeout=10).topics[topic].partitions or None
            ),
            message=f"topic {topic}",
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata])
        messages = []

        def read_all():
            msg = consumer.poll(0.5)
            while msg is not None:
                assert msg.error() is None, msg.error()
                messages.append(msg)
                msg = consumer.poll(0)
            return len(messages) >= expected

        wait_until(
            read_all, message=f"{expected} messages in {topic} (got {len(messages)})"
        )
        assert consumer.poll(1.0) is None  # and no more
        return sorted(messages, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


@pytest.fixture
def sim_run(kafka_bootstrap, postgres_dsn, tmp_path, capsys):
    """Factory: runs ``python -m simulator`` in-process on fresh topics; returns its outputs."""
    account_ids: set[str] = set()
    created_topics: list[str] = []

    def run(*argv: str, fmt: str = "riskpipe") -> dict:
        prefix = f"simtest-{uuid.uuid4().hex[:8]}."
        truth = tmp_path / f"{prefix}truth.jsonl"
        status = main(
            [
                "--bootstrap-servers",
                kafka_bootstrap,
                "--postgres-dsn",
                postgres_dsn,
                "--topic-prefix",
                prefix,
                "--ground-truth-file",
                str(truth),
                "--quiet",
                "--format",
                fmt,
                *argv,
            ]
        )
        out, err = capsys.readouterr()
        summary = json.loads(out.strip().splitlines()[-1])
        accounts = summary["accounts"]
        shape = SHAPES[fmt]
        topics = {
            "accounts": prefix + shape.accounts_topic if shape.accounts_topic else None,
            "transactions": prefix + shape.transactions_topic,
            "ground-truth": prefix + "ground-truth",
        }
        created_topics.extend(t for t in topics.values() if t)
        result = {
            "status": status,
            "summary": summary,
            "stderr": err,
            "topics": topics,
            "truth": [json.loads(line) for line in truth.read_text().splitlines()],
            "accounts": consume(
                kafka_bootstrap, topics["accounts"], sum(accounts.values())
            )
            if topics["accounts"]
            else [],
            "transactions": consume(
                kafka_bootstrap,
                topics["transactions"],
                summary["messages"]["transactions"],
            ),
        }
        result["ground_truth"] = consume(
            kafka_bootstrap, topics["ground-truth"], len(result["truth"]) - 1
        )
        account_ids.update(
            json.loads(m.value())["account_id"] for m in result["accounts"]
        )
        account_ids.update(
            r["account_id"] for r in result["truth"] if r.get("account_id")
        )
        return result

    yield run
    if created_topics:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics(
            created_topics, operation_timeout=30
        ).values():
            future.result(30)
    if account_ids:
        with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "DELETE FROM banking.accounts WHERE account_id = ANY(%s)",
                (sorted(account_ids),),
            )
        conn.close()


def pg_accounts(dsn: str, ids) -> dict[str, dict]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT account_id, account_name, email, balance, created_at, birthdate, "
            "bank_account FROM banking.accounts WHERE account_id = ANY(%s)",
            (list(ids),),
        )
        rows = {
            r[0]: dict(
                zip(
                    (
                        "account_id",
                        "account_name",
                        "email",
                        "balance",
                        "created_at",
                        "birthdate",
                        "bank_account",
                    ),
                    r,
                )
            )
            for r in cur.fetchall()
        }
    conn.close()
    return rows


def test_seeded_run_lands_in_kafka_and_postgres(sim_run, postgres_dsn):
    out = sim_run(
        "--seed",
        "21",
        "--count",
        "4000",
        "--accounts",
        "150",
        "--bad-rate",
        "0.02",
        "--fraud-rate",
        "0.02",
        "--update-rate",
        "0.01",
        "--late-account-rate",
        "0.05",
    )
    summary = out["summary"]
    assert out["status"] == 0 and summary["delivery_failures"] == 0
    assert len(out["transactions"]) == 4000

    # Transactions: keyed by account, valid JSON records except the bad ones in ground truth.
    bad = {r["payload_sha256"]: r for r in out["truth"] if r["kind"] == "bad"}
    valid = []
    for m in out["transactions"]:
        digest = hashlib.sha256(m.value()).hexdigest()
        if digest in bad:
            assert m.key().decode() == bad.pop(digest)["account_id"]
            continue
        t = Transaction.from_dict(json.loads(m.value()))
        assert m.key().decode() == t.account_id
        valid.append(t)
    assert not bad
    assert len(valid) == summary["transactions"]
    assert Counter(t.evaluation for t in valid) == Counter(summary["evaluations"])

    # Accounts: every version on the topic; the latest of each in Postgres.
    latest = {}
    for m in out["accounts"]:
        a = Account.from_dict(json.loads(m.value()))
        assert m.key().decode() == a.account_id
        latest[a.account_id] = a
    n_accounts = summary["accounts"]
    assert len(latest) == n_accounts["initial"] + n_accounts["late"] + n_accounts["new"]
    rows = wait_until(
        lambda: (
            (r := pg_accounts(postgres_dsn, latest)) and len(r) == len(latest) and r
        ),
        message="accounts in Postgres",
    )
    for account_id, a in latest.items():
        row = rows[account_id]
        assert (row["account_name"], row["email"], row["bank_account"]) == (
            a.account_name,
            a.email,
            a.bank_account,
        )
        assert float(row["balance"]) == pytest.approx(a.balance, abs=0.01)
        assert row["created_at"] == a.created_at and row["birthdate"] == a.birthdate
    assert summary["postgres_rows"] >= len(latest)

    # Late accounts reach the accounts topic after their first transactions.
    late = {r["account_id"]: r for r in out["truth"] if r["kind"] == "late_account"}
    assert len(late) == n_accounts["late"] > 0
    first_txn = {}
    for m in out["transactions"]:
        first_txn.setdefault(m.key().decode(), m.timestamp()[1])
    for m in out["accounts"]:
        account_id = m.key().decode()
        if account_id in late and late[account_id]["transactions_before"]:
            assert m.timestamp()[1] >= first_txn[account_id]

    # Ground truth: the same rows on the topic as in the file (summary row excepted).
    topic_rows = sorted(
        json.dumps(json.loads(m.value()), sort_keys=True) for m in out["ground_truth"]
    )
    file_rows = sorted(json.dumps(r, sort_keys=True) for r in out["truth"][:-1])
    assert topic_rows == file_rows
    assert (
        sum(r.get("is_fraud") is True for r in out["truth"])
        == summary["fraud"]["transactions"]
        > 0
    )


def test_same_seed_same_messages(sim_run):
    args = ("--seed", "8", "--count", "1500", "--accounts", "60", "--bad-rate", "0.03")
    first, second = sim_run(*args), sim_run(*args)
    for topic in ("transactions", "accounts"):
        assert [(m.partition(), m.key(), m.value()) for m in first[topic]] == [
            (m.partition(), m.key(), m.value()) for m in second[topic]
        ]


def test_paced_live_run_without_seed(sim_run):
    started = time.monotonic()
    out = sim_run("--count", "400", "--tps", "200", "--accounts", "30")
    assert out["status"] == 0 and time.monotonic() - started >= 1.8
    first = Transaction.from_dict(
        json.loads(
            next(m.value() for m in out["transactions"] if m.value().startswith(b"{"))
        )
    )
    assert (
        abs(first.datetime_occurred.timestamp() - time.time()) < 120
    )  # event time is now


def test_unreachable_postgres_is_one_clear_line(kafka_bootstrap):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--postgres-dsn",
            "postgresql://riskpipe:riskpipe@127.0.0.1:1/riskpipe",
            "--connect-timeout",
            "1",
            "--count",
            "5",
            "--accounts",
            "5",
            "--topic-prefix",
            f"simtest-{uuid.uuid4().hex[:8]}.",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.startswith(
        "simulator: error: cannot reach Postgres at postgresql://riskpipe:***@127.0.0.1:1/"
    )
    assert len(proc.stderr.strip().splitlines()) == 1


def test_flinksql_run_is_unkeyed_and_fills_its_postgres_columns(sim_run, postgres_dsn):
    out = sim_run(
        # one version per account: unkeyed updates of an account may land on different
        # partitions, so no reader can tell their order from the topic alone
        "--seed", "31", "--count", "1500", "--accounts", "80", "--update-rate", "0",
        "--bad-rate", "0.02", fmt="flinksql",
    )  # fmt: skip
    assert out["status"] == 0 and out["summary"]["delivery_failures"] == 0
    assert out["topics"]["transactions"].endswith(".bank_transactions")
    assert all(m.key() is None for m in out["accounts"] + out["transactions"])
    latest = {}
    for m in out["accounts"]:
        a = json.loads(m.value())
        assert list(a) == list(FLINKSQL_COLUMNS)
        latest[a["account_id"]] = a
    bad = {r["payload_sha256"] for r in out["truth"] if r["kind"] == "bad"}
    good = [
        json.loads(m.value())
        for m in out["transactions"]
        if hashlib.sha256(m.value()).hexdigest() not in bad
    ]
    assert len(good) == out["summary"]["transactions"]
    assert {t["transaction_id"] for t in good} >= {
        r["transaction_id"] for r in out["truth"] if r["kind"] == "transaction"
    }

    def rows():
        with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT account_id, account_name, email, account_type, balance, "
                "created_at, address, bank_account FROM banking.accounts "
                "WHERE account_id = ANY(%s)",
                (list(latest),),
            )
            found = {r[0]: r for r in cur.fetchall()}
        conn.close()
        return found if len(found) == len(latest) else None

    for account_id, row in wait_until(rows, message="flinksql accounts").items():
        a = latest[account_id]
        assert row[1:4] == (a["account_name"], a["email"], a["account_type"])
        assert float(row[4]) == pytest.approx(a["balance"], abs=0.01)
        assert row[5].strftime("%Y-%m-%d %H:%M:%S") == a["created_at"]
        assert row[6] is None and row[7] is None  # not in that system's shape


def test_poc_run_is_one_topic_and_no_postgres(sim_run, postgres_dsn):
    out = sim_run(
        "--seed", "32", "--count", "800", "--accounts", "60", "--ground-truth-all",
        fmt="poc",
    )  # fmt: skip
    assert out["status"] == 0 and out["summary"]["postgres_rows"] == 0
    assert out["topics"]["accounts"] is None and out["accounts"] == []
    assert all(m.key() is None for m in out["transactions"])
    transfers = [json.loads(m.value()) for m in out["transactions"]]
    assert sorted(t["transaction_id"] for t in transfers) == sorted(
        r["transaction_id"] for r in out["truth"] if r["kind"] == "transaction"
    )
    assert {t["sender_details"]["id"] for t in transfers} <= {
        r["account_id"] for r in out["truth"] if r["kind"] == "transaction"
    }
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM banking.accounts WHERE account_id = ANY(%s)",
            (list({t["sender_details"]["id"] for t in transfers}),),
        )
        assert cur.fetchone()[0] == 0
    conn.close()
