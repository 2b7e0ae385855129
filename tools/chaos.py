"""Chaos runs: every fault on the FlinkRunner, each followed by a reconciliation.

    python -m tools.chaos [--faults a,b] [--list] [--scale 0.33] [--json out.json]

One run per fault, each in its own world: per-run topics, consumer group, job name and Mongo
database (named ``chaos<fault><hex>``), a seeded simulation paced at ``--tps`` (default 100/s,
``--count`` messages, about 1 % malformed) published in the background while the job runs on
the local Flink cluster. Once the job has written some rows and completed a checkpoint, the
fault is injected, held (``hold_s`` × ``--scale``) and restored (always, in a ``finally``);
then the runner waits for the simulation to end and for the reconciliation
(:mod:`tools.reconcile`) to account for every message, cancels the job(s) and reconciles
once more, with the ground truth and MongoDB. One table row per fault; exit 1 unless every
row has missing = duplicated = wrong = 0 (a row that keeps an earlier account name after a
replay is counted under ``stale_names``, a known limitation: docs/flink-notes.md).

Faults (``--list``):

- ``taskmanager_kill``: SIGKILL of the TaskManager's process group; ``stack.up(["flink"])``
  starts a new one, the job restores its last checkpoint.
- ``workerpool_kill``: SIGKILL of the Beam worker pool's process group (the pool and the SDK
  workers it started) mid-run. Nothing here restarts it: the stack's supervisor must (the
  fault fails if the pool is not back and healthy within ``WORKERPOOL_BACK_S``); Flink fails
  the tasks whose SDK workers died, and the job restores its last checkpoint on new workers.
- ``jobmanager_restart``: the JobManager is stopped and started again. The local cluster is a
  standalone session without HA, so its jobs do not survive: the fault resubmits the job from
  the latest completed checkpoint (``--savepoint_path=<external path>``; checkpoints are
  retained). If the job is found running again it is not resubmitted.
- ``kafka_stop_30s``, ``postgres_stop_30s``, ``mongo_restart``, ``s3_restart``,
  ``validator_down_60s``: the stack service is stopped, held down, started again.
  For the Postgres faults the simulator runs with ``--no-postgres`` (it has no retry of its
  own account writes; the pipeline is under test, not the simulator).
- ``postgres_txn_fail``: a temporary row trigger on ``banking.attributed_transactions`` raises
  for a sample of this run's transaction ids (so a batch fails half-way and rolls back as a
  whole; other jobs on the same table are not touched); dropped after the hold.
- ``validator_slow`` / ``validator_garbage``: the job talks to the validator through a local
  HTTP proxy (a real socket, own port) that forwards to the real validator, and during the
  fault answers after the client's timeout / with garbage (malformed JSON results, HTML).
- ``job_cancel_resume_checkpoint``: the job is cancelled after a checkpoint; a new job
  resumes from the cancelled job's retained checkpoint (``--savepoint_path``), state included.
- ``job_cancel_restart`` (opt-in, ``--faults job_cancel_restart``): the same, but the new job
  starts from the group's committed offsets only. Committed offsets do not cover what the
  cancelled job held in state (e.g. a transaction buffered by the join until its late account
  arrives): such a record is lost. It is there to show why a restart takes the checkpoint.

The TaskManager/JobManager faults wait (a while) for other jobs on the shared cluster to end.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

__all__ = ["FAULTS", "Fault", "Result", "kill_workerpool", "main", "run_fault"]

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
EVENT_RATE = 100
# How long the supervisor may take to bring a killed worker pool back (about 3 s here).
WORKERPOOL_BACK_S = 120.0


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(what: str, predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s: {what} (last: {value!r})")
        time.sleep(interval)


# --- a validator proxy (slow / garbage faults) ------------------------------------------------


class ValidatorProxy:
    """Forwards HTTP to the real validator; ``mode`` = pass | slow | garbage."""

    def __init__(self, upstream: str, slow_s: float = 8.0):
        self.upstream = upstream.rstrip("/")
        self.slow_s = slow_s
        self.mode = "pass"
        self.answered = {"pass": 0, "slow": 0, "garbage": 0}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                mode = proxy.mode
                proxy.answered[mode] = proxy.answered.get(mode, 0) + 1
                if mode == "garbage":
                    n = proxy.answered["garbage"]
                    if n % 3 == 0:
                        data, ctype = b"<html>502 garbage</html>", "text/html"
                    elif n % 3 == 1:
                        data, ctype = b'{"results": [{"garbage": true}]}', "application/json"
                    else:
                        data, ctype = b'{"results": "\x00\xff not json', "application/json"
                    return self._send(200, data, ctype)
                if mode == "slow":
                    time.sleep(proxy.slow_s)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body,
                                                 headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        return self._send(answer.status, answer.read(),
                                          answer.headers.get("Content-Type", "application/json"))
                except urllib.error.HTTPError as error:
                    return self._send(error.code, error.read(),
                                      error.headers.get("Content-Type", "application/json"))
                except OSError as error:
                    return self._send(502, str(error).encode(), "text/plain")

            def _send(self, status, data, ctype):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One fault's world: topics, group, job(s), simulation."""

    fault: Fault
    seed: int
    count: int
    tps: float
    scale: float
    services: dict
    workdir: Path
    prefix: str = ""
    job_ids: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    proxy: ValidatorProxy | None = None

    def __post_init__(self):
        self.prefix = f"chaos{self.fault.name.replace('_', '')}{uuid.uuid4().hex[:6]}"
        self.bootstrap = self.services["kafka"]["bootstrap_servers"]
        self.dsn = self.services["postgres"]["dsn"]
        self.mongo_uri = self.services["mongo"].get("uri", "mongodb://127.0.0.1:27017")
        p = self.prefix
        self.topics = {
            "accounts": f"{p}.accounts", "transactions": f"{p}.transactions",
            "dead_letters": f"{p}.dead-letters",
            "results": f"{p}.fraudulent-transactions-result", "users": f"{p}.users",
            "ground_truth": f"{p}.ground-truth",
        }
        self.truth_file = self.workdir / f"truth-{p}.jsonl"
        self.ids: list[str] = []
        self.start_offset = "earliest"

    def hold(self, seconds: float) -> float:
        return max(3.0, seconds * self.scale)

    def _sim_args(self) -> list[str]:
        return [sys.executable, "-m", "simulator", "--seed", str(self.seed),
                "--count", str(self.count), "--accounts", "200", "--bad-rate", "0.01",
                "--fraud-rate", "0.02", "--event-rate", str(EVENT_RATE),
                *self.fault.sim_args]

    def prepare(self) -> None:
        from stack.kafka import ensure_topics

        t = self.topics
        ensure_topics({t["accounts"]: PARTITIONS, t["transactions"]: PARTITIONS,
                       t["dead_letters"]: 1, t["results"]: 1, t["users"]: 1,
                       t["ground_truth"]: 1}, self.bootstrap)
        dry = subprocess.run(
            [*self._sim_args(), "--dry-run", "--ground-truth-all", "--ground-truth-file",
             str(self.truth_file), "--quiet"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        if dry.returncode != 0:
            raise RuntimeError(f"simulator dry run failed: {dry.stderr[-2000:]}")
        truth = [json.loads(x) for x in self.truth_file.read_text().splitlines() if x.strip()]
        self.ids = [r["transaction_id"] for r in truth if r.get("kind") == "transaction"]
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM banking.attributed_transactions"
                        " WHERE transaction_id = ANY(%s)", (self.ids,))
        conn.close()

    def start_simulator(self) -> subprocess.Popen:
        return subprocess.Popen(
            [*self._sim_args(), "--tps", str(self.tps), "--topic-prefix", f"{self.prefix}.",
             "--bootstrap-servers", self.bootstrap, "--postgres-dsn", self.dsn, "--quiet"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def job_args(self, start_offset: str | None = None) -> list[str]:
        t = self.topics
        args = [sys.executable, "-m", "pipeline.main", "--runner=FlinkRunner",
                f"--job_name={self.prefix}", f"--kafka_bootstrap={self.bootstrap}",
                f"--postgres_dsn={self.dsn}", f"--accounts_topic={t['accounts']}",
                f"--transactions_topic={t['transactions']}",
                f"--dead_letter_topic={t['dead_letters']}",
                f"--fraud_results_topic={t['results']}", f"--users_topic={t['users']}",
                f"--consumer_group={self.prefix}",
                f"--start_offset={start_offset or self.start_offset}",
                f"--mongo_db={self.prefix}"]
        if self.proxy is not None:
            args.append(f"--validator_url={self.proxy.url}")
        return args

    def submit(self, *extra: str, start_offset: str | None = None) -> str:
        from stack import flink_rest

        before = {j["jid"] for j in flink_rest.jobs()}
        done = subprocess.run([*self.job_args(start_offset), *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=240, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"job submission failed: {done.stderr[-3000:]}")

        job_id = flink_rest.wait_for_job_id(self.prefix, 60, exclude=before)
        self.job_ids.append(job_id)
        flink_rest.wait_until_running(job_id, timeout=150)
        return job_id

    @property
    def job_id(self) -> str:
        return self.job_ids[-1]

    def rows(self) -> int:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM banking.attributed_transactions"
                        " WHERE transaction_id = ANY(%s)", (self.ids,))
            (n,) = cur.fetchone()
        conn.close()
        return n

    def completed_checkpoint(self) -> int:
        from stack import flink_rest

        done = (flink_rest.checkpoints(self.job_id).get("latest") or {}).get("completed")
        return done["id"] if done else 0

    def wait_checkpoint(self, timeout: float = 90) -> int:
        """Waits for a completed checkpoint (any) of the current job; returns its id."""
        return wait_until("a completed checkpoint",
                          lambda: self.completed_checkpoint(), timeout, 0.5)

    def reconcile(self, final: bool = False):
        from tools import reconcile

        return reconcile.run(self.bootstrap, self.topics["transactions"],
                             self.topics["dead_letters"], self.dsn,
                             str(self.truth_file) if final else None,
                             self.mongo_uri, self.prefix, self.topics["accounts"])

    def cancel_all(self) -> None:
        from stack import flink_rest

        try:
            ids = set(self.job_ids) | {j["jid"] for j in flink_rest.jobs()
                                       if j["name"] == self.prefix}
        except Exception as error:  # noqa: BLE001
            self.notes.append(f"cleanup: {error}")
            return
        for job_id in ids:
            try:
                if flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
                    flink_rest.cancel(job_id)
                    flink_rest.wait_for_job_state(job_id, flink_rest.TERMINAL_STATES, 60)
            except Exception as error:  # noqa: BLE001 - cleanup reports, never masks
                if "not found" not in str(error).lower():  # a job lost with its JobManager
                    self.notes.append(f"cancel {job_id}: {str(error)[:200]}")


# --- faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    inject: Callable[[Run], None]  # disturbs, holds, restores (restore in a finally)
    doc: str
    sim_args: tuple[str, ...] = ()
    setup: Callable[[Run], None] | None = None  # before the job is submitted
    fast: bool = False  # also run by `make test` (tests/e2e/test_fast_faults.py), scaled down
    replays: bool = False  # the job restores a checkpoint and reads part of the input again
    default: bool = True  # in the run without --faults


def _stop_service(name: str, seconds: float):
    def inject(run: Run) -> None:
        import stack

        say(f"stopping {name} for {run.hold(seconds):.0f} s")
        try:
            stack.down([name])
            time.sleep(run.hold(seconds))
        finally:
            stack.up([name])
            say(f"{name} is back")
    return inject


def _foreign_jobs(run: Run) -> list[str]:
    from stack import flink_rest

    return [j["name"] for j in flink_rest.jobs()
            if j["state"] not in flink_rest.TERMINAL_STATES and j["name"] != run.prefix]


def _wait_cluster_quiet(run: Run, timeout: float = 180.0) -> None:
    """Killing the TaskManager/JobManager hits every job: give other jobs a chance to end."""
    deadline = time.monotonic() + timeout
    while (others := _foreign_jobs(run)) and time.monotonic() < deadline:
        say(f"waiting for other jobs to end before touching the cluster: {others}")
        time.sleep(10)
    if others:
        run.notes.append(f"other jobs were running: {others}")


def _taskmanager_kill(run: Run) -> None:
    import stack
    from stack import flink_rest, process

    _wait_cluster_quiet(run)
    tm = stack.SERVICES["flink"].taskmanager
    pid = process.read_pid(tm.pid_path)
    try:
        if not pid:
            raise RuntimeError(f"no TaskManager pid in {tm.pid_path}")
        say(f"SIGKILL TaskManager {pid} (checkpoint #{run.completed_checkpoint()})")
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until("the TaskManager to die", lambda: not process.is_alive(pid), 15, 0.2)
    finally:
        stack.up(["flink"])
    flink_rest.wait_until_running(run.job_id, timeout=180)
    history = flink_rest.request("GET", f"/jobs/{run.job_id}/exceptions") or {}
    failures = len(history.get("exceptionHistory", {}).get("entries", []))
    run.notes.append(f"job failures recorded: {failures}")


def kill_workerpool(timeout_s: float = WORKERPOOL_BACK_S) -> tuple[int, int, float]:
    """SIGKILLs the stack's worker pool (its process group: the pool and its SDK workers) and
    waits until the supervisor has a new one healthy; returns (old pid, new pid, seconds)."""
    import stack
    from stack import process

    pool = stack.SERVICES["workerpool"]
    pid = process.read_pid(pool.pid_path)
    if not pid:
        raise RuntimeError(f"no worker pool pid in {pool.pid_path}")
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_until("the worker pool to die", lambda: not process.is_alive(pid), 15, 0.2)
    killed = time.monotonic()

    def back() -> int | None:
        new = process.read_pid(pool.pid_path)
        return new if new and new != pid and pool.check() is None else None

    new = wait_until("the supervisor to restart the worker pool", back, timeout_s, 0.5)
    return pid, new, time.monotonic() - killed


def _workerpool_kill(run: Run) -> None:
    import stack
    from stack import flink_rest

    _wait_cluster_quiet(run)  # every job's SDK workers live in the one pool
    stack.up(["supervisor"])  # what brings the pool back; `stack up` has started it already
    say(f"SIGKILL the worker pool (checkpoint #{run.completed_checkpoint()})")
    try:
        old, new, seconds = kill_workerpool()
        run.notes.append(
            f"supervisor replaced worker pool {old} by {new} {seconds:.1f} s after the kill"
        )
    finally:
        stack.up(["workerpool"])  # for the faults after this one, whatever happened here
    flink_rest.wait_until_running(run.job_id, timeout=180)
    history = flink_rest.request("GET", f"/jobs/{run.job_id}/exceptions") or {}
    failures = len(history.get("exceptionHistory", {}).get("entries", []))
    run.notes.append(f"job failures recorded: {failures}")


def _jobmanager_restart(run: Run) -> None:
    import stack
    from stack import flink_rest

    _wait_cluster_quiet(run)
    checkpoint = flink_rest.latest_checkpoint_path(run.job_id)
    jm = stack.SERVICES["flink"].jobmanager
    say(f"stopping the JobManager (latest checkpoint {checkpoint})")
    try:
        jm.down()
        time.sleep(run.hold(10))
    finally:
        stack.up(["flink"])
        say("JobManager is back")
    try:
        alive = [j for j in flink_rest.jobs()
                 if j["name"] == run.prefix and j["state"] not in flink_rest.TERMINAL_STATES]
    except Exception:  # noqa: BLE001
        alive = []
    if alive:
        run.notes.append("job survived the JobManager restart")
        flink_rest.wait_until_running(alive[0]["jid"], timeout=180)
        return
    if not checkpoint:
        raise RuntimeError("the job is gone and had no completed checkpoint")
    run.notes.append("no HA: job resubmitted from its last checkpoint")
    run.submit(f"--savepoint_path={checkpoint}")


def _postgres_txn_fail(run: Run) -> None:
    sample = run.ids[::10]
    hold = run.hold(20)
    say(f"trigger raising for {len(sample)} ids of this run, {hold:.0f} s")
    trigger = f"chaos_fail_{run.prefix}"
    with psycopg2.connect(run.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE FUNCTION banking.{trigger}() RETURNS trigger LANGUAGE plpgsql AS $f$"
            " BEGIN IF NEW.transaction_id = ANY(%s::text[]) THEN"
            f" RAISE EXCEPTION 'chaos: injected failure for %%', NEW.transaction_id; END IF;"
            " RETURN NEW; END $f$", (sample,))
        cur.execute(f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON"
                    f" banking.attributed_transactions FOR EACH ROW"
                    f" EXECUTE FUNCTION banking.{trigger}()")
    conn.close()
    try:
        time.sleep(hold)
    finally:
        with psycopg2.connect(run.dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TRIGGER IF EXISTS {trigger} ON banking.attributed_transactions")
            cur.execute(f"DROP FUNCTION IF EXISTS banking.{trigger}()")
        conn.close()
        say("trigger dropped")
    from stack import flink_rest

    history = flink_rest.request("GET", f"/jobs/{run.job_id}/exceptions") or {}
    failures = len(history.get("exceptionHistory", {}).get("entries", []))
    run.notes.append(f"job failures recorded: {failures}")


def _with_proxy(run: Run) -> None:
    run.proxy = ValidatorProxy(run.services["validator"]["url"], slow_s=8.0)


def _proxy_mode(mode: str, seconds: float):
    def inject(run: Run) -> None:
        assert run.proxy is not None
        say(f"validator proxy {mode} for {run.hold(seconds):.0f} s")
        run.proxy.mode = mode
        try:
            time.sleep(run.hold(seconds))
        finally:
            run.proxy.mode = "pass"
        run.notes.append(f"proxy answers: {run.proxy.answered}")
    return inject


def _job_cancel_restart(run: Run) -> None:
    from stack import flink_rest

    first = run.job_id
    say(f"cancelling {first}")
    flink_rest.cancel(first)
    flink_rest.wait_for_job_state(first, "CANCELED", timeout=60)
    time.sleep(run.hold(5))
    run.submit(start_offset="committed")
    say(f"resubmitted as {run.job_id} (committed offsets)")


def _job_cancel_resume_checkpoint(run: Run) -> None:
    from stack import flink_rest

    first = run.job_id
    checkpoint = flink_rest.latest_checkpoint_path(first)
    say(f"cancelling {first} (retained checkpoint {checkpoint})")
    flink_rest.cancel(first)
    flink_rest.wait_for_job_state(first, "CANCELED", timeout=60)
    latest = flink_rest.latest_checkpoint_path(first) or checkpoint
    time.sleep(run.hold(5))
    run.submit(f"--savepoint_path={latest}", start_offset="committed")
    say(f"resubmitted as {run.job_id} from {latest}")


def _set_committed(run: Run) -> None:
    run.start_offset = "committed"


FAULTS: dict[str, Fault] = {f.name: f for f in [
    Fault("kafka_stop_30s", _stop_service("kafka", 30), "Kafka broker stopped 30 s"),
    Fault("postgres_stop_30s", _stop_service("postgres", 30), "PostgreSQL stopped 30 s",
          sim_args=("--no-postgres",), fast=True),
    Fault("postgres_txn_fail", _postgres_txn_fail,
          "a trigger fails upserts of some rows for 20 s", fast=False),
    Fault("mongo_restart", _stop_service("mongo", 20), "MongoDB stopped 20 s"),
    Fault("s3_restart", _stop_service("s3", 20), "S3 server stopped 20 s"),
    Fault("validator_down_60s", _stop_service("validator", 60), "validator stopped 60 s",
          fast=True),
    Fault("validator_slow", _proxy_mode("slow", 60),
          "validator answers after the client timeout for 60 s", setup=_with_proxy),
    Fault("validator_garbage", _proxy_mode("garbage", 60),
          "validator answers garbage for 60 s", setup=_with_proxy),
    Fault("job_cancel_resume_checkpoint", _job_cancel_resume_checkpoint,
          "job cancelled, resubmitted from its retained checkpoint (state kept)",
          setup=_set_committed, fast=True, replays=True),
    # Not in the default run: it shows why a restart needs the checkpoint (records held in
    # state when the job was cancelled are lost), it cannot pass.
    Fault("job_cancel_restart", _job_cancel_restart,
          "job cancelled, resubmitted from committed offsets only (loses state; see doc)",
          setup=_set_committed, default=False),
    # last: they hit every job on the shared cluster
    Fault("workerpool_kill", _workerpool_kill,
          "SIGKILL the Beam worker pool mid-run; the stack's supervisor restarts it",
          replays=True),
    Fault("taskmanager_kill", _taskmanager_kill, "SIGKILL the TaskManager mid-run",
          replays=True),
    Fault("jobmanager_restart", _jobmanager_restart,
          "restart the JobManager (no HA: resubmit from the last checkpoint)", replays=True),
]}


# --- the runner ---------------------------------------------------------------------------------


@dataclass
class Result:
    fault: str
    produced: int = 0
    in_postgres: int = 0
    dead_lettered: int = 0
    missing: int = -1
    duplicated: int = -1
    wrong: int = -1
    stale_attributed: int = -1  # part of wrong: a row keeps an earlier name of its account
    missing_in_mongo: int = -1
    dl_repeats: int = 0  # dead letters (by key = origin) written more than once: a replay
    seconds: float = 0.0
    prefix: str = ""
    error: str = ""
    notes: list = field(default_factory=list)
    examples: dict = field(default_factory=dict)

    replays: bool = False  # the fault made the job read part of its input again

    @property
    def tolerated(self) -> int:
        """Rows with an earlier account name after a replay: a known limitation
        (docs/flink-notes.md), reported, not failed."""
        return max(self.stale_attributed, 0) if self.replays else 0

    @property
    def ok(self) -> bool:
        return (not self.error and self.missing == 0 and self.duplicated == 0
                and self.wrong - self.tolerated == 0)


def run_fault(fault: Fault, *, seed: int, count: int = 3000, tps: float = 100,
              scale: float = 1.0, settle_s: float = 300.0, workdir: Path | None = None) -> Result:
    import stack

    started = time.monotonic()
    services = stack.up(["kafka", "postgres", "mongo", "s3", "workerpool", "flink", "validator"])
    workdir = workdir or Path(tempfile.mkdtemp(prefix="riskpipe-chaos-"))
    run = Run(fault, seed, count, tps, scale, services, workdir)
    result = Result(fault.name, replays=fault.replays)
    sim = None
    say(f"{fault.name}: {fault.doc} — run {run.prefix}, seed {seed}, {count} msgs at {tps}/s")
    try:
        run.prepare()
        if fault.setup:
            fault.setup(run)
        run.submit()
        sim = run.start_simulator()
        threshold = max(100, len(run.ids) // 6)
        wait_until(f"{threshold} rows in Postgres", lambda: run.rows() >= threshold, 120)
        checkpoint = run.wait_checkpoint()
        say(f"rows {run.rows()}, checkpoint #{checkpoint}: injecting")
        fault.inject(run)
        out, err = sim.communicate(timeout=600)
        if sim.returncode != 0:
            raise RuntimeError(f"simulator failed: {err[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        if summary.get("delivery_failures"):
            run.notes.append(f"simulator delivery failures: {summary['delivery_failures']}")
        say(f"simulation done ({summary.get('transactions')} transactions); reconciling")

        def settled():
            from stack import flink_rest

            state = flink_rest.job_state(run.job_id)
            if state in flink_rest.TERMINAL_STATES:
                raise RuntimeError(f"job {run.job_id} {state}: "
                                   f"{flink_rest.exceptions(run.job_id)[:1500]}")
            rec = run.reconcile()
            if rec.missing == 0 and rec.missing_in_mongo == 0:
                return rec
            say(f"  waiting: {rec.line()}")
            return None

        try:
            wait_until("reconciliation: missing = 0", settled, settle_s, 5)
        except TimeoutError as error:
            result.error = str(error)[:200]
    except Exception as error:  # noqa: BLE001 - one fault's failure is its row
        result.error = f"{type(error).__name__}: {str(error)[:300]}"
        say(f"{fault.name}: {result.error}")
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.communicate()
        run.cancel_all()
        if run.proxy is not None:
            run.proxy.close()
    try:
        if run.ids:
            rec = run.reconcile(final=True)
            say(rec.line())
            for problem, examples in rec.examples.items():
                say(f"  {problem}: {', '.join(map(str, examples))}")
            result.produced, result.in_postgres = rec.produced, rec.in_postgres
            result.dead_lettered, result.missing = rec.dead_lettered, rec.missing
            result.duplicated, result.wrong = rec.duplicated, rec.wrong
            result.stale_attributed = rec.stale_attributed
            result.missing_in_mongo, result.examples = rec.missing_in_mongo, rec.examples
            result.dl_repeats = dead_letter_repeats(run)
    except Exception as error:  # noqa: BLE001
        result.error = result.error or f"reconcile: {error}"
    result.notes = run.notes
    result.prefix = run.prefix
    result.seconds = round(time.monotonic() - started, 1)
    return result


def dead_letter_repeats(run: Run) -> int:
    """Dead letters (origins) written more than once: Kafka is at-least-once, a restart from
    a checkpoint re-sends what was sent after it, each copy with the same key (its origin).
    Reconciliation counts each such origin as ``duplicated``: when ``duplicated`` equals this
    figure, every duplicate is such a redelivered dead letter (none in Postgres)."""
    from collections import Counter

    from tools.reconcile import dead_letter_origins

    origins = Counter(dead_letter_origins(run.bootstrap, run.topics["dead_letters"],
                                          run.topics["transactions"]))
    repeated = {origin: n for origin, n in origins.items() if n > 1}
    if repeated:
        run.notes.append(f"{len(repeated)} dead letters redelivered, "
                         f"{sum(repeated.values()) - len(repeated)} extra copies")
    return len(repeated)


def table(results: list[Result]) -> str:
    head = ("fault", "produced", "in_postgres", "dead_lettered", "missing", "duplicated",
            "dl_repeats", "wrong", "stale_names", "seconds", "ok")
    rows = [(r.fault, r.produced, r.in_postgres, r.dead_lettered, r.missing, r.duplicated,
             r.dl_repeats, r.wrong - r.tolerated, r.tolerated, r.seconds,
             "OK" if r.ok else "FAILED") for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        stale = [f"{r.tolerated} rows keep an earlier account name after the replay "
                 "(known limitation, docs/flink-notes.md)"] if r.tolerated else []
        extra = [*r.notes, *stale, *([r.error] if r.error else [])]
        if extra:
            lines.append(f"  {r.fault}: {'; '.join(extra)}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", help="comma-separated fault names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every outage duration (e.g. 0.33: 30 s -> 10 s)")
    parser.add_argument("--count", type=int, default=3000, help="messages per run")
    parser.add_argument("--tps", type=float, default=100, help="simulator pace")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--settle_s", type=float, default=300.0)
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.list:
        for fault in FAULTS.values():
            tags = ("fast " if fault.fast else "     ") + ("" if fault.default else "(opt-in) ")
            print(f"{fault.name:30} {tags}{fault.doc}")
        return
    names = args.faults.split(",") if args.faults else [f.name for f in FAULTS.values()
                                                        if f.default]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; see --list")
    results = []
    for index, name in enumerate(names):
        results.append(run_fault(FAULTS[name], seed=args.seed + index, count=args.count,
                                 tps=args.tps, scale=args.scale, settle_s=args.settle_s))
        print(table(results[-1:]), flush=True)
    print("\nchaos results")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1,
                                              default=str))
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
