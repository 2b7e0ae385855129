"""The bank simulator's CLI: ``python -m simulator --help``.

Examples::

    # a live demo: 200 transactions/s for five minutes, timestamps = now
    python -m simulator --tps 200 --duration 300
    # a reproducible batch as fast as possible, ground truth in a file
    python -m simulator --seed 42 --count 100000 --ground-truth-file truth.jsonl
    # generation only, nothing published (prints the same summary)
    python -m simulator --seed 42 --count 100000 --dry-run

Output: a progress line on stderr every second; one JSON summary line on stdout.
Exit status: 0 ok, 1 some message failed delivery, 2 bad arguments, 3 Kafka or Postgres
unreachable (or a missing table/topic that cannot be created).

Reproducibility: ``--seed`` fixes every record, ids and timestamps included. Event time then
starts at ``--start-time`` (default 2026-01-05T12:00:00Z, never the wall clock); without a
seed a random one is drawn (and reported in the summary) and event time starts now.
Event time advances at ``--event-rate`` transactions per second (default: ``--tps``, or 100
when ``--tps`` is 0), so a live run's timestamps follow the wall clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from datetime import UTC, datetime

import psycopg2
from confluent_kafka import KafkaException

from simulator import fraud
from simulator.generator import DEFAULT_START, BankSimulator, SimConfig
from simulator.publish import (
    AccountWriter,
    GroundTruthFile,
    KafkaPublisher,
    SimulatorError,
    UnreachableError,
)
from simulator.run import Sinks, Topics, run
from pipeline.local_defaults import LOCAL_KAFKA_BOOTSTRAP, LOCAL_PG_DSN

DEFAULT_BOOTSTRAP = LOCAL_KAFKA_BOOTSTRAP
DEFAULT_DSN = LOCAL_PG_DSN
EXIT_DELIVERY, EXIT_UNREACHABLE = 1, 3


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 timestamp, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(names) - set(fraud.SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenarios {unknown}; known: {', '.join(fraud.SCENARIOS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulated bank: Faker accounts and transactions to Kafka and Postgres, "
        "with injected fraud, bad messages and ground truth.",
    )
    volume = p.add_argument_group("volume and pace")
    stop = volume.add_mutually_exclusive_group()
    stop.add_argument(
        "--count",
        type=int,
        help="stop after N messages on the transactions "
        "topic (valid + bad); default 10000 unless --duration is given",
    )
    stop.add_argument(
        "--duration", type=_non_negative, help="stop after this many seconds"
    )
    volume.add_argument(
        "--tps",
        type=_non_negative,
        default=0.0,
        help="transactions per second to publish; 0 = as fast as possible (default)",
    )
    volume.add_argument(
        "--accounts",
        type=int,
        default=1000,
        help="accounts created at start (default 1000)",
    )
    volume.add_argument(
        "--seed",
        type=int,
        help="seed for a reproducible run (same seed, same records, ids and "
        "timestamps); default: random, reported in the summary",
    )
    volume.add_argument(
        "--start-time",
        type=_timestamp,
        help="event time of the first transaction (ISO-8601); default "
        f"{DEFAULT_START.isoformat()} with --seed, else now",
    )
    volume.add_argument(
        "--event-rate",
        type=float,
        help="transactions per second of event time; default --tps, or 100 "
        "when --tps is 0",
    )

    mix = p.add_argument_group("record mix")
    mix.add_argument(
        "--fraud-rate",
        type=_fraction,
        default=0.005,
        help="fraction of transactions that are injected fraud (default 0.005)",
    )
    mix.add_argument(
        "--fraud-known-share",
        type=_fraction,
        default=0.4,
        help="share of fraud the bank already labels 'fraudulent'; the rest is "
        "'unidentified' (default 0.4)",
    )
    mix.add_argument(
        "--fraud-scenarios",
        type=_scenarios,
        default=tuple(fraud.SCENARIOS),
        help="comma-separated scenarios to inject (default all: "
        f"{','.join(fraud.SCENARIOS)})",
    )
    mix.add_argument(
        "--unidentified-rate",
        type=_fraction,
        default=0.03,
        help="fraction of ordinary transactions labelled 'unidentified' (default 0.03)",
    )
    mix.add_argument(
        "--bad-rate",
        type=_fraction,
        default=0.0,
        help="fraction of malformed messages on the transactions topic (default 0)",
    )
    mix.add_argument(
        "--late-account-rate",
        type=_fraction,
        default=0.02,
        help="fraction of accounts published (Kafka and Postgres) only after "
        "1-3 of their transactions (default 0.02)",
    )
    mix.add_argument(
        "--update-rate",
        type=_fraction,
        default=0.002,
        help="account updates (balance, name, email) per transaction (default 0.002)",
    )

    out = p.add_argument_group("outputs")
    out.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("RISKPIPE_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (env RISKPIPE_KAFKA_BOOTSTRAP; default "
        f"{DEFAULT_BOOTSTRAP})",
    )
    out.add_argument(
        "--postgres-dsn",
        default=os.environ.get("RISKPIPE_PG_DSN", DEFAULT_DSN),
        help="Postgres DSN (env RISKPIPE_PG_DSN; default the local stack's)",
    )
    out.add_argument(
        "--accounts-table",
        default="banking.accounts",
        help="table the accounts are upserted into (default banking.accounts)",
    )
    out.add_argument(
        "--no-postgres", action="store_true", help="do not write accounts to Postgres"
    )
    out.add_argument(
        "--topic-prefix",
        default="",
        help="prefix for every topic name (e.g. 'test42.' for isolated tests)",
    )
    out.add_argument(
        "--accounts-topic", default="accounts", help="accounts topic (default accounts)"
    )
    out.add_argument(
        "--transactions-topic",
        default="transactions",
        help="transactions topic (default transactions)",
    )
    out.add_argument(
        "--ground-truth-topic",
        default="ground-truth",
        help="ground-truth topic; '' to disable (default ground-truth)",
    )
    out.add_argument(
        "--ground-truth-file", help="also write ground truth as JSONL to this file"
    )
    out.add_argument(
        "--ground-truth-all",
        action="store_true",
        help="a ground-truth row for every transaction, not only fraud and bad "
        "messages",
    )
    out.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of topics the simulator has to create (default 4, as "
        "the local stack creates accounts and transactions)",
    )
    out.add_argument(
        "--compression",
        choices=("auto", "zstd", "lz4", "snappy", "gzip", "none"),
        default="auto",
        help="Kafka compression (default auto: zstd, else lz4)",
    )
    out.add_argument(
        "--connect-timeout",
        type=_non_negative,
        default=5.0,
        help="seconds to wait for Kafka and Postgres at start (default 5)",
    )
    out.add_argument(
        "--dry-run",
        action="store_true",
        help="generate only: publish and write nothing (ground-truth file excepted)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def config_from_args(
    args: argparse.Namespace, now: datetime | None = None
) -> SimConfig:
    """The generator's config; draws a seed and uses ``now`` when no seed was given."""
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(63)
    if args.start_time:
        start = args.start_time
    elif args.seed is not None:
        start = DEFAULT_START
    else:
        start = now or datetime.now(UTC)
    event_rate = args.event_rate or (args.tps if args.tps > 0 else 100.0)
    return SimConfig(
        seed=seed,
        accounts=args.accounts,
        start_time=start,
        event_rate=event_rate,
        fraud_rate=args.fraud_rate,
        fraud_known_share=args.fraud_known_share,
        unidentified_rate=args.unidentified_rate,
        bad_rate=args.bad_rate,
        late_account_rate=args.late_account_rate,
        update_rate=args.update_rate,
        scenarios=args.fraud_scenarios,
        ground_truth_all=args.ground_truth_all,
    )


