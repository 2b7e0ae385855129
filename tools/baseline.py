"""A plain single-process baseline of the pipeline's hot path, to measure Beam's overhead.

    python -m tools.baseline --accounts_topic=P.accounts \\
        --transactions_topic=P.transactions

One confluent-kafka consumer reads the accounts topic, then the transactions topic, to the
end offsets seen at start (as the job's bounded run does); every message goes through the
job's own per-record code (:mod:`tools.hot_path`): the parser, one
:class:`~pipeline.domain.attribution.AccountHistory` per account in a dict (join, features,
score and corrections, as the job's stateful step), a Postgres lookup for an account not
seen on the topic, a buffer for transactions whose account arrives later, the routing, and
the same upsert into banking.attributed_transactions (:func:`pipeline.io.postgres.upsert_rows`),
written, as the job's sink writes it, by a writer thread while the next records are processed
(one batch in flight at a time, so batches land in order).

Left out, on purpose: the validator calls for ``unidentified`` transactions, the fraud
results (Mongo, S3, Kafka) and the dead-letter topic. They concern a few percent of the
records; the figure is the cost of read → parse → join → score → write.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg2
from confluent_kafka import Consumer, TopicPartition

from pipeline.domain.attribution import BEGINNING
from pipeline.io.kafka.read import consume_available
from pipeline.io.postgres import upsert_rows
from pipeline.runners import gc_pacing
from tools.hot_path import HotPath, end_offsets, peer_arguments, peer_parser

__all__ = ["run_baseline"]


END_OF_INPUT = 2**62  # the watermark once every partition has been read to its end


@gc_pacing.paced()  # as the job's workers
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
    hot = HotPath(dsn)
    counts = hot.counts
    histories: dict = {}
    batch: dict[str, tuple] = {}
    writer = ThreadPoolExecutor(1, thread_name_prefix="baseline-writer")
    in_flight: list[Future] = []

    def write(rows: list[tuple]) -> int:
        with conn.cursor() as cursor:
            upsert_rows(cursor, rows)
        conn.commit()
        return len(rows)

    def wait_for_writes():
        while in_flight:
            counts["postgres_rows_written"] += in_flight.pop().result()

    def flush():
        if batch:
            wait_for_writes()
            in_flight.append(writer.submit(write, list(batch.values())))
            batch.clear()

    def add(rows: list[tuple]):
        for row in rows:
            batch[row[0]] = row  # the last row of a transaction wins
        if len(batch) >= batch_size:
            flush()

    def history_of(account_id: str):
        history = histories.get(account_id)
        if history is None:
            history = histories[account_id] = hot.history(hold_unsettled=True)
        return history

    # The watermark, as the job's readers keep it: the oldest of the newest Kafka timestamps
    # read from each partition not yet read to its end. A transaction stays correctable, as in
    # the job, until it passes (an account version may be produced after its transactions).
    newest: dict[tuple[str, int], int] = {}

    def watermark() -> int:
        return min((newest.get(key, BEGINNING) for key in remaining), default=END_OF_INPUT)

    def take(message) -> None:
        """One message of a partition not yet read to its end offset."""
        key = (message.topic(), message.partition())
        if message.error() or key not in remaining or message.offset() >= remaining[key]:
            return
        if message.offset() + 1 >= remaining[key]:
            del remaining[key]
        is_account = message.topic() == accounts_topic
        record = hot.parse(is_account, message.value())
        if record is None:
            return
        produced = message.timestamp()[1] * 1000
        newest[key] = produced
        history = history_of(record.account_id)
        add(hot.account(history, produced, record) if is_account
            else hot.transaction(history, produced, record))
        if history.settle_time is not None:
            history.settle(watermark())

    try:
        ends = end_offsets(consumer, [accounts_topic, transactions_topic])
        remaining = {key: high for key, (_, high) in ends.items()}
        # As the job's bounded run: the accounts topic to its end, then the transactions.
        for topic in (accounts_topic, transactions_topic):
            phase = [key for key in ends if key[0] == topic]
            if phase:
                consumer.assign([TopicPartition(t, p, ends[(t, p)][0]) for t, p in phase])
            while any(key in remaining for key in phase):
                for message in consume_available(consumer, 1000, timeout_s=1.0):
                    take(message)
        add(hot.release(history_of))
        flush()
        wait_for_writes()
    finally:
        writer.shutdown(wait=True)
        consumer.close()
        hot.close()
        conn.close()
    return hot.figures(started)


def main(argv=None) -> int:
    parser = peer_parser("python -m tools.baseline", __doc__)
    parser.add_argument("--postgres_batch_size", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(run_baseline(*peer_arguments(args), args.postgres_batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
