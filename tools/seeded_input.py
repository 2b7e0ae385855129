"""One seeded simulation, generated once and replayed identically into any run's topics.

    source = SeededInput.generate(seed=20261123, count=3000, workdir=Path("/tmp/x"))
    replay = source.replay(bootstrap, {"accounts": "r1.accounts",
                                       "transactions": "r1.transactions"},
                           tps=100, postgres_dsn=dsn)   # a thread; replay.wait()

``generate`` runs the simulator in this process (its own generator and dispatch, the same
flags as ``python -m simulator``) and keeps every message it would publish, in the order it
would publish them, plus its ground truth. ``replay`` publishes them to the given topics:
same keys and values, a partition fixed by the key (by the message's rank when it has no
key), the same order within each partition and across topics, paced at ``tps``
transactions-topic messages per second, each message's Kafka timestamp the time it is
scheduled for (strictly increasing), and each account upserted into ``banking.accounts``
when it is published, as the simulator does (retried while PostgreSQL is away). So two runs
of one input differ only by when they started: a fault-free run of it is a reference for a
run with a fault.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

__all__ = ["Replay", "SeededInput", "SourceMessage"]

PARTITIONS = 4
ACCOUNT_FLUSH_S = 0.5  # how often account upserts are written (the simulator's pace)
PRODUCER_CONFIG = {
    "acks": "all", "enable.idempotence": True, "linger.ms": 5,
    "message.timeout.ms": 300_000,  # rides out a broker outage of a few minutes
}


class SourceMessage(NamedTuple):
    """One message of the input: ``role`` is ``accounts`` or ``transactions``."""

    role: str
    key: bytes | None
    value: bytes


class _Recorder:
    """Stands in for the simulator's Kafka publisher: keeps what it would produce."""

    def __init__(self, roles: dict[str, str]):
        self.roles = roles
        self.messages: list[SourceMessage] = []
        self.produced, self.failed, self.errors, self.in_flight = 0, 0, [], 0

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic in self.roles:
            self.messages.append(SourceMessage(self.roles[topic], key, value))
            self.produced += 1

    def poll(self) -> None:
        pass

    def flush(self, timeout: float = 0.0) -> int:
        return 0


@dataclass
class SeededInput:
    """The messages of one seeded simulation, in publishing order, and its ground truth."""

    seed: int
    messages: list[SourceMessage]
    truth_file: Path
    truth: list[dict] = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, count: int, workdir: Path, accounts: int = 200,
                 bad_rate: float = 0.01, fraud_rate: float = 0.02,
                 event_rate: float = 100) -> SeededInput:
        """Runs the seeded simulator in this process; nothing is published."""
        from simulator.__main__ import build_parser, config_from_args
        from simulator.generator import BankSimulator
        from simulator.publish import GroundTruthFile
        from simulator.run import Sinks, Topics, run

        args = build_parser().parse_args([
            "--seed", str(seed), "--count", str(count), "--accounts", str(accounts),
            "--bad-rate", str(bad_rate), "--fraud-rate", str(fraud_rate),
            "--event-rate", str(event_rate), "--ground-truth-all",
        ])
        truth_file = Path(workdir) / f"truth-{seed}-{count}.jsonl"
        recorder = _Recorder({"accounts": "accounts", "transactions": "transactions"})
        sinks = Sinks(kafka=recorder, ground_truth_file=GroundTruthFile(str(truth_file)),
                      topics=Topics("accounts", "transactions", ""))
        run(BankSimulator(config_from_args(args)), sinks, count=count)
        truth = [json.loads(line) for line in truth_file.read_text().splitlines() if line]
        return cls(seed, recorder.messages, truth_file, truth)

    @property
    def transaction_ids(self) -> list[str]:
        """The ids of the valid transactions (the ground truth's ``transaction`` rows)."""
        return [r["transaction_id"] for r in self.truth if r.get("kind") == "transaction"]

    @property
    def account_ids(self) -> list[str]:
        ids = {json.loads(m.value).get("account_id") for m in self.messages
               if m.role == "accounts"}
        return sorted(i for i in ids if isinstance(i, str))

    def replay(self, bootstrap: str, topics: dict[str, str], tps: float,
               postgres_dsn: str | None = None) -> Replay:
        """Starts publishing to ``topics`` (role -> topic) in a thread; see the module doc."""
        replay = Replay(self.messages, bootstrap, topics, tps, postgres_dsn)
        replay.start()
        return replay


def partition_of(message: SourceMessage, rank: int) -> int:
    """The message's partition: by key, so an account's records share one; else by rank."""
    if message.key is None:
        return rank % PARTITIONS
    return zlib.crc32(message.key) % PARTITIONS


