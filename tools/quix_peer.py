"""The job's hot path as a Quix Streams application: a peer to compare the job with.

    python -m tools.quix_peer --accounts_topic=P.accounts --transactions_topic=P.transactions

Reads the accounts and transactions topics to the end offsets seen at start and stops;
every message goes through the job's own per-record code (:mod:`tools.hot_path`, as the
baseline does) and each transaction's row is upserted into banking.attributed_transactions.

How it is built, as a Quix user would build it:

- **join**: both topics are keyed by ``account_id`` with the same partition count, so one
  consumer's assignment gives the accounts and transactions of an account to the same
  partition number. Each topic is a ``StreamingDataFrame`` that parses its messages; the two
  are merged with ``concat`` (Quix then aligns the partitions of both topics by message
  timestamp), and one stateful ``apply`` takes both kinds of record. Quix's ``join_asof``
  would give a transaction the account version of its time, but not the job's corrections
  when an account arrives after its transactions, nor the rolling features.
- **state**: the account's :class:`~pipeline.domain.attribution.AccountHistory`, as its
  ``to_tuple()`` form in the RocksDB store under the message key, with Quix's changelog
  topic; values are pickled (``RocksDBOptions(dumps=, loads=)``, Quix's knob for it) rather
  than JSON, the default, which made state the peer's largest cost; the store lives in a
  temporary folder for the run.
- **sink**: :class:`AttributedRowsSink` upserts a checkpoint's rows in one statement
  (:func:`pipeline.io.postgres.upsert_rows`) when Quix commits, every 5 s by default.
- **stop**: ``app.run(count=N)`` with N the number of messages up to the end offsets (each
  message yields one output: the list of its rows), and a ``timeout`` if the input runs dry
  first. Then the transactions still waiting for their account are written unjoined.

What it does not do: the validator calls, the fraud results and dead letters (as the
baseline), and surviving a restart with transactions waiting for their account (they wait
in memory, as in the baseline; the job keeps them in state with a TTL). It needs topics
keyed by ``account_id`` (riskpipe's format): its state is per message key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import signal
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient
from quixstreams import Application
from quixstreams.sinks import BaseSink
from quixstreams.state.rocksdb import RocksDBOptions

from pipeline.io.postgres import connect, upsert_rows
from pipeline.records import Account
from pipeline.runners import gc_pacing
from tools.hot_path import HotPath, end_offsets, peer_arguments, peer_parser

__all__ = ["AttributedRowsSink", "run_quix_peer"]

logger = logging.getLogger(__name__)
HISTORY = "history"  # the state key of an account's history


class AttributedRowsSink(BaseSink):
    """Upserts rows of banking.attributed_transactions on every Quix checkpoint.

    Not a ``BatchingSink``: that keeps a batch per topic partition and writes them one after
    the other, but a transaction's row can be corrected by a message of the other topic (an
    account version arriving after it). So a checkpoint's rows are kept in one dict by
    transaction id, the last one winning, and upserted together.
    """

    def __init__(self, dsn: str):
        super().__init__()
        self.dsn = dsn
        self.written = 0
        self._rows: dict[str, tuple] = {}
        self._conn = None

    def setup(self):
        self._conn = connect(self.dsn)

    def add(self, value, key, timestamp, headers, topic, partition, offset):
        self.add_rows(value)

    def add_rows(self, rows: list[tuple]) -> None:
        for row in rows:
            self._rows[row[0]] = row

    def flush(self):
        if not self._rows:
            return
        with self._conn.cursor() as cursor:
            upsert_rows(cursor, list(self._rows.values()))
        self._conn.commit()
        self.written += len(self._rows)
        self._rows.clear()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _message_count(bootstrap: str, topics: list[str]) -> int:
    """Messages in ``topics`` up to their end offsets now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "riskpipe-quix-ends"})
    try:
        return sum(high - low for low, high in end_offsets(consumer, topics).values())
    finally:
        consumer.close()


