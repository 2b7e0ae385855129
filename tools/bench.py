"""Throughput of the pipeline on the DirectRunner against a plain baseline; one JSON object.

    python -m tools.bench                  # `make bench`: 100,000 transactions
    python -m tools.bench --count 30000 --skip-cache

Steps, all on the same freshly produced, seeded topics (deleted afterwards):

1. ``simulator``: the simulator CLI produces ``--count`` transactions (plus their
   accounts) to fresh topics; its own produce rate and the CLI's wall time.
2. ``pipeline``: the whole job (``pipeline.main.build``) on the FnApiRunner, bounded,
   in this process, Kafka → … → Postgres/Mongo/S3/Kafka; wall time from ``run()`` to
   the end, and transactions/s (joined transactions over that time).
3. ``baseline``: :mod:`tools.baseline` (one consumer, same parse, join,
   score and upsert, no Beam) over the same topics.
4. ``ratio``: baseline transactions/s over the pipeline's.
5. ``join_state_cache``: a graph of read → parse → join only, with Beam's state cache
   off (``--max_cache_memory_usage_mb=0``) and at its default; and the whole job with
   the cache off, to compare with step 2.

The services it needs are started first (``stack.up``); the rows it wrote are deleted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import stack
from pipeline.io.kafka import ReadFromKafka
from pipeline.io.postgres import lookup_factory
from pipeline.main import JOB_NAME, build, summary
from pipeline.options import RunOptions
from pipeline.runners.flags import with_runner_defaults
from pipeline.transforms.attribute import AttributeTransactions
from pipeline.transforms.parse import ParseAccounts, ParseTransactions, ReadRecords
from stack.kafka import ensure_topics
from tools.baseline import run_baseline

logger = logging.getLogger(__name__)
SERVICES = ["kafka", "postgres", "mongo", "s3", "validator"]
REPO = Path(__file__).resolve().parents[1]


class Bench:
    """Fresh topics, a seeded simulation on them, and runs of the job over them."""

    def __init__(self, endpoints: dict, prefix: str = "bench"):
        self.bootstrap = endpoints["kafka"]["bootstrap_servers"]
        self.dsn = endpoints["postgres"]["dsn"]
        self.mongo_uri = endpoints["mongo"]["uri"]
        self.validator_url = endpoints["validator"]["url"]
        self.s3_bucket = endpoints["s3"].get("bucket", "riskpipe")
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}."
        self.topics = {
            "accounts": self.prefix + "accounts",
            "transactions": self.prefix + "transactions",
            "ground_truth": self.prefix + "ground-truth",
            "dead_letters": self.prefix + "dead-letters",
            "fraud_results": self.prefix + "fraudulent-transactions-result",
            "users": self.prefix + "users",
        }
        self.mongo_db = self.prefix.rstrip(".").replace("-", "_")
        self.truth_file = Path(tempfile.mkdtemp(prefix="riskpipe-bench-")) / "truth.jsonl"
        self.truth: list[dict] = []

    def simulate(self, count: int | None, seed: int, accounts: int, *extra: str) -> dict:
        """Runs the simulator CLI (``count=None``: ``extra`` says how much); its JSON summary
        plus the CLI's wall time."""
        ensure_topics(
            {self.topics[k]: 1 for k in ("dead_letters", "fraud_results", "users")},
            bootstrap=self.bootstrap,
        )
        command = [
            sys.executable, "-m", "simulator", "--seed", str(seed),
            *(["--count", str(count)] if count is not None else []),
            "--accounts", str(accounts), "--topic-prefix", self.prefix,
            "--bootstrap-servers", self.bootstrap, "--postgres-dsn", self.dsn,
            "--ground-truth-all", "--ground-truth-file", str(self.truth_file), "--quiet",
            *extra,
        ]
        started = time.perf_counter()
        done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"simulator failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.truth = [json.loads(line) for line in self.truth_file.read_text().splitlines()]
        result["cli_wall_s"] = round(wall, 3)
        return result

    def args(self, group: str, *extra: str) -> list[str]:
        return with_runner_defaults([
            f"--kafka_bootstrap={self.bootstrap}",
            f"--postgres_dsn={self.dsn}",
            f"--mongo_uri={self.mongo_uri}",
            f"--mongo_db={self.mongo_db}",
            f"--validator_url={self.validator_url}",
            f"--s3_bucket={self.s3_bucket}",
            f"--accounts_topic={self.topics['accounts']}",
            f"--transactions_topic={self.topics['transactions']}",
            f"--dead_letter_topic={self.topics['dead_letters']}",
            f"--fraud_results_topic={self.topics['fraud_results']}",
            f"--users_topic={self.topics['users']}",
            f"--consumer_group={self.prefix}{group}",
            "--start_offset=earliest",
            *extra,
        ], JOB_NAME)

    def run_pipeline(self, group: str, *extra: str) -> dict:
        """The whole job, bounded, on the FnApiRunner in this process."""
        options = PipelineOptions(self.args(group, *extra))
        options.view_as(RunOptions).bounded = True
        p = beam.Pipeline(options=options)
        build(p, options)
        started = time.perf_counter()
        result = p.run()
        result.wait_until_finish()
        wall = time.perf_counter() - started
        figures = summary(result)
        return {
            "state": str(result.state),
            "seconds": round(wall, 3),
            "transactions_per_s": round(figures["joined"] / wall, 1),
            "records_per_s": round(figures["kafka_records_read"] / wall, 1),
            **figures,
        }

    def run_join_only(self, group: str, *extra: str) -> dict:
        """Read → parse → join and score → count: the stateful step without decisions and sinks."""
        options = PipelineOptions(self.args(group, *extra))
        p = beam.Pipeline(options=options)

        def read(topic, parse):
            return ReadRecords(
                ReadFromKafka(self.bootstrap, [topic], f"{self.prefix}{group}",
                              start="earliest", bounded=True),
                parse,
            )

        accounts = p | "ReadAccounts" >> read(self.topics["accounts"], ParseAccounts())
        transactions = p | "ReadTransactions" >> read(
            self.topics["transactions"], ParseTransactions())
        (
            (accounts.records, transactions.records)
            | "AttributeTransactions" >> AttributeTransactions(lookup_factory(self.dsn))
            | "Count" >> beam.combiners.Count.Globally()
        )
        started = time.perf_counter()
        result = p.run()
        result.wait_until_finish()
        wall = time.perf_counter() - started
        joined = summary(result)["joined"]
        return {"seconds": round(wall, 3), "joined": joined,
                "transactions_per_s": round(joined / wall, 1)}

    def cleanup(self) -> None:
        ids = [row["transaction_id"] for row in self.truth if row.get("kind") == "transaction"]
        if ids:
            import psycopg2

            with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
                cur.execute("DELETE FROM banking.attributed_transactions "
                            "WHERE transaction_id = ANY(%s)", (ids,))
        import pymongo

        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000)
        try:
            client.drop_database(self.mongo_db)
        except pymongo.errors.PyMongoError as error:  # best effort
            logger.warning("bench: could not drop mongo db %s: %s", self.mongo_db, error)
        finally:
            client.close()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.delete_topics(list(self.topics.values())).values():
            try:
                future.result(30)
            except KafkaException:
                pass
        self.truth_file.unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=100_000,
                        help="transactions to produce (default 100000)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip the Beam job")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the baseline")
    parser.add_argument("--skip-cache", action="store_true",
                        help="skip the state-cache comparison (three more runs)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the topics, rows and Mongo database afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    endpoints = stack.up(SERVICES)
    bench = Bench(endpoints)
    result: dict = {
        "count": args.count, "accounts": args.accounts, "seed": args.seed,
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "runner": "FnApiRunner (bounded, in-process)",
    }
    try:
        sim = bench.simulate(args.count, args.seed, args.accounts)
        result["simulator"] = {
            "produced_messages": sim["messages"]["produced"],
            "transactions": sim["transactions"],
            "rate_tps": sim["rate_tps"],
            "elapsed_s": sim["elapsed_s"],
            "cli_wall_s": sim["cli_wall_s"],
        }
        if not args.skip_pipeline:
            result["pipeline"] = bench.run_pipeline("pipeline")
        if not args.skip_baseline:
            result["baseline"] = run_baseline(
                bench.bootstrap, bench.topics["accounts"], bench.topics["transactions"],
                bench.dsn,
            )
        if "pipeline" in result and "baseline" in result:
            result["ratio_baseline_over_pipeline"] = round(
                result["baseline"]["transactions_per_s"]
                / max(result["pipeline"]["transactions_per_s"], 1e-9), 2)
        if not args.skip_cache:
            off = "--max_cache_memory_usage_mb=0"
            result["join_state_cache"] = {
                "join_only_cache_default": bench.run_join_only("join-default"),
                "join_only_cache_off": bench.run_join_only("join-nocache", off),
            }
            if not args.skip_pipeline:
                result["join_state_cache"]["pipeline_cache_off"] = bench.run_pipeline(
                    "pipeline-nocache", off)
            cache = result["join_state_cache"]
            cache["join_only_slowdown_cache_off"] = round(
                cache["join_only_cache_off"]["seconds"]
                / max(cache["join_only_cache_default"]["seconds"], 1e-9), 2)
    finally:
        if not args.keep:
            bench.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