def schedule_ms(messages: list[SourceMessage], start_ms: int, tps: float) -> list[int]:
    """Each message's timestamp: its transactions-topic rank over ``tps``, strictly rising.

    >>> msgs = [SourceMessage("accounts", b"a", b"{}")] * 2 + [
    ...     SourceMessage("transactions", b"a", b"{}")] * 2
    >>> schedule_ms(msgs, 1000, 100)
    [1000, 1001, 1002, 1010]
    """
    out, sent, last = [], 0, start_ms - 1
    for message in messages:
        at = max(start_ms + int(1000 * sent / tps), last + 1)
        out.append(at)
        last = at
        sent += message.role == "transactions"
    return out


class _AccountTable:
    """Upserts the replayed accounts into banking.accounts; keeps them while it is away."""

    def __init__(self, dsn: str):
        from pipeline.io.postgres import ACCOUNT_COLUMNS

        self.dsn, self.columns = dsn, ACCOUNT_COLUMNS
        self.pending: dict[str, tuple] = {}
        self.conn = None
        self.retries = 0
        self.sql = (
            f"INSERT INTO banking.accounts ({', '.join(ACCOUNT_COLUMNS)}) VALUES %s "
            "ON CONFLICT (account_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in ACCOUNT_COLUMNS[1:])
            + ", updated_at = now()"
        )

    def add(self, value: bytes) -> None:
        from pipeline.records import Account

        account = Account.from_dict(json.loads(value))
        self.pending[account.account_id] = tuple(getattr(account, c) for c in self.columns)

    def flush(self) -> bool:
        """Writes what is pending; False (kept for the next try) if PostgreSQL is away."""
        import psycopg2
        from psycopg2.extras import execute_values

        if not self.pending:
            return True
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg2.connect(self.dsn, connect_timeout=3)
            with self.conn.cursor() as cur:
                execute_values(cur, self.sql, list(self.pending.values()))
            self.conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            self.retries += 1
            logger.info("replay: account upsert postponed (%s)", str(error).strip()[:120])
            self.conn = None
            return False
        self.pending.clear()
        return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Replay(threading.Thread):
    """Publishes one input to one run's topics (``SeededInput.replay``)."""

    def __init__(self, messages: list[SourceMessage], bootstrap: str, topics: dict[str, str],
                 tps: float, postgres_dsn: str | None):
        super().__init__(name="seeded-replay", daemon=True)
        self.messages, self.bootstrap, self.topics = messages, bootstrap, topics
        self.tps, self.postgres_dsn = tps, postgres_dsn
        self.stopped = threading.Event()
        self.published = 0
        self.errors: list[str] = []
        self.account_retries = 0

    def run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, **PRODUCER_CONFIG})
        accounts = _AccountTable(self.postgres_dsn) if self.postgres_dsn else None
        start_ms = int(time.time() * 1000)
        stamps = schedule_ms(self.messages, start_ms, self.tps)
        next_flush, first_transaction = time.monotonic(), True
        try:
            for rank, (message, at_ms) in enumerate(zip(self.messages, stamps)):
                if self.stopped.is_set():
                    return
                wait = at_ms / 1000 - time.time()
                if wait > 0:
                    time.sleep(wait)
                if accounts is not None and message.role == "accounts":
                    accounts.add(message.value)
                elif accounts is not None and accounts.pending and (
                        first_transaction or time.monotonic() >= next_flush):
                    # As the simulator: the first accounts are in the table before the
                    # first transaction, later ones within ACCOUNT_FLUSH_S.
                    accounts.flush()
                    next_flush = time.monotonic() + ACCOUNT_FLUSH_S
                first_transaction &= message.role != "transactions"
                self._produce(producer, message, rank, at_ms)
            while accounts is not None and not accounts.flush() and not self.stopped.is_set():
                time.sleep(1.0)
            left = producer.flush(PRODUCER_CONFIG["message.timeout.ms"] / 1000)
            if left:
                self.errors.append(f"{left} messages undelivered")
        finally:
            if accounts is not None:
                self.account_retries = accounts.retries
                accounts.close()

    def _produce(self, producer, message: SourceMessage, rank: int, at_ms: int) -> None:
        def delivered(error, _msg):
            if error is not None:
                self.errors.append(str(error))
            else:
                self.published += 1

        while True:
            try:
                producer.produce(self.topics[message.role], value=message.value,
                                 key=message.key, partition=partition_of(message, rank),
                                 timestamp=at_ms, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    def wait(self, timeout: float) -> None:
        """Waits for every message to be delivered; raises if that fails or takes longer."""
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"replay: not done after {timeout:.0f} s "
                               f"({self.published}/{len(self.messages)} published)")
        if self.errors or self.published != len(self.messages):
            raise RuntimeError(f"replay: {self.published}/{len(self.messages)} published; "
                               f"errors {self.errors[:3]}")

    def stop(self) -> None:
        self.stopped.set()
