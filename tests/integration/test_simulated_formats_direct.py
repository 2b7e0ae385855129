"""A seeded simulated bank in each older system's shape, through the job (DirectRunner).

``python -m simulator --format flinksql|poc`` writes the bank (malformed messages and late
accounts included) to per-test topics in that system's shape; ``python -m pipeline.main``
with the README's migration flags reads them. The simulator's summary and ground truth say
what must come out: one attributed row per transaction, one dead letter per bad message.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stack.kafka import ensure_topics
from tests.legacy_streams import Outputs

REPO = Path(__file__).resolve().parents[2]
SEED = 515
COUNT = 1500
ACCOUNTS = 150
# topics as each system named them, and the job's flags for them
FORMATS = {
    "flinksql": (
        ("accounts", "bank_transactions"),
        lambda p: [f"--accounts_topic={p}accounts", f"--transactions_topic={p}bank_transactions"],
    ),
    "poc": (
        ("bank-transactions",),
        lambda p: ["--accounts_topic=", f"--transactions_topic={p}bank-transactions"],
    ),
}


def _python(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_simulated_bank_in_an_older_shape(pipeline_stack, tmp_path, fmt):
    prefix = f"itS{fmt}{uuid.uuid4().hex[:8]}."
    outputs = Outputs(pipeline_stack, prefix)
    topics, job_topics = FORMATS[fmt]
    ensure_topics({prefix + t: 2 for t in topics}, outputs.bootstrap)
    truth_file = tmp_path / "truth.jsonl"
    simulated = _python(
        "-m",
        "simulator",
        "--format",
        fmt,
        "--seed",
        str(SEED),
        "--count",
        str(COUNT),
        "--accounts",
        str(ACCOUNTS),
        "--bad-rate",
        "0.02",
        "--late-account-rate",
        "0.05",
        "--update-rate",
        "0",
        "--fraud-rate",
        "0.03",
        "--topic-prefix",
        prefix,
        "--bootstrap-servers",
        outputs.bootstrap,
        "--postgres-dsn",
        outputs.dsn,
        "--ground-truth-all",
        "--ground-truth-file",
        str(truth_file),
        "--quiet",
        timeout=300,
    )
    assert simulated.returncode == 0, simulated.stderr[-3000:]
    summary = _last_json(simulated.stdout)
    truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
    expected = {row["transaction_id"]: row for row in truth if row["kind"] == "transaction"}
    assert len(expected) == summary["transactions"] and summary["bad"]["messages"] > 0
    outputs.cleanup(list(expected))  # the seed fixes the ids: forget an earlier session's rows
    try:
        ran = _python(
            "-m",
            "pipeline.main",
            *outputs.job_flags(),
            f"--input_format={fmt}",
            f"--validator_url={pipeline_stack['validator']['url']}",
            *job_topics(prefix),
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr[-4000:]
        figures = _last_json(ran.stdout)
        assert figures["state"] == "DONE", figures
        assert figures["dead_lettered"] == summary["bad"]["messages"], figures
        # every transaction's first row is joined; corrections may rewrite some rows later
        assert figures["joined"] == summary["transactions"], figures
        assert figures["expired_unjoined"] == 0, figures
        rows = outputs.rows(list(expected), ("account_id", "account_name", "evaluation"))
        assert set(rows) == set(expected)
        for tid, row in rows.items():
            assert row["account_id"] == expected[tid]["account_id"], tid
            assert row["account_name"] is not None, tid
        # the shape's evaluation: none in the Flink SQL one, the bank's in the PoC's
        evaluations = {row["evaluation"] for row in rows.values()}
        if fmt == "flinksql":
            assert evaluations == {"unidentified"}
        else:
            assert {tid for tid, row in rows.items() if row["evaluation"] == "fraudulent"} == {
                tid for tid, row in expected.items() if row["evaluation"] == "fraudulent"
            }
        letters = outputs.dead_letters()
        assert len(letters) == summary["bad"]["messages"]
        label = {"flinksql": "flinksql transaction: ", "poc": "poc transfer: "}[fmt]
        assert all(reason.startswith((label, "payload: ")) for _, reason, _ in letters)
    finally:
        outputs.cleanup(list(expected))
