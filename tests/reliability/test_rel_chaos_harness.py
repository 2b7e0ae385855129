"""The chaos harness without Flink: two runs of one seeded input, each replayed into its own
topics and processed by the job (bounded, FnApiRunner), reconcile clean in every sink and
against each other; a run's outputs are cleared afterwards; the table shows every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from tools.chaos import REFERENCE, Result, Run, table
from tools.chaos.runs import _consistent
from tools.reconcile import Outcome, Reference, SinkFigures
from tools.seeded_input import SeededInput

REPO = Path(__file__).resolve().parents[2]
SEED = 90_210_778  # this test's own account and transaction ids
COUNT = 600


@pytest.fixture(scope="module")
def services(stack_up):
    return stack_up("kafka", "postgres", "mongo", "s3", "validator")


def process(run: Run) -> None:
    """The job over the run's topics, bounded, in a subprocess (what Flink does in chaos)."""
    args = [a for a in run.job_args() if a != "--runner=FlinkRunner"][1:]
    done = subprocess.run([sys.executable, *args, "--join_ttl_s=5",
                           f"--validator_url={run.services['validator']['url']}",
                           f"--mongo_uri={run.mongo_uri}", *run.services["s3"]["pipeline_args"]],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def two_runs(services, tmp_path_factory):
    """The same input run twice, the second reconciled against the first's final values;
    each run's outputs cleared afterwards. Returns [(reconciliation, final values, run)]."""
    workdir = tmp_path_factory.mktemp("harness")
    source = SeededInput.generate(SEED, COUNT, workdir, accounts=40)
    runs = []
    for attempt in range(2):
        run = Run(REFERENCE, source, tps=3000, scale=1.0, services=services, workdir=workdir)
        run.prepare()
        run.start_input().wait(120)
        process(run)
        reference = runs[0][1] if runs else None
        rec, own = run.check(reference, final=True)
        print(f"run {attempt}: {rec.line()}")
        run.clear_outputs()
        runs.append((rec, own, run))
    return runs


def test_each_run_reconciles_clean_in_every_sink_and_is_cleared(services, two_runs):
    for attempt, (rec, own, run) in enumerate(two_runs):
        for name, sink in rec.sinks.items():
            assert sink.missing == sink.extra == 0 and not sink.duplicated, (name, sink.examples)
            assert not sink.stale_names and not sink.wrong_names, (name, sink.examples)
        assert set(rec.sinks) == {"postgres", "kafka", "mongo", "s3", "dead_letters"}
        assert rec.sinks["kafka"].found == rec.sinks["s3"].found > 0
        assert rec.dead_lettered > 0
        assert _consistent(own)  # the fraud results agree with Postgres
        compared = [rec.sinks[s].differing for s in ("postgres", "kafka", "mongo", "s3")]
        assert all(d is None for d in compared) if attempt == 0 else all(
            isinstance(d, int) for d in compared)
        assert not run.notes, run.notes
        topics = AdminClient({"bootstrap.servers": run.bootstrap}).list_topics(timeout=10).topics
        assert not set(run.topics.values()) & set(topics)
        assert run.prefix not in MongoClient(run.mongo_uri).list_database_names()
        s3 = services["s3"]
        listing = boto3.client(
            "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["s3_access_key_id"],
            aws_secret_access_key=s3["s3_secret_access_key"], region_name=s3["s3_region_name"],
        ).list_objects_v2(Bucket=run.bucket, Prefix=run.topics["results"] + "/")
        assert not listing.get("Contents")
    first = two_runs[0][1]
    assert Reference.from_json(first.to_json()) == first


def test_two_runs_of_one_input_end_with_the_same_values(two_runs):
    """Replay-exact: the same input gives the same names, scores and decisions in every sink,
    whichever order a run happened to read the two topics in."""
    (_, first, _), (second_rec, second, _) = two_runs
    differing = {s: second_rec.sinks[s].examples.get("differing")
                 for s in ("postgres", "kafka", "mongo", "s3")}
    assert first.sinks == second.sinks, differing


def outcome(tid, score=80, fraud=True):
    return Outcome(tid, "a1", "Ada", score, ("night",), fraud, "bank")


def test_fraud_results_must_agree_with_postgres_to_be_settled():
    rows = {"f1": outcome("f1"), "t1": outcome("t1", fraud=False)}
    agreed = Reference({"postgres": rows, "kafka": {"f1": outcome("f1")},
                        "s3": {"f1": outcome("f1")}}, set())
    assert _consistent(agreed)
    lagging = Reference({"postgres": rows, "kafka": {"f1": outcome("f1")},
                         "s3": {"f1": outcome("f1", score=70)}}, set())  # S3 not yet flushed
    assert not _consistent(lagging)


def test_a_run_is_ok_only_with_every_failing_figure_zero_and_compared():
    clean = {name: SinkFigures(name, differing=0) for name in ("postgres", "kafka")}
    assert Result("f", sinks=clean, compared=True).ok
    unknown = {"postgres": SinkFigures("postgres", differing=None)}
    assert not Result("f", sinks=unknown, compared=True).ok
    assert Result("reference", sinks=unknown, compared=False).ok
    stale = {"kafka": SinkFigures("kafka", stale_names=1, differing=0)}
    assert not Result("f", sinks=stale, compared=True).ok
    assert not Result("f", sinks=clean, compared=True, error="TimeoutError: ...").ok
    assert not Result("f", sinks=clean, compared=True, wrongly_cleared=1).ok
    assert not Result("f").ok  # nothing reconciled


def test_the_table_has_a_row_per_fault_and_sink_with_every_column():
    figures = {"postgres": SinkFigures("postgres", expected=10, found=9, missing=1,
                                       duplicated=None, differing=2),
               "kafka": SinkFigures("kafka", expected=2, found=2, redelivered=3, differing=0)}
    text = table([Result("kafka_stop_30s", sinks=figures, compared=True, seconds=12.5)])
    lines = text.splitlines()
    assert lines[0].split() == ["fault", "sink", "expected", "found", "missing", "duplicated",
                                "extra", "stale_names", "wrong_names", "differing",
                                "redelivered", "superseded", "ok"]
    assert lines[2].split() == ["kafka_stop_30s", "postgres", "10", "9", "1", "-", "0", "0",
                                "0", "2", "0", "0", "FAILED"]
    assert lines[3].split() == ["kafka_stop_30s", "kafka", "2", "2", "0", "0", "0", "0", "0",
                                "0", "3", "0", "OK"]
    assert "FAILED" in lines[4]
