"""Recovery on the standalone Flink cluster: every sink holds each transaction once.

a) the TaskManager is SIGKILLed mid-stream (after a completed checkpoint), restarted with
   ``stack.up(["flink"])``; the job restores its last checkpoint and replays from there;
b) the job is cancelled after a checkpoint committed offsets to its consumer group, and a new
   job with the same group (``--start_offset=committed``) finishes the stream.

Kafka is at-least-once, so the dead-letter topic may hold repeats after a replay: the tests
compare the *set* of origins with the bad messages and print the repeats.
"""

from __future__ import annotations

import json
import time

import pymongo
import stack
from stack import flink_rest

from pipeline.runners.flink import riskpipe_counters
from tests.e2e.conftest import Scenario, kill_taskmanager, topic_size, wait_until

COUNT = 3_000  # 30 s at TPS
TPS = 100
SETTLE_S = 150.0  # for the rest to arrive once the simulation ended


def _assert_exactly_once(sc: Scenario, mongo, *, with_s3: bool) -> dict:
    """Waits until every sink is complete, then checks exactly-once; returns the figures."""
    bad = sc.bad_origins()
    assert len(bad) == sc.bad, (len(bad), sc.bad)

    def complete():
        pg = sc.postgres_figures()
        dead = topic_size(sc.bootstrap, sc.topics["dead_letters"])
        now = {**pg, "dead_letters": dead,
               "mongo": mongo[sc.prefix]["transactions"].count_documents({})}
        done = pg["rows"] >= len(sc.ids) and dead >= sc.bad and now["mongo"] >= pg["fraudulent"]
        return now if done else (print(f"  waiting: {now}") or None)

    wait_until(f"{len(sc.ids)} rows and {sc.bad} dead letters", complete, SETTLE_S, 3)
    pg = sc.postgres_figures()
    origins = sc.dead_letter_origins()
    figures = {
        **pg, "produced": len(sc.ids), "bad": sc.bad,
        "dead_letters": sum(origins.values()), "dead_letter_repeats": sum(origins.values()) - len(origins),
        "mongo": mongo[sc.prefix]["transactions"].count_documents({}),
    }
    assert pg["rows"] == pg["distinct"] == len(sc.ids), figures
    missing_dl = bad - set(origins)
    extra_dl = set(origins) - bad
    assert not missing_dl and not extra_dl, (sorted(missing_dl)[:5], sorted(extra_dl)[:5])
    assert figures["mongo"] == pg["fraudulent"] > 0, figures
    fraud = sc.fraudulent_ids()
    mongo_ids = {d["_id"] for d in mongo[sc.prefix]["transactions"].find({}, {"_id": 1})}
    assert mongo_ids == fraud, (sorted(mongo_ids ^ fraud)[:5])
    if with_s3:
        folder = sc.topics["results"]

        def s3_complete():
            ids = sc.s3_ids(folder)
            return ids if set(ids) >= fraud else (print(f"  waiting: S3 {len(set(ids))}/{len(fraud)}") or None)

        # Objects are 60 s event-time windows, written once the watermark passes their end.
        ids = wait_until(f"S3 {folder} holding the {len(fraud)} fraudulent ids", s3_complete, 120, 5)
        figures["s3_records"] = len(ids)
        assert set(ids) == fraud, sorted(set(ids) ^ fraud)[:5]
        assert len(ids) == len(set(ids)), "an S3 record repeated across objects"
    return figures


def test_taskmanager_killed(services, tmp_path):
    started = time.monotonic()
    sc = Scenario(services, tmp_path, seed=20260201, count=COUNT)
    sc.prepare()
    mongo = pymongo.MongoClient(sc.mongo_uri)
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
        figures = _assert_exactly_once(sc, mongo, with_s3=True)
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
        mongo.close()
        sc.cancel_all()


def test_cancel_and_restart_resumes_from_committed_offsets(services, tmp_path):
    started = time.monotonic()
    sc = Scenario(services, tmp_path, seed=20260202, count=COUNT)
    sc.prepare()
    mongo = pymongo.MongoClient(sc.mongo_uri)
    try:
        first = sc.submit(start_offset="committed")
        sim = sc.start_simulator(tps=TPS)
        wait_until("some rows in Postgres", lambda: sc.postgres_figures()["rows"] >= 500, 90)
        before = (flink_rest.checkpoints(first).get("latest") or {}).get("completed") or {}
        checkpoint = sc.wait_checkpoint(first, after=before.get("id", 0))
        from tests.e2e.conftest import committed_offsets

        def committed():
            offsets = committed_offsets(sc.bootstrap, sc.group, sc.topics["transactions"],
                                        sc.PARTITIONS)
            total = sum(max(o, 0) for o in offsets.values())
            return total if total > 0 else None

        committed_before = wait_until("offsets committed to the group", committed, 30)
        flink_rest.cancel(first)
        assert flink_rest.wait_for_job_state(first, "CANCELED", timeout=60) == "CANCELED"
        first_counters = riskpipe_counters(first)
        committed_at_cancel = committed()
        rows_at_cancel = sc.postgres_figures()["rows"]

        second = sc.submit(start_offset="committed")
        summary = sc.finish_simulator(sim)
        figures = _assert_exactly_once(sc, mongo, with_s3=False)

        total = sum(
            topic_size(sc.bootstrap, sc.topics[t], p)
            for t in ("accounts", "transactions") for p in range(sc.PARTITIONS)
        )
        transactions_total = sum(
            topic_size(sc.bootstrap, sc.topics["transactions"], p) for p in range(sc.PARTITIONS)
        )
        counters = wait_until(
            "the second job's read counter to cover the rest",
            lambda: (c := riskpipe_counters(second)).get("kafka_records_read", 0)
            >= transactions_total - committed_at_cancel and c,
            30,
        )
        read_second = counters["kafka_records_read"]
        figures.update(
            checkpoint_before_cancel=checkpoint, committed_before=committed_before,
            committed_at_cancel=committed_at_cancel, rows_at_cancel=rows_at_cancel,
            first_read=first_counters.get("kafka_records_read"), second_read=read_second,
            second_read_transactions=counters.get(
                f"kafka_records_read_{sc.topics['transactions']}".replace(".", "_")),
            messages_total=total, transactions_total=transactions_total,
            replayed_transactions=(counters.get(
                f"kafka_records_read_{sc.topics['transactions']}".replace(".", "_"), 0)
                - (transactions_total - committed_at_cancel)),
            simulated_s=summary["elapsed_s"], test_s=round(time.monotonic() - started, 1),
        )
        print(f"\ncancel/restart figures: {json.dumps(figures)}")
        assert read_second < total, figures  # it did not re-read everything
        assert read_second >= transactions_total - committed_at_cancel, figures
    finally:
        mongo.close()
        sc.cancel_all()
