"""The bank simulator's CLI: ``python -m simulator --help``.

Examples::

    # a live demo: 200 transactions/s for five minutes, timestamps = now
    python -m simulator --tps 200 --duration 300
    # a reproducible batch as fast as possible, ground truth in a file
    python -m simulator --seed 42 --count 100000 --ground-truth-file truth.jsonl
    # generation only, nothing published (prints the same summary)
    python -m simulator --seed 42 --count 100000 --dry-run
    # train on some fraud families, test on others (another seed, other data)
    python -m simulator --seed 1 --scenarios mule_inflow,structuring --dry-run \
        --ground-truth-file train.jsonl
    # the Flink SQL job's input shape, or the Kafka PoC's
    python -m simulator --seed 42 --format flinksql
    python -m simulator --seed 42 --format poc

Output: a progress line on stderr every second; one JSON summary line on stdout.
Exit status: 0 ok, 1 some message failed delivery, 2 bad arguments, 3 Kafka or Postgres
unreachable (or a missing table/topic that cannot be created).

Reproducibility: ``--seed`` fixes every record, ids and timestamps included. Event time then
starts at ``--start-time`` (default 2025-01-06T12:00:00Z, never the wall clock) and runs at
bank pace: each account transacts during its active hours, ``--tx-per-account-per-day``
times a day on average (default 3), so 20,000 transactions over 1,000 accounts span about a
week of event time. Without a seed a random one is drawn (and reported in the summary),
event time starts now and advances at ``--tps`` (or 100/s when ``--tps`` is 0), so a live
run's timestamps follow the wall clock. ``--event-rate`` sets a constant rate instead.
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

from pipeline.local_defaults import LOCAL_KAFKA_BOOTSTRAP, LOCAL_PG_DSN
from simulator import fraud
from simulator.formats import FORMATS, SHAPES
from simulator.generator import DEFAULT_START, BankSimulator, SimConfig
from simulator.pace import DEFAULT_TX_PER_ACCOUNT_PER_DAY
from simulator.publish import (
    AccountWriter,
    GroundTruthFile,
    KafkaPublisher,
    SimulatorError,
    UnreachableError,
)
from simulator.run import Sinks, Topics, run

DEFAULT_BOOTSTRAP = LOCAL_KAFKA_BOOTSTRAP
DEFAULT_DSN = LOCAL_PG_DSN
EXIT_DELIVERY, EXIT_UNREACHABLE = 1, 3
LIVE_EVENT_RATE = 100.0  # event time of an unseeded run at --tps 0
EARLIEST_START = datetime(
    2000, 1, 1, tzinfo=UTC
)  # the pipeline rejects anything earlier
FUTURE_MARGIN_S = 86_400.0  # ...and anything later than a day from now


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


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number > 0, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 timestamp, got {text!r}"
        ) from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value < EARLIEST_START:
        raise argparse.ArgumentTypeError(
            f"start time {text!r} is before 2000-01-01, which the pipeline rejects"
        )
    return value


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = sorted(set(names) - set(fraud.SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenarios {unknown}; known: {', '.join(fraud.SCENARIOS)}"
        )
    if not names:
        raise argparse.ArgumentTypeError(
            "expected at least one scenario (use --fraud-rate 0 for none)"
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
        help="event time of the first transaction (ISO-8601, UTC when no zone; "
        f"not before 2000); default {DEFAULT_START.isoformat()} with --seed, else now",
    )
    volume.add_argument(
        "--tx-per-account-per-day",
        type=_positive,
        default=DEFAULT_TX_PER_ACCOUNT_PER_DAY,
        help="bank pace of a seeded run: transactions per account per day, on "
        "average over accounts; each account transacts only in its active hours "
        "(day/night), some much more than others (default "
        f"{DEFAULT_TX_PER_ACCOUNT_PER_DAY:g}: 20,000 transactions over 1,000 "
        "accounts span about a week of event time)",
    )
    volume.add_argument(
        "--event-rate",
        type=_positive,
        help="a constant rate of event time, in transactions per second, instead "
        "of the default: bank pace (see --tx-per-account-per-day) with --seed, "
        f"else --tps (or {LIVE_EVENT_RATE:g} when --tps is 0) so that a live run's "
        "timestamps follow the wall clock",
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
        "--scenarios",
        "--fraud-scenarios",
        dest="fraud_scenarios",
        type=_scenarios,
        default=tuple(fraud.SCENARIOS),
        help="comma-separated fraud families to inject, any subset (default all: "
        f"{','.join(fraud.SCENARIOS)}); see simulator/fraud/__init__.py",
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
        "1-3 of their transactions, or a minute of event time after the first "
        "(default 0.02)",
    )
    mix.add_argument(
        "--update-rate",
        type=_fraction,
        default=0.002,
        help="account updates (balance, name, email) per transaction (default 0.002)",
    )

    out = p.add_argument_group("outputs")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="riskpipe",
        help="record shape: riskpipe (default: accounts + transactions keyed by "
        "account_id); flinksql (the Flink SQL job's: accounts + bank_transactions, "
        "unkeyed, capitalised vocabularies, 'datetime_occured'); poc (the Kafka "
        "PoC's: one unkeyed bank-transactions topic of transfers carrying both "
        "users, no accounts topic, nothing written to Postgres). Same records "
        "and ground truth in every shape; see simulator/formats/",
    )
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
        help="table the accounts are upserted into (default banking.accounts; "
        "--format flinksql fills only its 6 columns, poc writes none)",
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
        "--accounts-topic",
        default="accounts",
        help="accounts topic (default accounts; --format poc has none)",
    )
    out.add_argument(
        "--transactions-topic",
        help="transactions topic (default by --format: "
        + ", ".join(f"{s.name}: {s.transactions_topic}" for s in SHAPES.values())
        + ")",
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
    if args.event_rate:
        event_rate = args.event_rate
    elif args.seed is not None:
        event_rate = None  # bank pace
    else:
        event_rate = args.tps if args.tps > 0 else LIVE_EVENT_RATE
    return SimConfig(
        seed=seed,
        accounts=args.accounts,
        start_time=start,
        event_rate=event_rate,
        tx_per_account_per_day=args.tx_per_account_per_day,
        fraud_rate=args.fraud_rate,
        fraud_known_share=args.fraud_known_share,
        unidentified_rate=args.unidentified_rate,
        bad_rate=args.bad_rate,
        late_account_rate=args.late_account_rate,
        update_rate=args.update_rate,
        scenarios=args.fraud_scenarios,
        ground_truth_all=args.ground_truth_all,
        message_format=args.format,
    )


def warn_if_future(
    sim: BankSimulator,
    count: int | None,
    duration: float | None,
    tps: float,
    now: datetime | None = None,
) -> str | None:
    """A warning when the run's expected last event time is more than a day from now."""
    n = count if count is not None else (duration * tps if tps > 0 else None)
    if not n:
        return None
    end = sim.config.start_time.timestamp() + n / sim.mean_rate
    now_s = (now or datetime.now(UTC)).timestamp()
    if end <= now_s + FUTURE_MARGIN_S:
        return None
    when = datetime.fromtimestamp(end, UTC).isoformat(timespec="seconds")
    return (
        f"event time will reach about {when}, more than a day from now: the pipeline "
        "rejects such transactions; choose an earlier --start-time, fewer transactions "
        "or more --accounts"
    )


