"""Where the simulator's events go: Kafka, Postgres ``banking.accounts``, a ground-truth file.

Usage::

    kafka = KafkaPublisher("127.0.0.1:9092")
    kafka.check(timeout=5.0)                       # raises UnreachableError, one clear line
    kafka.ensure_topics(["accounts", "transactions"], partitions=4)
    kafka.produce("transactions", b"<account_id>", b"{...}")   # batched, never flushes
    failures = kafka.flush(timeout=30.0)            # waits; delivery failures so far

    pg = AccountWriter("postgresql://...")        # every column of an Account
    pg.check(timeout=5.0)
    pg.add(account); pg.flush(); pg.close()
    pg = AccountWriter(dsn, columns=("account_id", "account_name", ...))
    pg.add_row(account_id, (account_id, name, ...))  # other shapes: the values of `columns`

Nothing here flushes per message: the producer batches (``linger.ms``, ``batch.size``,
compression) and reports only failed deliveries through its callback; the Postgres writer
upserts batches with ``execute_values``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import IO

import psycopg2
import psycopg2.extras
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg2 import sql

from pipeline.records import Account
from simulator.formats import ACCOUNT_COLUMNS
from simulator.serialize import dumps

__all__ = [
    "AccountWriter",
    "GroundTruthFile",
    "KafkaPublisher",
    "SimulatorError",
    "UnreachableError",
]

logger = logging.getLogger(__name__)

PRODUCER_DEFAULTS = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "acks": "all",
    "enable.idempotence": True,  # retries keep per-partition order, no duplicates
    "message.timeout.ms": 60_000,
    "delivery.report.only.error": True,  # the callback runs for failures only: cheap
}
MAX_REPORTED_ERRORS = 5


class SimulatorError(Exception):
    """Base of the simulator's errors."""


class UnreachableError(SimulatorError):
    """A broker or database could not be reached in time."""


class KafkaPublisher:
    """A batching Kafka producer that counts what it sent and what failed."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        compression: str = "auto",
        client_id: str = "riskpipe-simulator",
        config: dict | None = None,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.produced = 0
        self.failed = 0
        self.errors: list[str] = []
        self._broker_errors: list[str] = []
        conf = dict(PRODUCER_DEFAULTS)
        conf.update(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": client_id,
                "compression.type": compression,
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                "logger": logging.getLogger(__name__ + ".librdkafka"),
            }
        )
        conf.update(config or {})
        if compression == "auto":  # zstd if this librdkafka build has it, else lz4
            try:
                self._producer = Producer({**conf, "compression.type": "zstd"})
                compression = "zstd"
            except KafkaException:
                self._producer = Producer({**conf, "compression.type": "lz4"})
                compression = "lz4"
        else:
            self._producer = Producer(conf)
        self.compression = compression
        self._produce = self._producer.produce
        self._poll = self._producer.poll

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append(f"{msg.topic()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        self._broker_errors.append(err.str())

    def check(self, timeout: float = 5.0) -> None:
        """Raises UnreachableError unless the cluster answers within ``timeout`` seconds."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            detail = (
                self._broker_errors[-1] if self._broker_errors else str(exc.args[0])
            )
            raise UnreachableError(
                f"cannot reach Kafka at {self.bootstrap_servers} within "
                f"{timeout:g}s: {detail}"
            ) from None

    def ensure_topics(
        self, topics: Iterable[str], partitions: int = 4, timeout: float = 30.0
    ) -> None:
        """Creates the topics that do not exist yet (replication factor 1: a local broker)."""
        topics = [t for t in dict.fromkeys(topics) if t]
        existing = self._producer.list_topics(timeout=timeout).topics
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        futures = admin.create_topics(
            [NewTopic(t, partitions, 1) for t in missing], operation_timeout=timeout
        )
        for topic, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise SimulatorError(
                        f"cannot create topic {topic!r}: {exc}"
                    ) from None

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queues one message; waits for room when librdkafka's queue is full."""
        while True:
            try:
                self._produce(topic, value, key)
                break
            except BufferError:
                self._poll(0.05)
        self.produced += 1

    def poll(self) -> None:
        """Serves delivery callbacks without blocking (call every few thousand messages)."""
        self._poll(0)

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float = 60.0) -> int:
        """Waits for deliveries; returns the failures so far, counting what is left after
        ``timeout`` as failed."""
        left = self._producer.flush(timeout)
        if left:
            self.failed += left
            self.errors.append(f"{left} messages still undelivered after {timeout:g}s")
        return self.failed


class AccountWriter:
    """Upserts accounts into ``banking.accounts`` (or ``table``) in batches.

    ``columns`` (``account_id`` first) are the ones written; others keep their values.
    """

    def __init__(
        self,
        dsn: str,
        table: str = "banking.accounts",
        batch_size: int = 500,
        columns: tuple[str, ...] = ACCOUNT_COLUMNS,
    ):
        if not columns or columns[0] != "account_id":
            raise ValueError(
                f"AccountWriter: columns must start with account_id, got {columns}"
            )
        self.dsn = dsn
        self.batch_size = batch_size
        self.written = 0
        self.columns = columns
        schema, _, name = table.rpartition(".")
        self._table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        self._table_name = table
        self._pending: dict[str, tuple] = {}
        self._conn = None
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[1:]
        )
        self._upsert = sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT (account_id) "
            "DO UPDATE SET {updates}, updated_at = now()"
        ).format(table=self._table, columns=names, updates=updates)

    def check(self, timeout: float = 5.0) -> None:
        """Connects; raises UnreachableError (server) or SimulatorError (no table)."""
        try:
            self._conn = psycopg2.connect(
                self.dsn, connect_timeout=max(1, round(timeout))
            )
        except psycopg2.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UnreachableError(
                f"cannot reach Postgres at {_redact(self.dsn)} within "
                f"{timeout:g}s: {first}"
            ) from None
        with self._conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (self._table_name,))
            if cur.fetchone()[0] is None:
                raise SimulatorError(
                    f"table {self._table_name} does not exist: apply "
                    "migrations/001_banking.sql first"
                )
        self._conn.commit()

    def add(self, account: Account) -> None:
        """Queues an upsert; the latest version of an account within a batch wins."""
        self.add_row(
            account.account_id, tuple(getattr(account, c) for c in self.columns)
        )

    def add_row(self, account_id: str, row: tuple) -> None:
        """Queues an upsert of ``row``, the values of :attr:`columns`."""
        if len(row) != len(self.columns):
            raise ValueError(
                f"AccountWriter: a row of {len(row)} values for {len(self.columns)} columns"
            )
        self._pending[account_id] = row
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Writes the queued accounts in one statement and commits."""
        if not self._pending:
            return
        if self._conn is None:
            self.check()
        rows = list(self._pending.values())
        with self._conn.cursor() as cur:
            psycopg2.extras.execute_values(cur, self._upsert, rows, page_size=len(rows))
        self._conn.commit()
        self.written += len(rows)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class GroundTruthFile:
    """Appends ground-truth rows to a JSONL file (buffered)."""

    def __init__(self, path: str):
        self.path = path
        self.rows = 0
        self._file: IO[bytes] = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 (closed in close())

    def write(self, row: dict) -> None:
        self._file.write(dumps(row) + b"\n")
        self.rows += 1

    def close(self) -> None:
        self._file.close()


def _redact(dsn: str) -> str:
    """The DSN without its password."""
    if "://" in dsn and "@" in dsn:
        scheme, _, rest = dsn.partition("://")
        creds, _, host = rest.rpartition("@")
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return dsn
