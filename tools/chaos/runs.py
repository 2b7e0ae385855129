"""One chaos run: a job on Flink over one replay of the seeded input, a fault, the figures.

Each run has its own world: topics, consumer group, job name, Mongo database and S3 folders
named after a random prefix (``chaos<fault><hex>``). It shares with every other run of the
input the transaction ids (so ``banking.attributed_transactions`` rows of those ids and the
input's ``banking.accounts`` rows are deleted first: runs go one after another) and the
input itself (:mod:`tools.seeded_input`: same messages, partitions, order, pace).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from tools.chaos.faults import Fault
from tools.chaos.proxy import ValidatorProxy
from tools.chaos.waiting import say, wait_until
from tools.reconcile import (
    Reconciliation,
    Reference,
    SinkFigures,
    Target,
    check,
)
from tools.seeded_input import PARTITIONS, SeededInput

__all__ = ["Result", "Run", "run_fault", "table"]

REPO = Path(__file__).resolve().parents[2]
QUIET_S = 15.0  # final values unchanged this long (and consistent): the run has settled
SERVICES = ["kafka", "postgres", "mongo", "s3", "workerpool", "flink", "validator"]


@dataclass
class Run:
    """One fault's world: topics, group, job(s), replay of the input."""

    fault: Fault
    source: SeededInput
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
        self.bucket = self.services["s3"]["bucket"]
        p = self.prefix
        self.topics = {
            "accounts": f"{p}.accounts", "transactions": f"{p}.transactions",
            "dead_letters": f"{p}.dead-letters",
            "results": f"{p}.fraudulent-transactions-result", "users": f"{p}.users",
        }
        self.ids: list[str] = self.source.transaction_ids
        self.start_offset = "earliest"

    def hold(self, seconds: float) -> float:
        return max(3.0, seconds * self.scale)

    def prepare(self) -> None:
        """Creates the topics (outputs compacted); forgets what an earlier run of the same
        input left in the shared tables."""
        from stack.kafka import COMPACTED, ensure_topics

        t = self.topics
        ensure_topics({t["accounts"]: PARTITIONS, t["transactions"]: PARTITIONS,
                       t["dead_letters"]: 1, t["results"]: 1, t["users"]: 1}, self.bootstrap,
                      configs={t[name]: COMPACTED for name in ("dead_letters", "results",
                                                               "users")})
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM banking.attributed_transactions"
                        " WHERE transaction_id = ANY(%s)", (self.ids,))
            cur.execute("DELETE FROM banking.accounts WHERE account_id = ANY(%s)",
                        (self.source.account_ids,))
        conn.close()

    def start_input(self):
        return self.source.replay(
            self.bootstrap,
            {"accounts": self.topics["accounts"], "transactions": self.topics["transactions"]},
            self.tps, self.dsn)

    def job_args(self, start_offset: str | None = None) -> list[str]:
        import sys

        t = self.topics
        args = [sys.executable, "-m", "pipeline.main", "--runner=FlinkRunner",
                f"--job_name={self.prefix}", f"--kafka_bootstrap={self.bootstrap}",
                f"--postgres_dsn={self.dsn}", f"--accounts_topic={t['accounts']}",
                f"--transactions_topic={t['transactions']}",
                f"--dead_letter_topic={t['dead_letters']}",
                f"--fraud_results_topic={t['results']}", f"--users_topic={t['users']}",
                f"--consumer_group={self.prefix}",
                f"--start_offset={start_offset or self.start_offset}",
                f"--mongo_db={self.prefix}", f"--s3_bucket={self.bucket}"]
        if self.proxy is not None:
            args.append(f"--validator_url={self.proxy.url}")
        return args

    def submit(self, *extra: str, start_offset: str | None = None) -> str:
        import subprocess

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

    def target(self) -> Target:
        t = self.topics
        return Target(self.bootstrap, t["transactions"], t["dead_letters"], self.dsn,
                      t["accounts"], t["results"], self.mongo_uri, self.prefix,
                      f"s3://{self.bucket}/{t['results']}", self.services["s3"]["pipeline_args"])

    def check(self, reference: Reference | None = None, final: bool = False
              ) -> tuple[Reconciliation, Reference]:
        truth = str(self.source.truth_file) if final else None
        return check(self.target(), truth, reference)

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

    def clear_outputs(self) -> None:
        """Deletes what the run wrote: its topics, Mongo database and S3 folders (its
        Postgres rows go when the next run of the input prepares)."""
        import boto3
        from confluent_kafka.admin import AdminClient
        from pymongo import MongoClient

        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            futures = admin.delete_topics(list(self.topics.values()), operation_timeout=30)
            for future in futures.values():
                future.result(60)
            client = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10_000)
            client.drop_database(self.prefix)
            client.close()
            s3 = self.services["s3"]
            bucket = boto3.resource(
                "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["s3_access_key_id"],
                aws_secret_access_key=s3["s3_secret_access_key"],
                region_name=s3["s3_region_name"]).Bucket(self.bucket)
            for folder in (self.topics["results"], self.topics["users"]):
                bucket.objects.filter(Prefix=folder + "/").delete()
        except Exception as error:  # noqa: BLE001 - cleanup reports, never masks
            self.notes.append(f"clearing outputs: {str(error)[:200]}")


