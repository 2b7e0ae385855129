"""Reading what one run left: the input topics and every sink, for :mod:`.compare`."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from tools.reconcile.compare import (
    AccountVersion,
    KafkaRecord,
    Message,
    Observed,
    Outcome,
    S3Line,
    outcome_of,
    transaction_id_of,
)

__all__ = [
    "Observation", "Target", "dead_letter_origins", "observe", "read_account_history",
    "read_kafka_results", "read_mongo", "read_postgres", "read_s3", "read_topic",
]

OUTCOME_COLUMNS = ("transaction_id", "account_id", "account_name", "risk_score", "risk_reasons",
                   "is_fraudulent", "validated_by")


@dataclass
class Target:
    """Where one run read and wrote; a sink left None is not read (nor checked)."""

    bootstrap: str
    transactions_topic: str
    dead_letter_topic: str
    postgres_dsn: str
    accounts_topic: str | None = None
    results_topic: str | None = None
    mongo_uri: str | None = None
    mongo_db: str | None = None
    s3_prefix: str | None = None  # e.g. s3://riskpipe/fraudulent-transactions-result
    s3_args: list[str] | None = None  # Beam --s3_* flags; None: the job's defaults


@dataclass
class Observation:
    """Everything :func:`tools.reconcile.compare.reconcile` needs but the reference."""

    messages: list[Message]
    dead_letter_origins: list[tuple[int, int]]
    observed: Observed
    account_names: dict[str, str]
    account_history: dict[str, list[AccountVersion]] | None


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
    """(partition, offset) of each dead letter whose origin is ``topic``, repeats kept."""
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
    """The rows of those ids as Outcomes, and the banking.accounts names of their accounts."""
    import psycopg2

    with psycopg2.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM banking.attributed_transactions"
            " WHERE transaction_id = ANY(%s)",
            (transaction_ids,),
        )
        rows = {r[0]: outcome_of(dict(zip(OUTCOME_COLUMNS, r))) for r in cur.fetchall()}
        cur.execute(
            "SELECT account_id, account_name FROM banking.accounts WHERE account_id = ANY(%s)",
            (sorted({row.account_id for row in rows.values()}),),
        )
        names = dict(cur.fetchall())
    conn.close()
    return rows, names


def read_kafka_results(bootstrap: str, topic: str) -> list[KafkaRecord]:
    """Every record of the results topic, each partition in offset order."""
    records = []
    for msg in sorted(read_topic(bootstrap, topic), key=lambda m: (m.partition(), m.offset())):
        try:
            value = json.loads(msg.value())
        except (TypeError, ValueError, RecursionError):
            value = None
        key = msg.key().decode("utf-8", "replace") if msg.key() is not None else None
        records.append(KafkaRecord(key, value if isinstance(value, dict) else None))
    return records


def read_mongo(uri: str, db: str, transaction_ids: list[str]) -> dict[str, Outcome]:
    """The ``<db>.transactions`` documents of those ids, by ``_id``."""
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        found = client[db]["transactions"].find({"_id": {"$in": transaction_ids}})
        outcomes = {doc["_id"]: outcome_of({**doc, "transaction_id": doc["_id"]})
                    for doc in found}
    finally:
        client.close()
    return outcomes


def default_s3_args() -> list[str]:
    """The job's own ``--s3_*`` flags (environment, else the local stack's)."""
    from pipeline.runners.flags import with_runner_defaults

    return [flag for flag in with_runner_defaults([], "reconcile") if flag.startswith("--s3_")]


def read_s3(prefix: str, transaction_ids: set[str], s3_args: list[str] | None = None
            ) -> list[S3Line]:
    """Every line under ``prefix`` (object by object) whose transaction is one of those ids,
    or that has no transaction id."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(default_s3_args() if s3_args is None else s3_args)
    filesystem = type(FileSystems.get_filesystem(prefix))(options)
    prefix = prefix.rstrip("/")
    lines = []
    for meta in sorted(filesystem.match([prefix + "/**"])[0].metadata_list,
                       key=lambda m: m.path):
        with filesystem.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            body = f.read()
        name = meta.path[len(prefix) + 1:]
        for raw in body.decode("utf-8").splitlines():
            if not raw.strip():
                continue
            value = json.loads(raw)
            tid = value.get("transaction_id") if isinstance(value, dict) else None
            if tid is None or tid in transaction_ids:
                lines.append(S3Line(name, value if isinstance(value, dict) else {}))
    return lines


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


def observe(target: Target, extra_ids: list[str] = ()) -> Observation:
    """Reads the input and every sink of ``target`` (those it names)."""
    messages = [
        Message(m.partition(), m.offset(), transaction_id_of(m.value()), m.timestamp()[1])
        for m in read_topic(target.bootstrap, target.transactions_topic)
    ]
    ids = sorted({m.transaction_id for m in messages if m.transaction_id} | set(extra_ids))
    ids = [i for i in ids if "\x00" not in i]  # Postgres text cannot hold NUL
    rows, names = read_postgres(target.postgres_dsn, ids)
    observed = Observed(rows)
    if target.results_topic:
        observed.kafka = read_kafka_results(target.bootstrap, target.results_topic)
    if target.mongo_uri and target.mongo_db:
        observed.mongo = read_mongo(target.mongo_uri, target.mongo_db, ids)
    if target.s3_prefix:
        observed.s3 = read_s3(target.s3_prefix, set(ids), target.s3_args)
    origins = dead_letter_origins(target.bootstrap, target.dead_letter_topic,
                                  target.transactions_topic)
    history = (read_account_history(target.bootstrap, target.accounts_topic)
               if target.accounts_topic else None)
    return Observation(messages, origins, observed, names, history)
