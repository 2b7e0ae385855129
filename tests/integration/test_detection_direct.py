"""The job with the fraud model (FnApiRunner, bounded) decides what the pure replay decides.

The simulator CLI writes a seeded bank (a few thousand transactions, 4 % fraud, late
accounts) to topics of its own; ``python -m pipeline.main`` reads them with the committed
model and writes Postgres. The same records, generated in-process from the same simulator
configuration, go through the job's pure per-record code (:mod:`tools.replay`) and the same
model. Every transaction must get the same ``risk_score`` and the same model reason
(version, probability, alert and the features named), and its ``is_fraudulent`` must be what
the documented decision gives: the bank's label, else for ``unidentified`` transactions the
model's alert or the validator's verdict (the validator's rules run in-process on the
request the job sends), and never for ``cleared`` ones.

Account updates are switched off: the job joins a late account's first transactions with
its PostgreSQL row (the newest version), the replay with its first message; they differ only
if the account changed in between (tools/replay.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from pipeline.domain.model import COMMITTED_MODEL_PATH
from stack.kafka import ensure_topics
from tests.detection_replay import Expected, expected

REPO = Path(__file__).resolve().parents[2]
SIMULATION = ["--seed", "8080", "--count", "4000", "--accounts", "150", "--fraud-rate", "0.04",
              "--update-rate", "0", "--bad-rate", "0"]


def _python(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def job(pipeline_stack, tmp_path_factory):
    """The simulated bank through the job; its rows in Postgres by transaction id."""
    bootstrap = pipeline_stack["kafka"]["bootstrap_servers"]
    dsn = pipeline_stack["postgres"]["dsn"]
    prefix = f"det{uuid.uuid4().hex[:10]}."
    outputs = {name: prefix + name for name in
               ("dead-letters", "fraudulent-transactions-result", "users")}
    ensure_topics(dict.fromkeys(outputs.values(), 1), bootstrap=bootstrap)
    truth_file = tmp_path_factory.mktemp("detection") / "truth.jsonl"
    done = _python("-m", "simulator", *SIMULATION, "--topic-prefix", prefix,
                   "--bootstrap-servers", bootstrap, "--postgres-dsn", dsn, "--ground-truth-all",
                   "--ground-truth-file", str(truth_file), "--quiet", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [row["transaction_id"] for row in map(json.loads, truth_file.read_text().splitlines())
           if row["kind"] == "transaction"]
    done = _python(
        "-m", "pipeline.main", f"--kafka_bootstrap={bootstrap}", f"--postgres_dsn={dsn}",
        f"--mongo_uri={pipeline_stack['mongo']['uri']}", f"--mongo_db={prefix.rstrip('.')}",
        f"--validator_url={pipeline_stack['validator']['url']}",
        f"--accounts_topic={prefix}accounts", f"--transactions_topic={prefix}transactions",
        f"--dead_letter_topic={outputs['dead-letters']}",
        f"--fraud_results_topic={outputs['fraudulent-transactions-result']}",
        f"--users_topic={outputs['users']}", f"--consumer_group={prefix}job",
        "--start_offset=earliest", f"--model_path={COMMITTED_MODEL_PATH}", timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT transaction_id, risk_score, risk_reasons, is_fraudulent, validated_by,"
                    " evaluation FROM banking.attributed_transactions "
                    "WHERE transaction_id = ANY(%s)", (ids,))
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        cur.execute("DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                    (ids,))
    return ids, rows, summary


@pytest.fixture(scope="module")
def replayed() -> Expected:
    """The same records through the pure per-record code and the committed model."""
    return expected(SIMULATION, count=4000)


def test_every_transaction_is_scored_by_the_model(job, replayed):
    ids, rows, summary = job
    assert sorted(rows) == sorted(ids) == sorted(replayed.data.ids.tolist())
    assert all(reasons[0].startswith("model fraud-lgbm@") for _, reasons, *_ in rows.values())
    assert summary["model_alerts"] >= int(replayed.alerts.sum()) > 0


def test_risk_scores_and_model_reasons_equal_the_replay(job, replayed):
    _, rows, _ = job
    differ = replayed.differences(rows)
    assert not differ, f"{len(differ)} of {len(rows)} differ, e.g. {differ[:3]}"


def test_is_fraudulent_is_the_bank_label_else_the_alert_or_the_validator(job, replayed):
    _, rows, _ = job
    data, alerts = replayed.data, replayed.alerts
    decided = {
        tid: (evaluation == "fraudulent"
              or (evaluation == "unidentified" and bool(alert or validator)))
        for tid, evaluation, alert, validator in zip(
            data.ids, data.evaluation, alerts, data.validator_below_alert)
    }
    differ = [(tid, rows[tid][2], want) for tid, want in decided.items() if rows[tid][2] != want]
    assert not differ, f"{len(differ)} decisions differ, e.g. {differ[:5]}"
    unidentified_alerts = [tid for tid, a, e in zip(data.ids, alerts, data.evaluation)
                           if a and e == "unidentified"]
    assert unidentified_alerts, "the sample has no alert on an unidentified transaction"
    assert {rows[tid][3] for tid in unidentified_alerts} == {"validator"}