@contextlib.contextmanager
def _signal_handlers_kept():
    """Puts the SIGINT and SIGTERM handlers back afterwards: ``Application.run`` installs
    its own and leaves them, and they would swallow a later Ctrl-C or SIGTERM."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _delete_run_leftovers(bootstrap: str, group: str) -> None:
    """Deletes the run's consumer group and the changelog topics Quix created for its state."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"changelog__{group}")]
    for future in (admin.delete_topics(names).values() if names else ()):
        future.result(30)
    try:
        admin.delete_consumer_groups([group])[group].result(30)
    except KafkaException as error:  # a run that never joined has no group
        logger.debug("quix peer: consumer group %s not deleted: %s", group, error)


class _Attribute:
    """The stateful step: an account's history from the state store, the record applied to
    it, the history stored back; returns the rows that changed."""

    def __init__(self, hot: HotPath):
        self.hot = hot
        self.first_at: float | None = None  # perf_counter of the first message

    def __call__(self, record, key, timestamp, headers, state) -> list[tuple]:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        if record is None:  # dead-lettered by the parser
            return []
        stored = state.get(HISTORY)
        history = self.hot.history(stored)
        produced = timestamp * 1000
        if isinstance(record, Account):
            rows = self.hot.account(history, produced, record)
        else:
            rows = self.hot.transaction(history, produced, record)
            if not history.has_account:
                return rows  # it waits for its account: the history did not change
        state.set(HISTORY, history.to_tuple())
        return rows


def _dataframes(app: Application, accounts_topic: str, transactions_topic: str,
                step: _Attribute, sink: AttributedRowsSink) -> None:
    """Parse each topic, merge the two, attribute per account in state, sink the rows."""

    def parsed(topic: str, is_account: bool):
        source = app.topic(topic, key_deserializer="str", value_deserializer="bytes")
        return app.dataframe(source).apply(lambda value: step.hot.parse(is_account, value))

    merged = parsed(accounts_topic, True).concat(parsed(transactions_topic, False))
    merged.apply(step, stateful=True, metadata=True).sink(sink)


def run_quix_peer(bootstrap: str, accounts_topic: str, transactions_topic: str, dsn: str,
                  idle_timeout_s: float = 30.0) -> dict:
    """Runs the application over both topics up to their end offsets now; returns its
    counters, seconds and rates, and ``error`` if it stopped early."""
    started = time.perf_counter()
    expected = _message_count(bootstrap, [accounts_topic, transactions_topic])
    hot = HotPath(dsn)
    step = _Attribute(hot)
    sink = AttributedRowsSink(dsn)
    group = f"riskpipe-quix-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(prefix="riskpipe-quix-") as state_dir, \
                _signal_handlers_kept(), gc_pacing.paced():  # as the job's workers
            app = Application(
                broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                state_dir=state_dir, loglevel="WARNING",
                # The history is nested tuples of primitives: pickle reads and writes them
                # faster than the default JSON.
                rocksdb_options=RocksDBOptions(dumps=pickle.dumps, loads=pickle.loads),
            )
            _dataframes(app, accounts_topic, transactions_topic, step, sink)
            app.run(count=expected, timeout=idle_timeout_s, collect=False)
        # Waiting accounts never got a version, so their histories are still empty.
        sink.add_rows(hot.release(lambda account_id: hot.history()))
        sink.flush()
    finally:
        sink.close()
        hot.close()
        _delete_run_leftovers(bootstrap, group)
    hot.counts["postgres_rows_written"] = sink.written
    result = {
        **hot.figures(started),
        "messages_expected": expected,
        "consumer_group": group,
        "startup_s": round(step.first_at - started, 3) if step.first_at else None,
    }
    if result["kafka_records_read"] < expected:
        result["error"] = (f"stopped after {result['kafka_records_read']} of {expected} "
                           f"messages: no message for {idle_timeout_s:.0f} s")
    return result


def main(argv=None) -> int:
    parser = peer_parser("python -m tools.quix_peer", __doc__)
    parser.add_argument("--idle_timeout_s", type=float, default=30.0,
                        help="stop when no message came for this long (default 30)")
    args = parser.parse_args(argv)
    print(json.dumps(run_quix_peer(*peer_arguments(args), args.idle_timeout_s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