@dataclass
class Result:
    """One run's figures: the input's accounting, one SinkFigures per sink, and its notes."""

    fault: str
    produced: int = 0
    in_postgres: int = 0
    dead_lettered: int = 0
    wrongly_cleared: int = 0
    wrongly_accepted: int = 0
    sinks: dict[str, SinkFigures] = field(default_factory=dict)
    compared: bool = False  # against a reference: differing is known for every sink
    seconds: float = 0.0
    prefix: str = ""
    error: str = ""
    notes: list = field(default_factory=list)
    examples: dict = field(default_factory=dict)
    finals: Reference | None = None  # the run's own final values (a reference, if clean)

    @property
    def ok(self) -> bool:
        if self.error or not self.sinks:
            return False
        if self.wrongly_cleared or self.wrongly_accepted:
            return False
        if self.compared and any(s.differing is None for n, s in self.sinks.items()
                                 if n != "dead_letters"):
            return False
        return all(s.ok for s in self.sinks.values())

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("sinks", "finals")}
        out["sinks"] = {name: s.__dict__ for name, s in self.sinks.items()}
        out["ok"] = self.ok
        return out


def _consistent(finals: Reference) -> bool:
    """Every fraud result agrees with its Postgres row (an S3 flush or a correction is not
    still on its way to one sink)."""
    rows = finals.sinks["postgres"]
    return all(
        tid in rows and outcome.decision() == rows[tid].decision()
        for sink in ("kafka", "mongo", "s3") for tid, outcome in finals.sinks.get(sink, {}).items()
    )


def _settle(run: Run, reference: Reference | None, settle_s: float) -> None:
    """Waits until no sink misses anything, the fraud results agree with Postgres and the
    final values have not changed for QUIET_S; raises TimeoutError after ``settle_s``."""
    from stack import flink_rest

    deadline = time.monotonic() + settle_s
    last, since = None, time.monotonic()
    while True:
        state = flink_rest.job_state(run.job_id)
        if state in flink_rest.TERMINAL_STATES:
            raise RuntimeError(f"job {run.job_id} {state}: "
                               f"{flink_rest.exceptions(run.job_id)[:1500]}")
        rec, finals = run.check(reference)
        snapshot = finals.to_json()
        if snapshot != last:
            last, since = snapshot, time.monotonic()
        waiting = [f"{n} missing {s.missing}" for n, s in rec.sinks.items() if s.missing]
        if not _consistent(finals):
            waiting.append("fraud results differ from Postgres")
        if not waiting and time.monotonic() - since >= QUIET_S:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled after {settle_s:.0f} s: "
                               f"{'; '.join(waiting) or 'values still changing'}")
        quiet = f"values unchanged for {time.monotonic() - since:.0f} s"
        say(f"  waiting: {'; '.join(waiting) or quiet}")
        time.sleep(5)


