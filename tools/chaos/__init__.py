"""Chaos runs: every fault on the FlinkRunner over one seeded input, each compared with a
fault-free run of the very same input.

    python -m tools.chaos [--faults a,b] [--list] [--scale 0.33] [--json out.json] [--keep]

1. **One input.** The seeded simulation (``--seed``, ``--count`` messages, about 1 %
   malformed, 2 % fraud) is generated once, in this process (:mod:`tools.seeded_input`).
2. **The reference.** A first run with no fault: the job on the local Flink cluster reads
   its own copy of the input, replayed into fresh topics at ``--tps`` (the same messages,
   partitions, order and pace every time; accounts upserted into ``banking.accounts`` as
   they are published). When every sink holds everything and has not changed for a while,
   the job is cancelled and every sink's final value per transaction is written to
   ``<workdir>/reference-<seed>.json``; then the run's topics, Mongo database and S3
   folders are deleted.
3. **The faults**, one after another, each the same way with its own prefix
   (``chaos<fault><hex>``: topics, consumer group reading from earliest, job name, Mongo
   database, S3 folders), the input's Postgres rows deleted first. Once the job has written
   some rows and completed a checkpoint the fault is injected, held (``hold_s`` ×
   ``--scale``) and restored (always, in a ``finally``); then the runner waits for the
   replay to end and the sinks to settle, cancels the job(s) and reconciles
   (:mod:`tools.reconcile`) with the ground truth and against the reference.

The table has one row per fault and sink (Postgres, Kafka results, MongoDB, S3, dead
letters): expected, found, missing, duplicated, extra, stale_names, wrong_names, differing
(from the reference), and for information redelivered and superseded. Exit status 1 unless
every run, the reference included, shows zeros in every failing column and nothing the
ground truth contradicts. At the defaults (3,000 messages at 100/s) a run takes about two
and a half minutes: the reference and the twelve default faults about 35 minutes.

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
  ``validator_down_60s``: the stack service is stopped, held down, started again. The
  replay waits out the broker; its account upserts wait out PostgreSQL.
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
- ``job_drain_restart`` (opt-in): the job is stopped with a drained savepoint (the watermark
  moves to the end, so every event-time timer fires and what the job held leaves it), and a
  new job starts from the committed offsets without that savepoint: an upgrade to a graph
  whose stages the savepoint no longer fits. It fails here at the stop: the drained
  savepoint expires, as the Kafka read's tasks do not finish (docs/flink-notes.md).

The TaskManager/JobManager faults wait (a while) for other jobs on the shared cluster to end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tools.chaos.faults import FAULTS, REFERENCE, Fault, kill_workerpool
from tools.chaos.runs import Result, Run, run_fault, table
from tools.chaos.waiting import say

__all__ = [
    "FAULTS", "REFERENCE", "Fault", "Result", "Run", "kill_workerpool", "main", "run_fault",
    "table",
]


def main(argv=None) -> None:
    from tools.seeded_input import SeededInput

    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", help="comma-separated fault names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every outage duration (e.g. 0.33: 30 s -> 10 s)")
    parser.add_argument("--count", type=int, default=3000,
                        help="transactions-topic messages of the input")
    parser.add_argument("--tps", type=float, default=100,
                        help="pace of the replay (transactions-topic messages per second)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--settle_s", type=float, default=300.0,
                        help="how long a run may take to settle after its input")
    parser.add_argument("--workdir", help="where the input's ground truth and the reference "
                                          "go (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's topics, Mongo database and S3 folders")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.list:
        for fault in FAULTS.values():
            tags = ("fast " if fault.fast else "     ") + ("replays " if fault.replays else
                                                             "        ")
            tags += "" if fault.default else "(opt-in) "
            print(f"{fault.name:30} {tags}{fault.doc}")
        return
    names = args.faults.split(",") if args.faults else [f.name for f in FAULTS.values()
                                                        if f.default]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; see --list")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="riskpipe-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = SeededInput.generate(args.seed, args.count, workdir)
    say(f"input: seed {args.seed}, {len(source.messages)} messages, "
        f"{len(source.transaction_ids)} transactions; workdir {workdir}")
    common = {"source": source, "tps": args.tps, "scale": args.scale,
              "settle_s": args.settle_s, "workdir": workdir, "keep": args.keep}
    first = run_fault(REFERENCE, **common)
    print(table([first]), flush=True)
    results = [first]
    if first.finals is None:
        say("the reference run left nothing to compare with: no fault is run")
    else:
        snapshot = workdir / f"reference-{args.seed}.json"
        snapshot.write_text(first.finals.to_json())
        say(f"reference final values: {snapshot}")
        for name in names:
            results.append(run_fault(FAULTS[name], reference=first.finals, **common))
            print(table(results[-1:]), flush=True)
    print("\nchaos results")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1,
                                              default=str))
    sys.exit(0 if all(r.ok for r in results) else 1)
