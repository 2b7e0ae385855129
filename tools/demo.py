"""The live demo (`make run`): the local stack, the simulator and the job on Flink.

Steps: start every service of the local stack (``stack.up()``), submit the job to the
standalone Flink cluster (``python -m pipeline.main --runner=FlinkRunner``), wait until it
runs, start the simulator in the background at a live rate, print where to look, then a line
of figures every 5 s until Ctrl-C — which stops the job with a savepoint and stops the simulator (the stack
stays up; ``make down`` stops it). SIGTERM and SIGHUP (a ``kill``, a closed terminal) stop
them the same way.

    python -m tools.demo                 # until Ctrl-C
    python -m tools.demo --tps 500
    python -m tools.demo --duration 60   # non-interactive smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import stack
from stack import flink_rest

REPO = Path(__file__).resolve().parents[1]
JOB_NAME = "transaction-attribution"
INTERVAL_S = 5.0
LATEST_SQL = (
    "SELECT transaction_id, account_id, account_name, amount, risk_score "
    "FROM banking.attributed_transactions ORDER BY datetime_occurred DESC LIMIT 5;"
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tps", type=float, default=200.0,
                        help="simulator transactions per second (default 200)")
    parser.add_argument("--no-simulator", action="store_true",
                        help="do not start the simulator (feed the topics yourself)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop (the job with a savepoint, the simulator) after this many "
                             "seconds instead of waiting for Ctrl-C")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached the demo: it stops the job and the simulator as on Ctrl-C.

    A BaseException, as KeyboardInterrupt is: the live figures catch every Exception so that
    a failing query does not end the demo, and must not catch this."""


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread, once: the demo's cleanup
    (the job stopped with a savepoint, the simulator stopped) then runs as on Ctrl-C, and a
    second signal does not cut it short. Python's default for both ends the process at once,
    leaving the simulator (in a session of its own) and the job running."""

    def stop(signum, _frame):
        for other in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


class Figures:
    """Live figures: the job's own counters (Flink REST), then what the shared sinks hold
    (Postgres rows processed since the demo started, new dead letters, new Mongo documents;
    other jobs writing to the same table/topics would count there too)."""

    def __init__(self, endpoints: dict, started: datetime):
        self.dsn = endpoints["postgres"]["dsn"]
        self.bootstrap = endpoints["kafka"]["bootstrap_servers"]
        self.mongo_uri = endpoints["mongo"]["uri"]
        self.started = started
        self.dead_letters_before = self.dead_letters()
        self.mongo_before = self.mongo_count()

    def dead_letters(self) -> int:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "riskpipe-demo-figures"})
        try:
            meta = consumer.list_topics("dead-letters", timeout=5).topics["dead-letters"]
            total = 0
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition("dead-letters", partition), timeout=5
                )
                total += high - low
            return total
        finally:
            consumer.close()

    def mongo_count(self) -> int:
        import pymongo

        with pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000) as client:
            return client["fraudulent_transactions_db"]["transactions"].count_documents({})

    def line(self, job_id: str) -> str:
        import psycopg2

        parts = []
        try:
            with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*), count(*) FILTER (WHERE is_fraudulent)"
                    " FROM banking.attributed_transactions WHERE processed_at >= %s",
                    (self.started,),
                )
                rows, fraudulent = cur.fetchone()
            conn.close()
            parts += [f"table rows since start {rows:>7}", f"fraudulent {fraudulent:>4}"]
        except Exception as exc:  # noqa: BLE001 - a live line must not end the demo
            parts.append(f"postgres: {exc.__class__.__name__}")
        try:
            parts.append(f"dead-letters topic +{self.dead_letters() - self.dead_letters_before}")
        except Exception as exc:  # noqa: BLE001
            parts.append(f"kafka: {exc.__class__.__name__}")
        try:
            parts.append(f"mongo fraud docs +{self.mongo_count() - self.mongo_before}")
        except Exception as exc:  # noqa: BLE001
            parts.append(f"mongo: {exc.__class__.__name__}")
        return f"{datetime.now():%H:%M:%S}  " + "  ".join(parts)


def where_to_look(endpoints: dict, job_id: str) -> None:
    from tools.queries import fraud_lookup_pipeline

    pg = endpoints["postgres"]
    psql = (
        f"PGPASSWORD={pg.get('password', 'riskpipe')} psql -h {pg.get('host', '127.0.0.1')} "
        f"-p {pg.get('port', 5432)} -U {pg.get('user', 'riskpipe')} "
        f"-d {pg.get('database', 'riskpipe')} -c \"{LATEST_SQL}\""
    )
    lookup = json.dumps(fraud_lookup_pipeline())
    print(
        f"""