def run_fault(fault: Fault, *, source: SeededInput, tps: float = 100, scale: float = 1.0,
              settle_s: float = 300.0, workdir: Path, reference: Reference | None = None,
              keep: bool = False) -> Result:
    """Runs the job over one replay of ``source`` with ``fault``; reconciles every sink,
    against ``reference`` when given. The result's ``finals`` are the run's final values."""
    import stack

    started = time.monotonic()
    services = stack.up(SERVICES)
    run = Run(fault, source, tps, scale, services, Path(workdir))
    result = Result(fault.name, compared=reference is not None)
    replay = None
    say(f"{fault.name}: {fault.doc} — run {run.prefix}, seed {source.seed}, "
        f"{len(source.messages)} msgs at {tps}/s")
    try:
        run.prepare()
        if fault.setup:
            fault.setup(run)
        run.submit()
        replay = run.start_input()
        threshold = max(100, len(run.ids) // 6)
        wait_until(f"{threshold} rows in Postgres", lambda: run.rows() >= threshold, 120)
        checkpoint = run.wait_checkpoint()
        say(f"rows {run.rows()}, checkpoint #{checkpoint}: injecting")
        fault.inject(run)
        replay.wait(timeout=600)
        if replay.account_retries:
            run.notes.append(f"account upserts retried {replay.account_retries} times")
        say(f"input replayed ({replay.published} messages); waiting for the sinks to settle")
        try:
            _settle(run, reference, settle_s)
        except TimeoutError as error:
            result.error = str(error)[:300]
    except Exception as error:  # noqa: BLE001 - one fault's failure is its row
        result.error = f"{type(error).__name__}: {str(error)[:300]}"
        say(f"{fault.name}: {result.error}")
    finally:
        if replay is not None and replay.is_alive():
            replay.stop()
        run.cancel_all()
        if run.proxy is not None:
            run.proxy.close()
    try:
        rec, finals = run.check(reference, final=True)
        say(rec.line().split(" | ")[0])
        result.produced, result.in_postgres = rec.produced, rec.in_postgres
        result.dead_lettered, result.sinks = rec.dead_lettered, rec.sinks
        result.wrongly_cleared, result.wrongly_accepted = rec.wrongly_cleared, rec.wrongly_accepted
        result.examples, result.finals = rec.examples, finals
    except Exception as error:  # noqa: BLE001
        result.error = result.error or f"reconcile: {error}"
    if not keep:
        run.clear_outputs()
    result.notes = run.notes
    result.prefix = run.prefix
    result.seconds = round(time.monotonic() - started, 1)
    return result


COLUMNS = ("expected", "found", "missing", "duplicated", "extra", "stale_names", "wrong_names",
           "differing", "redelivered", "superseded")


def table(results: list[Result]) -> str:
    """One row per fault and sink, then a line per fault (input figures, notes, examples)."""
    head = ("fault", "sink", *COLUMNS, "ok")
    rows = []
    for r in results:
        for name, s in (r.sinks or {"-": None}).items():
            figures = [("-" if s is None or getattr(s, c) is None else getattr(s, c))
                       for c in COLUMNS]
            rows.append((r.fault, name, *figures,
                         "-" if s is None else ("OK" if s.ok else "FAILED")))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        figures = (f"produced={r.produced} in_postgres={r.in_postgres} "
                   f"dead_lettered={r.dead_lettered} wrongly_cleared={r.wrongly_cleared} "
                   f"wrongly_accepted={r.wrongly_accepted} {r.seconds}s "
                   f"{'OK' if r.ok else 'FAILED'}")
        extra = [figures, *r.notes, *([r.error] if r.error else [])]
        lines.append(f"  {r.fault}: {'; '.join(extra)}")
        for name, s in r.sinks.items():
            for problem, examples in s.examples.items():
                lines.append(f"    {name} {problem}: {', '.join(map(str, examples))}")
    return "\n".join(lines)
