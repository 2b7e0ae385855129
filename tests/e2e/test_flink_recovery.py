"""Recovery on the standalone Flink cluster: every sink holds each transaction once.

a) the TaskManager is SIGKILLed mid-stream (after a completed checkpoint), restarted with
   ``stack.up(["flink"])``; the job restores its last checkpoint and replays from there;
b) the job is stopped with a savepoint mid-stream and a new job started from that savepoint
   (``--savepoint_path``) finishes the stream.

Each sink is reconciled (:mod:`tools.reconcile`): nothing missing, nothing a consumer would
see twice (a transaction under two Kafka keys, on two S3 lines), nothing extra, no earlier or
wrong account name. Kafka is at least once, so a topic may hold repeats after a replay; they
are redeliveries of one key, and the tests print them.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import stack
from stack import flink_rest
from tests.e2e.conftest import Scenario, kill_taskmanager, wait_until
from tools.flink_counters import riskpipe_counters

COUNT = 3_000  # 30 s at TPS
TPS = 100
SETTLE_S = 150.0
OPERATOR = "flink_taskmanager_job_task_operator_riskpipe_"  # for the rest to arrive once the simulation ended


def _counters(job_id: str) -> dict:
    """The job's riskpipe counters over REST; from Prometheus (by ``job_id``) when the REST
    accumulators are empty, as they are for a running job here."""
    rest = riskpipe_counters(job_id)
    if rest:
        return {**{k.replace(".", "_"): v for k, v in rest.items()}, "_source": "rest"}
    query = urllib.parse.urlencode({"query": (
        f'sum by (__name__) ({{__name__=~"{OPERATOR}.+", job_id="{job_id}"}})')})
    with urllib.request.urlopen(f"http://127.0.0.1:9090/api/v1/query?{query}", timeout=10) as r:
        result = json.loads(r.read())["data"]["result"]
    found = {x["metric"]["__name__"][len(OPERATOR):]: int(float(x["value"][1])) for x in result}
    return {**found, "_source": "prometheus"} if found else {}


def _assert_every_sink_once(sc: Scenario) -> dict:
    """Waits until every sink holds every transaction, then checks each sink's figures with
    tools.reconcile (figures a primary key cannot make true: missing, duplicated in Kafka or
    S3, extra, names, the ground truth); returns them."""
    bad = sc.bad_origins()
    assert len(bad) == sc.bad, (len(bad), sc.bad)
    rec = sc.wait_reconciled(SETTLE_S)
    origins = sc.dead_letter_origins()
    figures = {
        "produced": len(sc.ids), "bad": sc.bad, "in_postgres": rec.in_postgres,
        "dead_letters": sum(origins.values()),
        "sinks": {name: s.line() for name, s in rec.sinks.items()},
    }
    print(rec.line())
    assert rec.in_postgres == len(sc.ids), figures
    for name, sink in rec.sinks.items():
        assert sink.missing == 0 and not sink.duplicated and sink.extra == 0, (name, sink.examples)
        assert not sink.stale_names and not sink.wrong_names, (name, sink.examples)
    assert rec.sinks["kafka"].found == rec.sinks["mongo"].found == rec.sinks["s3"].found > 0
    assert rec.ok, (rec.line(), rec.examples)
    # Kafka is at least once: a replay may re-send a dead letter (same key, its origin).
    missing_dl = bad - set(origins)
    extra_dl = set(origins) - bad
    assert not missing_dl and not extra_dl, (sorted(missing_dl)[:5], sorted(extra_dl)[:5])
    return figures


def test_taskmanager_killed(services, tmp_path):
    started = time.monotonic()
    sc = Scenario(services, tmp_path, seed=20260201, count=COUNT)
    sc.prepare()
    try:
        job_id = sc.submit(start_offset="earliest")
        sim = sc.start_simulator(tps=TPS)
        wait_until("some rows in Postgres", lambda: sc.postgres_figures()["rows"] >= 300, 90)
        rows_seen = sc.postgres_figures()["rows"]
        before = (flink_rest.checkpoints(job_id).get("latest") or {}).get("completed") or {}
        checkpoint = sc.wait_checkpoint(job_id, after=before.get("id", 0))
        pid = kill_taskmanager()
        killed_at = time.monotonic()
        rows_at_kill = sc.postgres_figures()["rows"]
        print(f"\nkilled TaskManager {pid} after checkpoint #{checkpoint}; rows {rows_seen}→{rows_at_kill}")
        stack.up(["flink"])
        flink_rest.wait_until_running(job_id, timeout=150)
        recovered_s = time.monotonic() - killed_at
        summary = sc.finish_simulator(sim)
        assert sim.returncode == 0
        figures = _assert_every_sink_once(sc)
        history = flink_rest.request("GET", f"/jobs/{job_id}/exceptions") or {}
        restarts = len(history.get("exceptionHistory", {}).get("entries", []))
        figures.update(
            checkpoint_before_kill=checkpoint, rows_at_kill=rows_at_kill,
            recovered_s=round(recovered_s, 1), failures_recorded=restarts,
            simulated_s=summary["elapsed_s"], test_s=round(time.monotonic() - started, 1),
        )
        print(f"TM-kill figures: {json.dumps(figures)}")
        assert restarts >= 1, "the job recorded no failure: was the TaskManager really killed?"
        assert flink_rest.job_state(job_id) == "RUNNING"
    finally:
        sc.cancel_all()


def test_stop_with_savepoint_and_restart_resumes_where_it_stopped(services, tmp_path):
    """Stopped with a savepoint mid-stream and started again from it: nothing lost or doubled.

    A plain cancel would lose what waits in state (the join's buffer, transactions waiting
    for the validator) whose offsets a checkpoint already committed, so a restart resumes
    from a savepoint (or the checkpoint retained on cancel), never from offsets alone.
    """
    started = time.monotonic()
    sc = Scenario(services, tmp_path, seed=20260202, count=COUNT)
    sc.prepare()
    try:
        first = sc.submit(start_offset="earliest")
        sim = sc.start_simulator(tps=TPS)
        wait_until("some rows in Postgres", lambda: sc.postgres_figures()["rows"] >= 500, 90)
        savepoint = flink_rest.stop_with_savepoint(first, timeout=120)
        stopped_at = time.time()
        rows_at_stop = sc.postgres_figures()["rows"]

        sc.submit(start_offset="earliest", extra=(f"--savepoint_path={savepoint}",))
        summary = sc.finish_simulator(sim)
        assert sim.returncode == 0
        figures = _assert_every_sink_once(sc)
        rewritten = sc.rows_processed_after(stopped_at)
        figures.update(
            savepoint=savepoint, rows_at_stop=rows_at_stop, rows_written_after_restart=rewritten,
            simulated_s=summary["elapsed_s"], test_s=round(time.monotonic() - started, 1),
        )
        print(f"\nsavepoint/restart figures: {json.dumps(figures)}")
        # The second job resumed from the savepoint's offsets: it did not start over.
        assert rewritten < figures["in_postgres"], figures
    finally:
        sc.cancel_all()