Where to look
  Flink UI        http://127.0.0.1:8081/#/job/running/{job_id}/overview
  Prometheus      http://127.0.0.1:9090   (e.g. flink_taskmanager_job_task_operator_numRecordsIn)
  Validator docs  http://127.0.0.1:8000/docs
  Postgres        {psql}
  MongoDB $lookup (fraudulent_transactions_db.transactions joined to users):
    {sys.executable} -c 'import json, pymongo; db = pymongo.MongoClient("{endpoints['mongo']['uri']}")["fraudulent_transactions_db"]; [print(r) for r in db.transactions.aggregate(json.loads(\"\"\"{lookup}\"\"\"))]'
""",
        flush=True,
    )


def submit_job() -> str:

    for job in flink_rest.jobs():
        if job["name"] == JOB_NAME and job["state"] not in flink_rest.TERMINAL_STATES:
            say(f"cancelling the {JOB_NAME} job already running ({job['jid']})")
            flink_rest.cancel(job["jid"])
            flink_rest.wait_for_job_state(job["jid"], "CANCELED", timeout=60)
    say(f"submitting {JOB_NAME} to Flink (python -m pipeline.main --runner=FlinkRunner) …")
    submit = subprocess.run(
        [sys.executable, "-m", "pipeline.main", "--runner=FlinkRunner", f"--job_name={JOB_NAME}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    if submit.returncode != 0:
        sys.stderr.write(submit.stdout + submit.stderr)
        raise SystemExit(f"[demo] the job submission failed (exit {submit.returncode})")
    job_id = flink_rest.wait_for_job_id(JOB_NAME, timeout=60)
    flink_rest.wait_until_running(job_id, timeout=180)
    say(f"job {job_id} is RUNNING")
    return job_id


def start_simulator(tps: float, duration: float | None) -> subprocess.Popen:
    log = REPO / ".state" / "demo-simulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "simulator", "--tps", f"{tps:g}",
        "--duration", str(int(duration + 60) if duration else 7 * 24 * 3600),
        "--bad-rate", "0.01",
    ]
    # Own session: Ctrl-C reaches the demo only, which then stops the simulator itself.
    simulator = subprocess.Popen(
        cmd, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    say(f"started the simulator at {tps:g} transactions/s (pid {simulator.pid}, log: {log})")
    return simulator


def stop_simulator(simulator: subprocess.Popen | None) -> None:
    if simulator is None or simulator.poll() is not None:
        return
    simulator.send_signal(signal.SIGINT)  # it flushes and prints its summary
    try:
        simulator.wait(timeout=30)
    except subprocess.TimeoutExpired:
        simulator.kill()
        simulator.wait()
    say("simulator stopped")


def stop_job(job_id: str) -> None:
    """Stops the job with a savepoint (nothing waiting in state is lost) and says how to resume.

    A plain cancel would drop what waits in state whose offsets a checkpoint already
    committed; the savepoint keeps it. Falls back to a cancel if the savepoint fails.
    """
    try:
        savepoint = flink_rest.stop_with_savepoint(job_id, timeout=120)
    except Exception as exc:  # noqa: BLE001 - any failure: cancel, and say why
        say(f"stop with savepoint failed ({exc}); cancelling")
        flink_rest.cancel(job_id)
        flink_rest.wait_for_job_state(job_id, "CANCELED", timeout=60)
        say(f"job {job_id} cancelled")
        return
    say(f"job {job_id} stopped with a savepoint; resume it with")
    print(f"  python -m pipeline.main --runner=FlinkRunner --savepoint_path={savepoint}")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)

    say("starting the local stack (python -m stack up) …")
    endpoints = stack.up()
    started = datetime.now(UTC)
    figures = Figures(endpoints, started)
    simulator = None
    job_id = None
    stop_on_signals()
    try:
        job_id = submit_job()
        if not args.no_simulator:
            simulator = start_simulator(args.tps, args.duration)
        where_to_look(endpoints, job_id)
        say("live figures every 5 s (Ctrl-C stops the job and the simulator)")
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(INTERVAL_S if deadline is None else max(0.0, min(INTERVAL_S, deadline - time.monotonic())))
            print(figures.line(job_id), flush=True)
            state = flink_rest.job_state(job_id)
            if state != "RUNNING":
                say(f"the job is {state}: {flink_rest.exceptions(job_id)[:2000]}")
                return 1
    except KeyboardInterrupt:
        print()
        say("Ctrl-C: stopping")
    except Stopped as stopped:
        say(f"{stopped}: stopping")
    finally:
        stop_simulator(simulator)
        if job_id and flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
            stop_job(job_id)
            try:
                from tools.flink_counters import riskpipe_counters

                # Flink publishes Beam's counters (one accumulator) once the job has ended.
                say(f"job counters: {json.dumps(riskpipe_counters(job_id), sort_keys=True)}")
            except Exception as exc:  # noqa: BLE001
                say(f"no job counters ({exc})")
        say("the stack is still up: `make down` stops it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
