"""Throughput of the job on Flink and on the FnApiRunner, of a Quix Streams peer and of a plain
baseline, on one seeded simulation; the job's latency on Flink at fixed rates. One JSON object.

    python -m tools.bench                         # `make bench`: 100,000 transactions
    python -m tools.bench --count 20000 --skip-flink
    python -m tools.bench --job-arg=--parallelism=2 --job-arg=--sdk_worker_parallelism=2

The simulator produces ``--count`` transactions and their accounts once, to fresh topics
(4 partitions, keyed by account_id). Each engine then processes all of them, one after the
other; the rows of the run before are deleted first, so each run's ``written_at`` is its own:

1. ``baseline``: :mod:`tools.baseline`, the job's per-record code in one plain consumer.
2. ``quix``: :mod:`tools.quix_peer`, the same code as a Quix Streams application.
3. ``fnapi``: the whole job (``pipeline.main.build``), bounded, on the FnApiRunner in this
   process, validator and fraud results included.
4. ``flink``: the streaming job submitted to the local Flink cluster reads the backlog
   (``saturation``: rows per second by ``written_at``, the middle 80 %); then, the job still
   running, the simulator publishes ``--latency-rates`` transactions/s for
   ``--latency-duration`` s each (``fixed_rate``): produce → Postgres row p50/p95/p99.

An engine's ``transactions_per_s`` is the simulation's transactions over its wall time (the
baseline and the Quix peer: run start to last row written; the FnApiRunner: ``run()`` to its
return, the fraud results' last S3 writes included), Flink's the saturation's sustained
rate. After each run, ``rows_check`` says whether every transaction has its row and how many
rows equal the first engine's (``rows_agree``; account_name and the rules' risk_reasons).
``ratios``: each engine's transactions/s over each other's. ``--state-cache`` adds the FnApiRunner runs with Beam's
state cache off. The services are started first (``stack.up``); the rows, topics, Mongo
database and S3 objects are removed afterwards (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import stack
from tools.baseline import run_baseline
from tools.bench_data import SERVICES, compare_rows, ratios
from tools.bench_flink import RUNNER, FlinkBench, add_flink_args
from tools.bench_flink import SERVICES as FLINK_SERVICES
from tools.bench_fnapi import run_join_only, run_pipeline

logger = logging.getLogger(__name__)
# The engines, in the order they run; the first to run is the reference of the rows.
ENGINES = ("baseline", "quix", "fnapi", "flink")
# The order of the ratios: the job on Flink first, the baseline last.
RATIO_ORDER = ("flink", "quix", "fnapi", "baseline")
# How long the job on Flink may take to commit its input's offsets once every row is there.
COMMIT_TIMEOUT_S = 120.0


def run_quix(data: FlinkBench) -> dict:
    # Imported here: quixstreams comes with the `bench` extra, which only this engine needs.
    from tools.quix_peer import run_quix_peer

    return run_quix_peer(data.bootstrap, data.topics["accounts"],
                         data.topics["transactions"], data.dsn)


def run_flink(data: FlinkBench, backlog: dict, args) -> dict:
    """The job on Flink over the backlog, then the fixed-rate phases; cancelled at the end."""
    out: dict = {"runner": RUNNER}
    submitted = time.time()  # the backlog is in the topics: rows may come before the phase
    with data.job(*args.job_arg, keep=args.keep) as job_id:
        out["job_id"] = job_id
        saturation = data.phase("saturation", job_id, lambda: backlog, 0.0, args.drain_timeout,
                                began=submitted)
        # The backlog waited in Kafka while the other engines ran: its produce → row latency
        # says nothing about the job.
        saturation.pop("latency_ms", None)
        saturation.pop("p50_ms_produce_to_scored", None)
        saturation.pop("p50_p99_ms_by_path", None)
        # Every row is there; once the offsets are committed, every correction is too.
        saturation["input_committed"] = data.wait_committed(COMMIT_TIMEOUT_S)
        out["transactions_per_s"] = saturation.get("sustained_tps")
        out["saturation"] = saturation
        out["fixed_rate"] = {
            f"{rate:g}_tps": data.phase(
                f"fixed_rate {rate:g}/s", job_id,
                data.fixed_rate(rate, args.latency_duration, args.seed + i),
                args.warmup, args.drain_timeout)
            for i, rate in enumerate(args.latency_rates, start=1)
        }
    return out


def run_engines(data: FlinkBench, backlog: dict, args) -> dict:
    """Each engine not skipped over the backlog, its rows checked against the first's."""
    runners = {
        "baseline": lambda: run_baseline(data.bootstrap, data.topics["accounts"],
                                         data.topics["transactions"], data.dsn),
        "quix": lambda: run_quix(data),
        "fnapi": lambda: run_pipeline(data, "fnapi"),
        "flink": lambda: run_flink(data, backlog, args),
    }
    ids = list(data.ids)
    results: dict = {}
    reference: dict | None = None
    for name in ENGINES:
        if name in args.skip:
            continue
        print(f"[bench] {name}: {len(ids)} transactions", file=sys.stderr, flush=True)
        data.clear_rows(ids)
        figures = runners[name]()
        if name != "flink":
            figures["transactions_per_s"] = round(len(ids) / figures["seconds"], 1)
        rows = data.rows(ids)
        reference = rows if reference is None else reference
        figures["rows_check"] = compare_rows(ids, rows, reference)
        results[name] = figures
    return results


