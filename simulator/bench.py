"""Benchmark of the simulator's hot path; prints one JSON object.

    .venv/bin/python -m simulator.bench --count 300000
    taskset -c 0 .venv/bin/python -m simulator.bench   # everything on one core

Three measurements, same seed and count:
- ``generate``: iterating the generator's events;
- ``generate_serialize``: plus the JSON each message would carry (a ``--dry-run``);
- ``generate_produce``: the real publish loop into fresh, uniquely named topics (deleted
  afterwards), including librdkafka's flush of the last batches. Postgres is left out: it
  only sees accounts. Skipped, with the reason, when Kafka is unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from simulator.__main__ import DEFAULT_BOOTSTRAP
from simulator.generator import BankSimulator, SimConfig
from simulator.publish import KafkaPublisher, UnreachableError
from simulator.run import Sinks, Topics, run


class _Clock:
    """Wall time, the calling thread's CPU time and the whole process's CPU time."""

    def __init__(self):
        self.wall, self.thread, self.process = (
            time.perf_counter(),
            time.thread_time(),
            time.process_time(),
        )

    def rates(self, count: int) -> dict:
        wall = time.perf_counter() - self.wall
        thread = time.thread_time() - self.thread
        process = time.process_time() - self.process
        return {
            "seconds": round(wall, 3),
            "tps": round(count / wall, 1),
            # per CPU-second of the Python thread: what one core sustains, unaffected
            # by other load on a shared machine
            "tps_per_main_thread_cpu_s": round(count / thread, 1),
            "process_cpu_s": round(process, 3),
        }


def bench_generate(config: SimConfig, count: int) -> dict:
    sim = BankSimulator(config)
    clock = _Clock()
    for _ in sim.events(count):
        pass
    return clock.rates(count)


def bench_run(
    config: SimConfig, count: int, kafka: KafkaPublisher | None, topics: Topics
) -> dict:
    sim = BankSimulator(config)
    clock = _Clock()
    summary = run(sim, Sinks(kafka=kafka, topics=topics), count=count)
    return {
        **clock.rates(count),
        "tps_before_final_flush": summary["rate_tps"],
        "delivery_failures": summary["delivery_failures"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--count",
        type=int,
        default=300_000,
        help="transactions per measurement (default 300000)",
    )
    parser.add_argument(
        "--accounts", type=int, default=1000, help="accounts (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    parser.add_argument(
        "--bad-rate",
        type=float,
        default=0.0,
        help="fraction of bad messages (default 0)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("RISKPIPE_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (env RISKPIPE_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--compression",
        default="auto",
        help="Kafka compression (default auto: zstd, else lz4)",
    )
    parser.add_argument(
        "--no-kafka", action="store_true", help="skip the produce measurement"
    )
    args = parser.parse_args(argv)
    logging.getLogger("simulator.publish.librdkafka").setLevel(logging.CRITICAL)
    config = SimConfig(seed=args.seed, accounts=args.accounts, bad_rate=args.bad_rate)
    result = {
        "count": args.count,
        "accounts": args.accounts,
        "cpus": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "generate": bench_generate(config, args.count),
        "generate_serialize": bench_run(config, args.count, None, Topics()),
    }
    if not args.no_kafka:
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        topics = Topics(
            accounts=prefix + "accounts",
            transactions=prefix + "transactions",
            ground_truth=prefix + "ground-truth",
        )
        kafka = KafkaPublisher(args.bootstrap_servers, compression=args.compression)
        try:
            kafka.check(5.0)
        except UnreachableError as exc:
            result["generate_produce"] = {"skipped": str(exc)}
        else:
            kafka.ensure_topics(
                [topics.accounts, topics.transactions, topics.ground_truth]
            )
            try:
                result["generate_produce"] = bench_run(
                    config, args.count, kafka, topics
                )
                result["generate_produce"]["compression"] = kafka.compression
            finally:
                admin = AdminClient({"bootstrap.servers": args.bootstrap_servers})
                for future in admin.delete_topics(
                    [topics.accounts, topics.transactions, topics.ground_truth]
                ).values():
                    try:
                        future.result(30)
                    except KafkaException:  # already gone (e.g. the broker was reset)
                        pass
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
