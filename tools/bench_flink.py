"""End-to-end throughput and latency of the job on the local Flink cluster; one JSON object.

    python -m tools.bench_flink            # the job on Flink alone
    python -m tools.bench_flink --rate 200 --duration 25 --warmup 5 --saturation-count 20000

``make bench`` (:mod:`tools.bench`) runs the same phases beside the other engines, on the
topics they share.

The job is submitted once (streaming, detached, per-run topics, consumer group and Mongo
database) and runs through two phases, each a seeded simulation into its topics:

1. ``fixed_rate``: the simulator publishes ``--rate`` transactions/s for ``--duration`` s.
2. ``saturation``: it publishes ``--saturation-count`` transactions as fast as it can, so the
   job reads a backlog at its own pace.

Per phase, once every transaction is in ``banking.attributed_transactions``:
``sustained_tps`` (rows per second between the first and last 10 % of the phase's rows,
by ``written_at``), ``latency_ms`` p50/p95/p99/max from the Kafka timestamp of the
transaction (its produce time) to ``written_at`` of its row, counted after ``--warmup`` s,
the same p50 and p99 apart for the rows that waited for the fraud validator (the bank's
``unidentified`` transactions) and the others (``p50_p99_ms_by_path``), and while the
phase runs, the busiest Flink vertices (``busyTimeMsPerSecond``, the share of time a task
works rather than waits) and the CPU share of each local process group: these are the
costs. The rows, topics and database are removed afterwards (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

import stack
from stack import flink_rest
from stack.kafka import ensure_topics
from pipeline.transforms.route import UNIDENTIFIED
from tools.bench_data import REPO, SeededTopics
from tools.bench_data import SERVICES as IN_PROCESS_SERVICES
from tools.hot_path import end_offsets

logger = logging.getLogger(__name__)
SERVICES = [*IN_PROCESS_SERVICES, "workerpool", "flink"]
RUNNER = "FlinkRunner (local standalone cluster, EXTERNAL worker pool)"
PARTITIONS = 4
FLINK_GROUP = "flink"  # the job's consumer group is <prefix>flink
# Process groups whose CPU is sampled from /proc while a phase runs: (name, cmdline parts),
# first match wins.
PROCESS_GROUPS = (
    ("simulator", ("-m simulator",)),
    ("beam_sdk_workers", ("SdkHarness", "run_worker")),
    ("flink_taskmanager", ("TaskManagerRunner",)),
    ("flink_jobmanager", ("StandaloneSessionClusterEntrypoint",)),
    ("kafka", ("kafka.Kafka",)),
    ("postgres", ("bin/postgres ", "postgres: ")),
    ("mongo_protocol_server", ("secantus",)),
    ("minio", ("minio server",)),
    ("validator", ("-m validator",)),
)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class CpuSampler(threading.Thread):
    """Samples /proc every second: CPU seconds used per process group while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.started = self.ended = time.monotonic()

    @staticmethod
    def _snapshot() -> dict[int, tuple[str, float]]:
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            group = next((name for name, parts in PROCESS_GROUPS
                          if any(part in cmdline for part in parts)), None)
            if group:
                out[int(pid_dir.name)] = (group, (int(fields[11]) + int(fields[12])) / ticks)
        return out

    def run(self) -> None:
        self.first = self._snapshot()
        while not self.stop_event.wait(1.0):
            for pid, sample in self._snapshot().items():
                self.first.setdefault(pid, (sample[0], 0.0))  # started meanwhile
                self.last[pid] = sample

    def stop(self) -> dict[str, float]:
        """CPU share per group (1.0 = one core busy all the time), highest first."""
        self.stop_event.set()
        self.join()
        self.ended = time.monotonic()
        used: dict[str, float] = defaultdict(float)
        for pid, (group, cpu) in self.last.items():
            used[group] += cpu - self.first.get(pid, (group, 0.0))[1]
        span = max(self.ended - self.started, 1e-9)
        return dict(sorted(((g, round(s / span, 2)) for g, s in used.items()),
                           key=lambda item: -item[1]))