def state_cache(data: FlinkBench) -> dict:
    """Read → parse → join with Beam's state cache at its default and off; the whole job off."""
    off = "--max_cache_memory_usage_mb=0"
    data.clear_rows(data.all_ids)
    cache = {
        "join_only_cache_default": run_join_only(data, "join-default"),
        "join_only_cache_off": run_join_only(data, "join-nocache", off),
        "pipeline_cache_off": run_pipeline(data, "pipeline-nocache", off),
    }
    cache["join_only_slowdown_cache_off"] = round(
        cache["join_only_cache_off"]["seconds"]
        / max(cache["join_only_cache_default"]["seconds"], 1e-9), 2)
    return cache


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=100_000,
                        help="transactions to produce (default 100000)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts (default 1000)")
    parser.add_argument("--seed", type=int, default=1,
                        help="simulator seed; the fixed-rate phases use seed+1, seed+2, … "
                             "(default 1)")
    for name in ENGINES:
        parser.add_argument(f"--skip-{name}", dest="skip", action="append_const", const=name,
                            default=[], help=f"do not run the {name} engine")
    parser.add_argument("--latency-rates", default="200,1000",
                        type=lambda text: [float(r) for r in text.split(",") if r],
                        help="offered transactions/s of the job's fixed-rate phases on Flink, "
                             "comma-separated; '' for none (default 200,1000)")
    parser.add_argument("--latency-duration", type=float, default=60,
                        help="seconds of each fixed-rate phase (default 60)")
    add_flink_args(parser)
    parser.add_argument("--state-cache", action="store_true",
                        help="also run the FnApiRunner with Beam's state cache off "
                             "(three more runs)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the job, topics, rows, Mongo database and S3 objects "
                             "afterwards")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = FlinkBench(stack.up(SERVICES if "flink" in args.skip else FLINK_SERVICES))
    result: dict = {
        "command": "python -m tools.bench " + " ".join(argv or sys.argv[1:]),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "count": args.count, "accounts": args.accounts, "seed": args.seed,
    }
    try:
        sim = data.simulate(args.count, args.seed, args.accounts)
        result["simulator"] = {
            "produced_messages": sim["messages"]["produced"],
            "transactions": sim["transactions"],
            "rate_tps": sim["rate_tps"],
            "elapsed_s": sim["elapsed_s"],
            "cli_wall_s": sim["cli_wall_s"],
        }
        engines = run_engines(data, sim, args)
        tps = {name: engines[name]["transactions_per_s"] for name in RATIO_ORDER
               if name in engines}
        result["transactions_per_s"] = tps
        result["ratios"] = ratios(tps)
        result["rows_agree"] = {
            name: f"{e['rows_check']['rows_agree']}/{e['rows_check']['transactions']}"
            for name, e in engines.items()
        }
        result["rows_reference"] = next(iter(engines), None)
        if "flink" in engines:
            result["flink_latency"] = {
                name: phase.get("latency_ms")
                for name, phase in engines["flink"]["fixed_rate"].items()
            }
        result["engines"] = engines
        if args.state_cache:
            result["join_state_cache"] = state_cache(data)
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if not args.keep:
            data.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