def open_sinks(args: argparse.Namespace) -> Sinks:
    """Connects to Kafka and Postgres (failing fast) and opens the ground-truth file."""
    topics = Topics(
        accounts=args.topic_prefix + args.accounts_topic,
        transactions=args.topic_prefix + args.transactions_topic,
        ground_truth=args.topic_prefix + args.ground_truth_topic
        if args.ground_truth_topic
        else "",
    )
    sinks = Sinks(topics=topics)
    if not args.dry_run:
        sinks.kafka = KafkaPublisher(
            args.bootstrap_servers, compression=args.compression
        )
        sinks.kafka.check(args.connect_timeout)
        if not args.no_postgres:
            sinks.postgres = AccountWriter(args.postgres_dsn, table=args.accounts_table)
            sinks.postgres.check(args.connect_timeout)
        sinks.kafka.ensure_topics(
            [topics.accounts, topics.transactions, topics.ground_truth],
            partitions=args.partitions,
        )
    if args.ground_truth_file:
        sinks.ground_truth_file = GroundTruthFile(args.ground_truth_file)
    return sinks


def main(argv: list[str] | None = None) -> int:
    """Runs the simulator; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 0:
        parser.error("--count must be >= 0")
    if args.accounts < 2:
        parser.error("--accounts must be >= 2")
    if args.count is None and args.duration is None:
        args.count = 10_000
    logging.basicConfig(
        level=logging.WARNING, format="%(name)s: %(levelname)s %(message)s"
    )
    # librdkafka logs every failed connection attempt; check() reports it once, clearly.
    logging.getLogger("simulator.publish.librdkafka").setLevel(logging.CRITICAL)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sinks = open_sinks(args)
    except (UnreachableError, SimulatorError) as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        summary = run(
            BankSimulator(config),
            sinks,
            count=args.count,
            duration=args.duration,
            tps=args.tps,
            progress=None if args.quiet else sys.stderr,
        )
    except (psycopg2.Error, KafkaException) as exc:
        first_line = (str(exc).strip().splitlines() or [repr(exc)])[0]
        print(f"simulator: error: publishing failed: {first_line}", file=sys.stderr)
        return EXIT_DELIVERY
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    if summary["delivery_failures"]:
        print(
            f"simulator: error: {summary['delivery_failures']} messages failed delivery: "
            f"{'; '.join(summary['delivery_errors'])}",
            file=sys.stderr,
        )
        return EXIT_DELIVERY
    return 0


if __name__ == "__main__":
    sys.exit(main())
