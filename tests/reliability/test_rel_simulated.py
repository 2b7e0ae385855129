"""The simulator's own mix (fraud, bad messages, late accounts) through the real
pipeline, checked by the reconciliation CLI against the simulator's ground truth."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import stack.kafka

REPO = Path(__file__).resolve().parents[2]


def _python(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_simulated_mix_reconciles_against_ground_truth(
    tmp_path, kafka_bootstrap, postgres_dsn, validator_url, s3_config, stack_up,
):
    mongo_uri = stack_up("mongo")["mongo"]["uri"]
    run_id = uuid.uuid4().hex[:10]
    prefix = f"relsim-{run_id}."
    topics = {f"{prefix}{n}": 2 for n in ("accounts", "transactions", "dead-letters", "fraud",
                                          "users")}
    outputs = [f"{prefix}{n}" for n in ("dead-letters", "fraud", "users")]
    stack.kafka.ensure_topics(topics, kafka_bootstrap,
                              configs={t: stack.kafka.COMPACTED for t in outputs})
    truth = tmp_path / "ground_truth.jsonl"
    sim = _python(
        "-m", "simulator", "--count", "3000", "--accounts", "200", "--bad-rate", "0.05",
        "--fraud-rate", "0.03", "--unidentified-rate", "0.05", "--update-rate", "0",
        "--bootstrap-servers", kafka_bootstrap, "--postgres-dsn", postgres_dsn,
        "--topic-prefix", prefix, "--ground-truth-topic", "", "--ground-truth-file", str(truth),
        "--ground-truth-all", "--partitions", "2", "--quiet",
    )
    assert sim.returncode == 0, sim.stderr[-2000:]
    common = [f"--kafka_bootstrap={kafka_bootstrap}", f"--postgres_dsn={postgres_dsn}",
              f"--transactions_topic={prefix}transactions",
              f"--dead_letter_topic={prefix}dead-letters"]
    job = _python(
        "-m", "pipeline.main", *common, f"--accounts_topic={prefix}accounts",
        f"--fraud_results_topic={prefix}fraud", f"--users_topic={prefix}users",
        f"--validator_url={validator_url}", f"--mongo_uri={mongo_uri}",
        f"--mongo_db=relsim_{run_id}", f"--consumer_group={prefix}group",
        "--start_offset=earliest", "--join_ttl_s=5", *s3_config["pipeline_args"],
    )
    assert job.returncode == 0, job.stderr[-4000:]
    check = _python("-m", "tools.reconcile", *common, f"--ground_truth_file={truth}",
                    f"--accounts_topic={prefix}accounts", f"--results_topic={prefix}fraud",
                    f"--mongo_uri={mongo_uri}", f"--mongo_db=relsim_{run_id}",
                    f"--s3_prefix=s3://{s3_config['bucket']}/{prefix}fraud", timeout=120)
    print(check.stdout)
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    assert "reconcile: OK messages=3000 " in check.stdout
    # Every sink was checked, and held every fraudulent transaction.
    for sink in ("postgres", "kafka", "mongo", "s3", "dead_letters"):
        assert f"\n  {sink}: " in check.stdout, sink
    assert " found=0 " not in check.stdout
