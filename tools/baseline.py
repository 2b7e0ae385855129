"""A plain single-process baseline of the pipeline's hot path, to measure Beam's overhead.

    python -m tools.baseline --accounts_topic=P.accounts \\
        --transactions_topic=P.transactions

One confluent-kafka consumer reads the accounts and transactions topics to the end
offsets seen at start (like the bounded DirectRunner run); every message goes through
the same parser (:mod:`pipeline.transforms.parse`), an in-memory join (a dict of the
latest account per id, a Postgres lookup for an account not seen on the topic, a buffer
for transactions whose account arrives later), the same scorer
(:mod:`pipeline.domain.scoring`) and routing, and the same upsert into
banking.attributed_transactions (:data:`pipeline.io.postgres.UPSERT_SQL`, execute_values).

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

import psycopg2
from confluent_kafka import Consumer, TopicPartition
from psycopg2.extras import execute_values

from pipeline.domain.parsing import parse_account, parse_transaction
from pipeline.domain.scoring import AccountFeatures, score_transaction, update
from pipeline.errors import InvalidRecord
from pipeline.io.postgres import UPSERT_SQL, PostgresAccountLookup, attributed_row
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
    accounts: dict = {}
    waiting: dict[str, list] = defaultdict(list)  # account_id -> transactions
    features: dict[str, AccountFeatures] = {}
    batch: dict[str, tuple] = {}
    counts = dict.fromkeys(
        ("kafka_records_read", "parsed", "dead_lettered", "joined", "unjoined",
         "postgres_rows_written", "high_risk"), 0)

    def flush():
        if batch:
            with conn.cursor() as cursor:
                execute_values(cursor, UPSERT_SQL, list(batch.values()), page_size=len(batch))
            conn.commit()
            counts["postgres_rows_written"] += len(batch)
            batch.clear()

    def emit(txn, account):
        state = features.get(txn.account_id) or AccountFeatures()
        score, reasons = score_transaction(txn, account, state)
        features[txn.account_id] = update(state, txn)
        counts["high_risk"] += score >= 50
        _, record = route(AttributedTransaction(
            transaction=txn,
            account_name=account.account_name if account is not None else None,
            risk_score=score, risk_reasons=reasons,
        ))
        batch[record.transaction_id] = attributed_row(record)
        if len(batch) >= batch_size:
            flush()

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
                try:
                    if message.topic() == accounts_topic:
                        account = parse_account(message.value())
                    else:
                        txn = parse_transaction(message.value())
                except InvalidRecord:
                    counts["dead_lettered"] += 1
                    continue
                counts["parsed"] += 1
                if message.topic() == accounts_topic:
                    accounts[account.account_id] = account
                    for txn in waiting.pop(account.account_id, ()):
                        counts["joined"] += 1
                        emit(txn, account)
                    continue
                account = accounts.get(txn.account_id)
                if account is None and txn.account_id not in waiting:
                    account = lookup([txn.account_id]).get(txn.account_id)
                    if account is not None:
                        accounts[account.account_id] = account
                if account is None:
                    waiting[txn.account_id].append(txn)
                else:
                    counts["joined"] += 1
                    emit(txn, account)
        # End of the bounded slice: a last lookup, then a LEFT JOIN for what still waits.
        if waiting:
            found = lookup(list(waiting))
            for account_id, txns in waiting.items():
                account = found.get(account_id)
                for txn in txns:
                    counts["joined" if account is not None else "unjoined"] += 1
                    emit(txn, account)
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
