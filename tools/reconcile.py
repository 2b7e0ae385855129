"""Reconciliation: is every transaction that reached Kafka in Postgres or dead-lettered, once?

Reads every message of the transactions topic (earliest to the end offsets), the dead-letter
topic, the matching rows of ``banking.attributed_transactions`` and ``banking.accounts``,
optionally the MongoDB ``transactions`` collection and the simulator's ground truth, and
compares them. The comparison (:func:`reconcile`) is pure; the readers do the I/O::

    python -m tools.reconcile --transactions_topic t --dead_letter_topic dl \
        [--ground_truth_file gt.jsonl] [--mongo_db db]

prints one line of figures and exits 1 unless every message is accounted for exactly once.

Accounting unit ("item"): a dead-lettered message (by its topic/partition/offset origin), or
the group of not-dead-lettered messages sharing one transaction id (a re-sent transaction is
one row), or a not-dead-lettered message without a parsable id (always missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "AccountVersion", "Message", "Reconciliation", "Row", "names_in_effect", "reconcile", "run",
    "transaction_id_of",
]

EXAMPLES = 5  # ids quoted per problem


class Message(NamedTuple):
    """One message of the transactions topic: its origin, its transaction id if any, and its
    Kafka timestamp (ms; when it was produced)."""

    partition: int
    offset: int
    transaction_id: str | None
    timestamp_ms: int = 0


class AccountVersion(NamedTuple):
    """One message of the accounts topic: when it was produced and the name it carried."""

    timestamp_ms: int
    account_name: str


class Row(NamedTuple):
    """The columns of banking.attributed_transactions the reconciliation looks at."""

    transaction_id: str
    account_id: str
    account_name: str | None
    is_fraudulent: bool
    validated_by: str


@dataclass
class Reconciliation:
    """Figures of one reconciliation; ``examples`` quotes a few ids per problem."""

    messages: int = 0
    produced: int = 0
    in_postgres: int = 0
    dead_lettered: int = 0
    missing: int = 0
    duplicated: int = 0
    wrongly_attributed: int = 0
    # a name the account had before the one in effect when the transaction was produced
    stale_attributed: int = 0
    wrongly_cleared: int = 0
    wrongly_accepted: int = 0
    missing_in_mongo: int = 0
    # extra copies of a dead letter (same key: its origin) re-sent by a replay from a
    # checkpoint; Kafka writes are at-least-once, a consumer keeps one per key
    redelivered: int = 0
    examples: dict[str, list] = field(default_factory=dict)

    @property
    def wrong(self) -> int:
        return (self.wrongly_attributed + self.stale_attributed + self.wrongly_cleared
                + self.wrongly_accepted + self.missing_in_mongo)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.wrong == 0

    def line(self) -> str:
        names = ("messages", "produced", "in_postgres", "dead_lettered", "missing", "duplicated",
                 "wrongly_attributed", "stale_attributed", "wrongly_cleared", "wrongly_accepted",
                 "missing_in_mongo",
                 "redelivered")
        figures = " ".join(f"{name}={getattr(self, name)}" for name in names)
        return f"reconcile: {'OK' if self.ok else 'FAILED'} {figures}"

    def _count(self, problem: str, example) -> None:
        setattr(self, problem, getattr(self, problem) + 1)
        quoted = self.examples.setdefault(problem, [])
        if len(quoted) < EXAMPLES:
            quoted.append(example)


def transaction_id_of(payload: bytes | None) -> str | None:
    """The ``transaction_id`` string of a JSON-object payload, else None (never raises)."""
    try:
        obj = json.loads(payload)
    except (TypeError, ValueError, RecursionError):
        return None
    value = obj.get("transaction_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def reconcile(
    messages: Iterable[Message],
    dead_letter_origins: Iterable[tuple[int, int]],
    rows: dict[str, Row],
    account_names: dict[str, str],
    ground_truth: Iterable[dict] = (),
    mongo_ids: set[str] | None = None,
    account_history: dict[str, list[AccountVersion]] | None = None,
) -> Reconciliation:
    """Compares what reached Kafka with what the pipeline wrote.

    Args:
      messages: every message of the transactions topic.
      dead_letter_origins: (partition, offset) of each dead letter from that topic, repeats kept.
      rows: Postgres rows by transaction id (at least those of the messages' ids).
      account_names: banking.accounts names by account id (at least the rows' accounts).
      ground_truth: the simulator's ground-truth rows (``kind`` transaction/bad/...).
      mongo_ids: transaction ids in Mongo's ``transactions``; None skips that check.
      account_history: the accounts topic's versions of each account, in order. With it, a
        row must carry the name its account had when the transaction was produced (the first
        name for an account published after its transaction); without it, or for an account
        it lacks, the current banking.accounts name.
    """
    result = Reconciliation()
    origins = Counter(dead_letter_origins)
    for origin, seen in origins.items():
        if seen > 1:  # the same key again: a redelivery, not a second effect
            result.redelivered += seen - 1
            result.examples.setdefault("redelivered", [])
            if len(result.examples["redelivered"]) < EXAMPLES:
                result.examples["redelivered"].append(f"dead letter {origin[0]}/{origin[1]} x{seen}")
    # id -> whether some not-dead-lettered message carries it
    ids: dict[str, bool] = {}
    produced_at: dict[str, int] = {}
    for message in messages:
        result.messages += 1
        dead = (message.partition, message.offset) in origins
        if dead:
            result.dead_lettered += 1
        elif message.transaction_id is None:
            result._count("missing", f"{message.partition}/{message.offset} (no id)")
        if message.transaction_id is not None:
            ids[message.transaction_id] = ids.get(message.transaction_id, False) or not dead
            if not dead:
                produced_at.setdefault(message.transaction_id, message.timestamp_ms)
    for transaction_id, live in ids.items():
        if live and transaction_id in rows:
            result.in_postgres += 1
        elif live:
            result._count("missing", transaction_id)
        elif transaction_id in rows:  # only dead-lettered messages carry it, yet it has a row
            result._count("duplicated", f"{transaction_id} dead-lettered and in Postgres")
    result.produced = result.dead_lettered + result.in_postgres + result.missing
    history = account_history or {}
    for transaction_id, live in ids.items():
        row = rows.get(transaction_id) if live else None
        if row is None:
            continue
        earlier: set[str] = set()
        if history.get(row.account_id):
            versions, at = history[row.account_id], produced_at[transaction_id]
            expected = names_in_effect(versions, at)
            earlier = {v.account_name for v in versions if v.timestamp_ms < at} - expected
        elif row.account_id in account_names:
            expected = {account_names[row.account_id]}
        else:
            continue
        if row.account_name in earlier:
            result._count("stale_attributed", transaction_id)
        elif row.account_name not in expected:
            result._count("wrongly_attributed", transaction_id)
    for truth in ground_truth:
        row = rows.get(truth.get("transaction_id"))
        if truth.get("kind") == "bad" and row is not None:
            result._count("wrongly_accepted", row.transaction_id)
        elif truth.get("kind") == "transaction" and row is not None:
            evaluation = truth.get("evaluation")
            if (evaluation == "fraudulent" and not row.is_fraudulent) or (
                evaluation == "unidentified" and row.validated_by == "none"
            ):
                result._count("wrongly_cleared", row.transaction_id)
    if mongo_ids is not None:
        for row in rows.values():
            if row.is_fraudulent and ids.get(row.transaction_id) and (
                row.transaction_id not in mongo_ids
            ):
                result._count("missing_in_mongo", row.transaction_id)
    return result


def names_in_effect(versions: list[AccountVersion], timestamp_ms: int) -> set[str]:
    """The account's name when a transaction was produced at ``timestamp_ms``: that of the
    last version produced before it (or, if none was, the first version), plus the names of
    versions produced in the same millisecond, whose order against it is unknown."""
    before = [v for v in versions if v.timestamp_ms < timestamp_ms]
    same = {v.account_name for v in versions if v.timestamp_ms == timestamp_ms}
    return {(before[-1] if before else versions[0]).account_name} | same


# --- I/O -------------------------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout_s: float = 120.0):
    """Yields every message of ``topic`` from the earliest to the end offsets seen at start."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"riskpipe-reconcile-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaException(f"reconcile: topic {topic!r}: {described and described.error}")
        ends, assignment = {}, []
        for partition in described.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reconcile: {topic!r} not read to its end in {timeout_s}s")
            for msg in consumer.consume(1000, 1.0):
                if msg.error():
                    raise KafkaException(msg.error())
                if msg.partition() in ends and msg.offset() < ends[msg.partition()]:
                    yield msg
                    if msg.offset() >= ends[msg.partition()] - 1:
                        del ends[msg.partition()]
    finally:
        consumer.close()


def dead_letter_origins(bootstrap: str, dead_letter_topic: str, topic: str) -> list[tuple]:
    """(partition, offset) of each dead letter whose origin is ``topic``."""
    origins = []
    for msg in read_topic(bootstrap, dead_letter_topic):
        try:
            letter = json.loads(msg.value())
        except (TypeError, ValueError):
            continue
        if isinstance(letter, dict) and letter.get("topic") == topic:
            origins.append((letter.get("partition"), letter.get("offset")))
    return origins


def read_postgres(dsn: str, transaction_ids: list[str]) -> tuple[dict, dict]:
    """The rows of those ids, and the banking.accounts names of their accounts."""
    import psycopg2

    with psycopg2.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT transaction_id, account_id, account_name, is_fraudulent, validated_by "
            "FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
            (transaction_ids,),
        )
        rows = {r[0]: Row(*r) for r in cur.fetchall()}
        cur.execute(
            "SELECT account_id, account_name FROM banking.accounts WHERE account_id = ANY(%s)",
            (sorted({row.account_id for row in rows.values()}),),
        )
        names = dict(cur.fetchall())
    conn.close()
    return rows, names


def read_mongo(uri: str, db: str, transaction_ids: list[str]) -> set[str]:
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        found = client[db]["transactions"].find({"_id": {"$in": transaction_ids}}, {"_id": 1})
        return {doc["_id"] for doc in found}
    finally:
        client.close()


def read_account_history(bootstrap: str, accounts_topic: str) -> dict[str, list[AccountVersion]]:
    """Each account's versions on the accounts topic, in the order they were produced."""
    history: dict[str, list[AccountVersion]] = {}
    for m in read_topic(bootstrap, accounts_topic):  # one account, one partition: in order
        try:
            obj = json.loads(m.value())
        except (TypeError, ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("account_id"), str) and isinstance(
                obj.get("account_name"), str):
            history.setdefault(obj["account_id"], []).append(
                AccountVersion(m.timestamp()[1], obj["account_name"]))
    return history


def run(bootstrap: str, transactions_topic: str, dead_letter_topic: str, postgres_dsn: str,
        ground_truth_file: str | None = None, mongo_uri: str | None = None,
        mongo_db: str | None = None, accounts_topic: str | None = None) -> Reconciliation:
    """Reads everything and reconciles it (see the module docstring)."""
    messages = [
        Message(m.partition(), m.offset(), transaction_id_of(m.value()), m.timestamp()[1])
        for m in read_topic(bootstrap, transactions_topic)
    ]
    truth = []
    if ground_truth_file:
        with open(ground_truth_file, encoding="utf-8") as lines:
            truth = [json.loads(line) for line in lines if line.strip()]
    ids = sorted({m.transaction_id for m in messages if m.transaction_id}
                 | {t["transaction_id"] for t in truth if t.get("transaction_id")})
    ids = [i for i in ids if "\x00" not in i]  # Postgres text cannot hold NUL
    rows, names = read_postgres(postgres_dsn, ids)
    mongo_ids = read_mongo(mongo_uri, mongo_db, ids) if mongo_uri and mongo_db else None
    origins = dead_letter_origins(bootstrap, dead_letter_topic, transactions_topic)
    history = read_account_history(bootstrap, accounts_topic) if accounts_topic else None
    return reconcile(messages, origins, rows, names, truth, mongo_ids, history)


def main(argv=None) -> None:
    from pipeline.options import KafkaOptions, MongoOptions, PostgresOptions

    defaults = PostgresOptions([])  # the job's own defaults (env, else the local stack)
    parser = argparse.ArgumentParser(prog="python -m tools.reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka_bootstrap", default=defaults.view_as(KafkaOptions).kafka_bootstrap)
    parser.add_argument("--transactions_topic", default="transactions")
    parser.add_argument("--dead_letter_topic", default="dead-letters")
    parser.add_argument("--accounts_topic", default="accounts",
                        help="account versions, to check each row's name as of its "
                             "transaction ('' to compare with banking.accounts only)")
    parser.add_argument("--postgres_dsn", default=defaults.postgres_dsn)
    parser.add_argument("--ground_truth_file", help="the simulator's --ground-truth-file")
    parser.add_argument("--mongo_uri", default=defaults.view_as(MongoOptions).mongo_uri)
    parser.add_argument("--mongo_db", help="check fraudulent rows are in <db>.transactions")
    args = parser.parse_args(argv)
    result = run(args.kafka_bootstrap, args.transactions_topic, args.dead_letter_topic,
                 args.postgres_dsn, args.ground_truth_file, args.mongo_uri, args.mongo_db,
                 args.accounts_topic or None)
    print(result.line())
    for problem, examples in result.examples.items():
        print(f"  {problem}: {', '.join(map(str, examples))}")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