def _number(value) -> float | None:
    """A REST metric value as a float; None for a missing or NaN one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def busy_vertices(job_id: str) -> list[dict]:
    """Per vertex: the highest busy and back-pressured ms/s over its subtasks, busiest first."""
    out = []
    for vertex in flink_rest.job(job_id)["vertices"]:
        metrics = flink_rest.request(
            "GET", f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            "?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond&agg=max",
        ) or []
        values = {m["id"]: _number(m.get("max")) for m in metrics}
        out.append({
            "vertex": vertex["name"][:100],
            "busy_ms_per_s": values.get("busyTimeMsPerSecond"),
            "backpressured_ms_per_s": values.get("backPressuredTimeMsPerSecond"),
        })
    return sorted(out, key=lambda v: -(v["busy_ms_per_s"] or 0))


class FlinkBench(SeededTopics):
    """The job on Flink over these topics; phases of simulation measured against it."""

    @contextlib.contextmanager
    def job(self, *extra: str, keep: bool = False) -> Iterator[str]:
        """Submits the streaming job (consumer group ``<prefix>flink``); cancels it at the
        end unless ``keep``. Yields its id."""
        print("[bench] submitting the job to Flink", file=sys.stderr, flush=True)
        before = {job["jid"] for job in flink_rest.jobs()}
        name = self.prefix.rstrip(".")
        argv = self.job_args(FLINK_GROUP, "--runner=FlinkRunner", f"--job_name={name}", *extra)
        done = subprocess.run([sys.executable, "-m", "pipeline.main", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"submitting the job failed: {done.stderr[-2000:]}")
        job_id = flink_rest.wait_for_job_id(name, 60, exclude=before)
        try:
            flink_rest.wait_until_running(job_id, timeout=120)
            yield job_id
        finally:
            if not keep and flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
                flink_rest.cancel(job_id)

    def fixed_rate(self, rate: float, duration: float, seed: int) -> Callable[[], dict]:
        """A simulation publishing ``rate`` transactions/s for ``duration`` s, to run."""
        return lambda: self.simulate(None, seed, 1000, "--tps", str(rate),
                                     "--duration", str(duration))

    def wait_rows(self, ids: list[str], timeout_s: float) -> int:
        """Waits until every id has its row; returns how many have one."""
        deadline, rows = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            rows = self.row_count(ids)
            if rows >= len(ids):
                break
            time.sleep(1.0)
        return rows

    def wait_committed(self, timeout_s: float) -> bool:
        """Waits until the job's consumer group has committed the end offsets of both input
        topics. Flink commits them once a checkpoint holds every output of those inputs, so
        the rows are final then (corrections included); False after ``timeout_s``."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "enable.auto.commit": False,
                             "group.id": f"{self.prefix}{FLINK_GROUP}"})
        try:
            ends = end_offsets(consumer, [self.topics["accounts"], self.topics["transactions"]])
            deadline = time.monotonic() + timeout_s
            while True:
                committed = consumer.committed([TopicPartition(*tp) for tp in ends], timeout=10)
                if all(c.offset >= ends[(c.topic, c.partition)][1] for c in committed):
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(1.0)
        finally:
            consumer.close()

    def landed(self, ids: list[str]) -> dict[str, tuple[float, float, str]]:
        """(processed_at, written_at as epoch seconds, evaluation) of each id's row."""
        found = self._query("SELECT transaction_id, extract(epoch FROM processed_at), "
                            "extract(epoch FROM written_at), evaluation "
                            "FROM banking.attributed_transactions "
                            "WHERE transaction_id = ANY(%s)", ids)
        return {tid: (float(p), float(w), e) for tid, p, w, e in found}

    def produced_at(self) -> dict[str, float]:
        """Kafka timestamp (produce time, s) of every transaction in the topic, by id."""
        topic = self.topics["transactions"]
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-read",
                             "enable.auto.commit": False})
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        seen: dict[str, float] = {}
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < PARTITIONS:
            for msg in consumer.consume(10_000, timeout=2.0):
                if msg.error():
                    continue
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
                try:
                    tid = json.loads(msg.value()).get("transaction_id")
                except (ValueError, AttributeError):
                    continue  # a malformed message: no row to time
                if isinstance(tid, str):
                    seen[tid] = msg.timestamp()[1] / 1000.0
        consumer.close()
        return seen

    def phase(self, name: str, job_id: str, produce: Callable[[], dict], warmup_s: float,
              drain_timeout_s: float, began: float | None = None) -> dict:
        """Runs ``produce`` (a simulation, or the summary of one already in the topics) with
        the job running; the throughput, latency and costs of its transactions. A row written
        before ``began`` (default: now) belongs to an earlier run: for a backlog that waited
        in the topics, pass the time the job was submitted, as it may write rows before the
        phase starts."""
        sampler = CpuSampler()
        sampler.start()
        busy: list[list[dict]] = []
        stop = threading.Event()

        def watch_vertices():
            while not stop.wait(10.0):
                try:
                    busy.append(busy_vertices(job_id))
                except Exception as exc:  # noqa: BLE001 - a missed sample is not fatal
                    logger.debug("vertex metrics: %s", exc)

        watcher = threading.Thread(target=watch_vertices, daemon=True)
        watcher.start()
        began = time.time() if began is None else began
        sim = produce()
        ids = self.ids
        print(f"[bench] {name}: {len(ids)} transactions produced at {sim['rate_tps']}/s; "
              "waiting for their rows", file=sys.stderr, flush=True)
        landed = self.wait_rows(ids, drain_timeout_s)
        if landed < len(ids):
            print(f"[bench] {name}: only {landed} of {len(ids)} rows after "
                  f"{drain_timeout_s:.0f} s", file=sys.stderr, flush=True)
        stop.set()
        cpu = sampler.stop()
        rows = self.landed(ids)
        written = {t: w for t, (_, w, _) in rows.items()}
        stale = sum(1 for w in written.values() if w < began)
        if stale:
            # An upsert keeps a row's written_at: such rows would time an earlier run.
            error = (f"{stale} of the phase's rows were written before it began, by an earlier "
                     "run of the same seed (kept with --keep?); delete them or choose another "
                     "--seed")
            print(f"[bench] {name}: {error}", file=sys.stderr, flush=True)
            return {"phase": name, "transactions": len(ids), "rows": landed, "error": error}
        times = sorted(written.values())
        if len(times) < 10:
            return {"phase": name, "transactions": len(ids), "rows": landed, "error": "no rows"}
        produced = self.produced_at()
        lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
        if hi - lo < 1.0:  # too few rows (or batches) for a steady middle: use them all
            lo, hi = times[0], max(times[-1], times[0] + 1.0)
        middle = sum(1 for t in times if lo <= t <= hi)
        first_produce = min(produced[t] for t in ids if t in produced)
        timed = [t for t in ids
                 if t in rows and t in produced and produced[t] >= first_produce + warmup_s]
        latencies = [(written[t] - produced[t]) * 1000 for t in timed]
        # Where the time goes: Kafka → scored (processed_at), scored → row written.
        to_scored = [(rows[t][0] - produced[t]) * 1000 for t in timed]
        to_row = [(rows[t][1] - rows[t][0]) * 1000 for t in timed]
        # The bank's unidentified transactions wait for the validator; the others do not.
        by_path: dict[str, list[float]] = {"validated": [], "not_validated": []}
        for t, latency in zip(timed, latencies):
            by_path["validated" if rows[t][2] == UNIDENTIFIED else "not_validated"].append(latency)
        last_busy = busy[-1] if busy else []
        return {
            "phase": name,
            "offered_tps": sim["rate_tps"],
            "transactions": len(ids),
            "rows": landed,
            "sustained_tps": round(middle / max(hi - lo, 1e-9), 1),
            "latency_ms": {
                "count": len(latencies),
                "p50": round(percentile(latencies, 0.50)),
                "p95": round(percentile(latencies, 0.95)),
                "p99": round(percentile(latencies, 0.99)),
                "max": round(max(latencies)),
                "mean": round(statistics.fmean(latencies)),
            } if latencies else None,
            "p50_ms_produce_to_scored": round(percentile(to_scored, 0.5)) if timed else None,
            "p50_ms_scored_to_row": round(percentile(to_row, 0.5)) if timed else None,
            "p50_p99_ms_by_path": {
                path: [round(percentile(values, 0.5)), round(percentile(values, 0.99))]
                for path, values in by_path.items() if values
            },
            "cpu_cores_by_process": cpu,
            "busiest_vertices": [v for v in last_busy if (v["busy_ms_per_s"] or 0) > 0][:5],
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_flink", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=5000,
                        help="offered transactions/s of the fixed-rate phase (default 5000)")
    parser.add_argument("--duration", type=float, default=60,
                        help="seconds of the fixed-rate phase (default 60)")
    parser.add_argument("--saturation-count", type=int, default=100_000,
                        help="transactions of the saturation phase (default 100000)")
    add_flink_args(parser)
    parser.add_argument("--seed", type=int, default=None,
                        help="simulator seed of the first phase, +1 for the next (default: "
                             "random, so no earlier run's rows share an id; reported)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the job, topics, rows and Mongo database afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    bench = FlinkBench(stack.up(SERVICES), prefix="benchflink")
    ensure_topics({bench.topics["accounts"]: PARTITIONS,
                   bench.topics["transactions"]: PARTITIONS}, bench.bootstrap)
    result: dict = {
        "runner": RUNNER,
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": "python -m tools.bench_flink " + " ".join(argv or sys.argv[1:]),
    }
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    result["seed"] = seed
    try:
        with bench.job(*args.job_arg, keep=args.keep) as job_id:
            result["job_id"] = job_id
            result["fixed_rate"] = bench.phase(
                "fixed_rate", job_id, bench.fixed_rate(args.rate, args.duration, seed),
                args.warmup, args.drain_timeout)
            # A backlog has no warm-up: its latency is mostly the wait in Kafka.
            result["saturation"] = bench.phase(
                "saturation", job_id, lambda: bench.simulate(args.saturation_count, seed + 1, 1000),
                0.0, args.drain_timeout)
    finally:
        if not args.keep:
            bench.cleanup()
    print(json.dumps(result))
    failed = [name for name in ("fixed_rate", "saturation") if "error" in result[name]]
    if failed:
        print(f"[bench] no figures for: {', '.join(failed)} (see their error)", file=sys.stderr)
    return 1 if failed else 0


def add_flink_args(parser: argparse.ArgumentParser) -> None:
    """The flags of the Flink runs that ``tools.bench`` shares."""
    parser.add_argument("--warmup", type=float, default=15,
                        help="seconds at the start of a fixed-rate phase left out of latency "
                             "(default 15)")
    parser.add_argument("--drain-timeout", type=float, default=900,
                        help="longest wait for a phase's rows (default 900 s)")
    parser.add_argument("--job-arg", action="append", default=[], metavar="FLAG",
                        help="a flag for the job, e.g. --job-arg=--parallelism=2 (repeatable)")


if __name__ == "__main__":
    sys.exit(main())
