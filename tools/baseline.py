"""A plain single-process baseline of the pipeline's hot path, to measure Beam's overhead.

    python -m tools.baseline --accounts_topic=P.accounts \\
        --transactions_topic=P.transactions

One confluent-kafka consumer reads the accounts and transactions topics to the end
offsets seen at start (like the bounded DirectRunner run); every message goes through the
job's own per-record code: the parser (:mod:`pipeline.domain.shapes`, ``auto``), one
:class:`~pipeline.domain.attribution.AccountHistory` per account in a dict (join, features,
score and corrections, as the job's stateful step), a Postgres lookup for an account not
seen on the topic, a buffer for transactions whose account arrives later, the routing, and
the same upsert into banking.attributed_transactions (:func:`pipeline.io.postgres.copy_rows`).

Left out, on purpose: the validator calls for ``unidentified`` transactions, the fraud
results (Mongo, S3, Kafka) and the dead-letter topic. They concern a few percent of the
records; the figure is the cost of read → parse → join → score → write.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import psycopg2
from confluent_kafka import Consumer, TopicPartition

from pipeline.domain.attribution import BEGINNING, AccountHistory, Scored
from pipeline.domain.scoring import is_suspicious
from pipeline.domain.shapes import account_parser, transaction_parser
from pipeline.errors import InvalidRecord
from pipeline.io.postgres import PostgresAccountLookup, attributed_row, copy_rows
from pipeline.local_defaults import LOCAL_KAFKA_BOOTSTRAP, LOCAL_PG_DSN
from pipeline.options import env
from pipeline.records import AttributedTransaction
from pipeline.transforms.route import route

__all__ = ["run_baseline"]

DEFAULT_BOOTSTRAP = env("RISKPIPE_KAFKA_BOOTSTRAP", LOCAL_KAFKA_BOOTSTRAP)
DEFAULT_DSN = env("RISKPIPE_PG_DSN", LOCAL_PG_DSN)


def _end_offsets(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], int]:
    ends = {}
    metadata = consumer.list_topics(timeout=10)
    for topic in topics:
        if topic not in metadata.topics:
            raise SystemExit(f"baseline: topic {topic!r} does not exist")
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[(topic, partition)] = high
    return ends


def run_baseline(
    bootstrap: str,
    accounts_topic: str,
    transactions_topic: str,
    dsn: str,
    batch_size: int = 1000,
) -> dict:
    """Processes both topics to their current end; returns counts, seconds and records/s."""
    started = time.perf_counter()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"riskpipe-baseline-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.message.max.bytes": 4 * 1024 * 1024,
    })
    conn = psycopg2.connect(dsn, connect_timeout=5)
    lookup = PostgresAccountLookup(dsn)
    # The parsers of the job's parse step, with its default --input_format.
    parse_account, parse_transaction = account_parser("auto"), transaction_parser("auto")
    histories: dict[str, AccountHistory] = {}
    waiting: dict[str, list] = defaultdict(list)  # account_id -> [(produced, transaction)]
    batch: dict[str, tuple] = {}
    counts = dict.fromkeys(
        ("kafka_records_read", "parsed", "dead_lettered", "joined", "unjoined", "corrected",
         "postgres_rows_written", "high_risk"), 0)
    processed_at = datetime.now(UTC)

    def flush():
        if batch:
            with conn.cursor() as cursor:
                copy_rows(cursor, list(batch.values()))
            conn.commit()
            counts["postgres_rows_written"] += len(batch)
            batch.clear()

    def emit(rows: list[Scored], joined: bool):
        if rows:
            counts["joined" if joined else "unjoined"] += 1
            counts["high_risk"] += is_suspicious(rows[0].risk_score)
            counts["corrected"] += len(rows) - 1
        for row in rows:
            _, record = route(AttributedTransaction(
                transaction=row.transaction,
                account_name=row.account.account_name if row.account is not None else None,
                risk_score=row.risk_score, risk_reasons=row.risk_reasons,
                processed_at=processed_at, account=row.account,
            ))
            batch[record.transaction_id] = attributed_row(record)
        if len(batch) >= batch_size:
            flush()

    def history_of(account_id: str) -> AccountHistory:
        history = histories.get(account_id)
        if history is None:
            history = histories[account_id] = AccountHistory()
        return history

    try:
        ends = _end_offsets(consumer, [accounts_topic, transactions_topic])
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
        remaining = dict(ends)
        while remaining:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error():
                    continue
                key = (message.topic(), message.partition())
                if key not in remaining or message.offset() >= remaining[key]:
                    continue
                if message.offset() + 1 >= remaining[key]:
                    del remaining[key]
                counts["kafka_records_read"] += 1
                is_account = message.topic() == accounts_topic
                try:
                    record = (parse_account if is_account else parse_transaction)(message.value())
                except InvalidRecord:
                    counts["dead_lettered"] += 1
                    continue
                counts["parsed"] += 1
                produced = message.timestamp()[1] * 1000
                history = history_of(record.account_id)
                if is_account:
                    emit(history.add_version(produced, record), joined=True)
                    for item in waiting.pop(record.account_id, ()):
                        emit(history.add_transaction(*item), joined=True)
                    continue
                if not history.has_account and record.account_id not in waiting:
                    account = lookup([record.account_id]).get(record.account_id)
                    if account is not None:
                        history.add_version(BEGINNING, account)
                if history.has_account:
                    emit(history.add_transaction(produced, record), joined=True)
                else:
                    waiting[record.account_id].append((produced, record))
        # End of the bounded slice: a last lookup, then a LEFT JOIN for what still waits.
        if waiting:
            found = lookup(list(waiting))
            for account_id, items in waiting.items():
                history = history_of(account_id)
                if account_id in found:
                    history.add_version(BEGINNING, found[account_id])
                for item in items:
                    emit(history.add_transaction(*item), joined=account_id in found)
            waiting.clear()
        flush()
    finally:
        consumer.close()
        lookup.close()
        conn.close()
    seconds = time.perf_counter() - started
    transactions = counts["joined"] + counts["unjoined"]
    return {
        **counts,
        "seconds": round(seconds, 3),
        "records_per_s": round(counts["kafka_records_read"] / seconds, 1),
        "transactions_per_s": round(transactions / seconds, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka_bootstrap", default=DEFAULT_BOOTSTRAP)
    parser.add_argument("--accounts_topic", default="accounts")
    parser.add_argument("--transactions_topic", default="transactions")
    parser.add_argument("--postgres_dsn", default=DEFAULT_DSN)
    parser.add_argument("--postgres_batch_size", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(run_baseline(args.kafka_bootstrap, args.accounts_topic,
                                  args.transactions_topic, args.postgres_dsn,
                                  args.postgres_batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