def open_sinks(args: argparse.Namespace) -> Sinks:
    """Connects to Kafka and Postgres (failing fast) and opens the ground-truth file."""
    shape = SHAPES[args.format]
    topics = Topics(
        accounts=args.topic_prefix + args.accounts_topic
        if shape.accounts_topic
        else "",
        transactions=args.topic_prefix
        + (args.transactions_topic or shape.transactions_topic),
        ground_truth=args.topic_prefix + args.ground_truth_topic
        if args.ground_truth_topic
        else "",
    )
    sinks = Sinks(topics=topics, format=shape.name)
    if not args.dry_run:
        sinks.kafka = KafkaPublisher(
            args.bootstrap_servers, compression=args.compression
        )
        sinks.kafka.check(args.connect_timeout)
        if not args.no_postgres and shape.postgres_columns:
            sinks.postgres = AccountWriter(
                args.postgres_dsn,
                table=args.accounts_table,
                columns=shape.postgres_columns,
            )
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
    sim = BankSimulator(config)
    warning = warn_if_future(sim, args.count, args.duration, args.tps)
    if warning:
        print(f"simulator: warning: {warning}", file=sys.stderr)
    try:
        sinks = open_sinks(args)
    except (UnreachableError, SimulatorError) as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        summary = run(
            sim,
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
