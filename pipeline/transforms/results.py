"""The fraud results: fraudulent transactions and the users involved, to Kafka, MongoDB, S3.

Usage::

    fraudulent = attributed | "KeepFraudulent" >> beam.Filter(lambda r: r.is_fraudulent)
    fraudulent | "WriteFraudResults" >> WriteFraudResults(
        bootstrap_servers, "fraudulent-transactions-result", "users",
        mongo_uri, "fraudulent_transactions_db", s3_bucket="riskpipe", window_s=60,
        lookup_factory=lookup_factory(dsn),
    )

A transaction may be written more than once: a replay after a restart, or a correction
(same transaction id, corrected account name or score). Every sink keeps the latest.

What goes where:

- topic ``fraudulent-transactions-result``, keyed by transaction id, and Mongo
  ``<db>.transactions``: one :func:`fraud_result` per fraudulent transaction (its fields,
  ``sender_id``, ``receiver_id``, the risk score and reasons, who decided).
- topic ``users``, keyed by account id, and Mongo ``<db>.users``: one :func:`user_document`
  per sender and per receiver: the user as the transaction's message described them (the
  fraud PoC's transfers do), else from banking.accounts (a receiver that is no known
  account appears with its id only).
- The topics are keyed and compacted (``stack/kafka.py``): a consumer keeping the latest
  record per key, and in time the broker, hold one record per transaction and per user.
- Mongo documents carry ``_id`` (the transaction or account id); ``WriteToMongo`` replaces
  the stored document (``ReplaceOne(upsert=True)``); a fraud result only by one with the
  same or a later ``processed_at``, so the latest version is the one kept whatever order
  the runner delivered them in.
- S3 ``s3://<bucket>/<topic>/dt=.../hour=.../part-<window>-<shard>.jsonl``: each document
  in the object of its transaction's event time (``datetime_occurred``; a user, that of the
  fraudulent transaction involving them), merged into what the object holds
  (``pipeline.io.s3.WriteEventTimeJson``): one line per id, a transaction's latest version
  (by ``processed_at``) winning.

Both documents also carry the fraud PoC's field names, so that system's consumers read
them unchanged (``docs/input-formats.md`` lists each name and where it differs):
``sender_bank_account``, ``sender_details``, ``receiver_bank_account``,
``receiver_details``, ``status``, ``transfer_date``, ``is_fraudulent_transaction`` beside
riskpipe's names in a result; ``id`` and ``name`` in a user.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

import apache_beam as beam

from pipeline import metrics
from pipeline.io.kafka import WriteToKafka
from pipeline.io.mongo import WriteToMongo
from pipeline.io.s3 import DEFAULT_FLUSH_S, WriteEventTimeJson
from pipeline.records import Account, AttributedTransaction

__all__ = [
    "WriteFraudResults",
    "fraud_result",
    "poc_user",
    "user_document",
    "with_mongo_id",
]

# User fields published on `users`; `balance` is account state, not a user detail.
USER_FIELDS = tuple(f for f in Account.__dataclass_fields__ if f != "balance")
# The fraud PoC's user fields riskpipe keeps, under the PoC's names (see pipeline.domain.poc).
POC_USER_FIELDS = (
    ("id", "account_id"), ("name", "account_name"), ("address", "address"),
    ("email", "email"), ("birthdate", "birthdate"), ("phone_number", "phone_number"),
    ("job", "job"), ("company", "company"), ("bank_account", "bank_account"),
)
POC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the PoC's transfer_date: UTC, no zone


def poc_user(account: Account | None) -> dict | None:
    """An account as the fraud PoC described a user (its ``sender_details`` shape).

    >>> poc_user(Account("u1", "Ann", email="ann@x", bank_account="DE01"))["name"]
    'Ann'
    """
    if account is None:
        return None
    data = account.to_dict()
    return {poc_name: data[name] for poc_name, name in POC_USER_FIELDS}


def fraud_result(record: AttributedTransaction) -> dict:
    """The `fraudulent-transactions-result` document of one fraudulent transaction.

    The sender's details are the account the join found, else the transaction message's;
    the receiver's are the message's (None when it named only an id).

    >>> from pipeline.records import Transaction
    >>> from datetime import datetime, timezone
    >>> t = Transaction("t1", "a1", "a2", "transfer", 10.0, "EUR", "completed",
    ...                 datetime(2026, 1, 1, tzinfo=timezone.utc), "Bank", "fraudulent")
    >>> doc = fraud_result(AttributedTransaction(t, "Ann", 80, ("night",), True, "bank"))
    >>> doc["sender_id"], doc["receiver_id"], doc["validated_by"], doc["risk_reasons"]
    ('a1', 'a2', 'bank', ['night'])
    >>> doc["transfer_date"], doc["status"], doc["is_fraudulent_transaction"]
    ('2026-01-01 00:00:00', 'completed', True)
    """
    t = record.transaction
    sender, receiver = record.known_account, t.counterparty_details
    doc = record.to_dict()
    doc.pop("account_details", None)
    doc.pop("counterparty_details", None)
    doc["sender_id"] = record.account_id
    doc["receiver_id"] = t.counterparty_account_id
    doc.update(
        sender_bank_account=sender.bank_account if sender is not None else None,
        sender_details=poc_user(sender),
        receiver_bank_account=receiver.bank_account if receiver is not None else None,
        receiver_details=poc_user(receiver),
        status=t.transaction_status,
        transfer_date=t.datetime_occurred.astimezone(UTC).strftime(POC_TIME_FORMAT),
        is_fraudulent_transaction=record.is_fraudulent,
    )
    return doc


def user_document(account_id: str, account: Account | None) -> dict:
    """The `users` document of one account; only its id when the account is unknown.

    ``id`` and ``name`` repeat ``account_id`` and ``account_name`` under the fraud PoC's
    names.

    >>> user_document("a9", None)
    {'account_id': 'a9', 'id': 'a9'}
    >>> doc = user_document("a1", Account("a1", "Ann", email="ann@x"))
    >>> doc["email"], doc["id"], doc["name"]
    ('ann@x', 'a1', 'Ann')
    """
    if account is None:
        return {"account_id": account_id, "id": account_id}
    data = account.to_dict()
    doc = {name: data[name] for name in USER_FIELDS}
    doc.update(id=account.account_id, name=account.account_name)
    return doc


def with_mongo_id(key: str) -> Callable[[dict], dict]:
    """A function copying a document with ``_id`` set from ``key`` (the upsert key)."""

    def add_id(doc: dict) -> dict:
        return {"_id": doc[key], **doc}

    return add_id


def _json_bytes(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def _dated_fraud_result(record: AttributedTransaction) -> tuple:
    """``(event time, fraud result)``: the S3 object follows the transaction's own time."""
    return record.transaction.datetime_occurred, fraud_result(record)


class _UsersFn(beam.DoFn):
    """Emits ``(event time, user document)`` for the sender and the receiver of a fraudulent
    transaction; the event time is the transaction's (it names the user's S3 object).

    The lookup (see ``pipeline.transforms.attribute``) is built once per instance in ``setup``
    and caches accounts; an unreachable store fails the bundle, which the runner retries:
    emitting id-only documents instead would overwrite full ones in Mongo.
    """

    def __init__(self, lookup_factory: Callable[[], Any]):
        self.lookup_factory = lookup_factory
        self.unknown = metrics.counter("results_unknown_users")

    def setup(self):
        self.lookup = self.lookup_factory()

    def teardown(self):
        close = getattr(self.lookup, "close", None)
        if close is not None:
            close()

    def process(self, record: AttributedTransaction):
        t = record.transaction
        ids = [i for i in dict.fromkeys((record.account_id, t.counterparty_account_id)) if i]
        # The users a transfer message described (the fraud PoC's) need no lookup.
        found = {
            a.account_id: a for a in (t.counterparty_details, t.account_details) if a is not None
        }
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(self.lookup(missing))
        for account_id in ids:
            account = found.get(account_id)
            if account is None:
                self.unknown.inc()
            yield record.transaction.datetime_occurred, user_document(account_id, account)


class WriteFraudResults(beam.PTransform):
    """Writes fraudulent AttributedTransactions and their users to Kafka, MongoDB and S3.

    Args:
        bootstrap_servers: Kafka bootstrap servers.
        fraud_topic, users_topic: the two result topics (also the S3 folder names).
        mongo_uri, mongo_db: MongoDB; collections ``transactions`` and ``users``.
        s3_bucket: bucket of the S3 results (None: no S3 output).
        window_s: the event-time span of one S3 object (seconds, dividing an hour).
        lookup_factory: zero-argument callable returning an account lookup
            (``ids -> {id: Account}``), e.g. ``pipeline.io.postgres.lookup_factory(dsn)``.
        mongo_batch_size: documents per Mongo bulk write.
        num_shards: S3 objects per window and topic at most.
        flush_s: how often (processing time) an S3 object with new documents is rewritten.
        s3_args: Beam ``--s3_*`` flags for the S3 filesystem; None uses the pipeline's.
        producer_config: extra librdkafka settings.

    Returns a dict of the S3 paths written per topic (empty without a bucket).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        fraud_topic: str,
        users_topic: str,
        mongo_uri: str,
        mongo_db: str,
        s3_bucket: str | None,
        window_s: int,
        lookup_factory: Callable[[], Any],
        mongo_batch_size: int = 100,
        num_shards: int = 4,
        flush_s: float = DEFAULT_FLUSH_S,
        s3_args: list[str] | None = None,
        producer_config: dict | None = None,
    ):
        super().__init__()
        if not (fraud_topic and users_topic and mongo_uri and mongo_db):
            raise ValueError("WriteFraudResults: topics, mongo_uri and mongo_db must be set")
        if not callable(lookup_factory):
            raise TypeError("WriteFraudResults: lookup_factory must be a callable")
        self.bootstrap_servers = bootstrap_servers
        self.topics = {"transactions": fraud_topic, "users": users_topic}
        self.mongo_uri = mongo_uri
        self.mongo_db = mongo_db
        self.s3_bucket = s3_bucket
        self.window_s = window_s
        self.lookup_factory = lookup_factory
        self.mongo_batch_size = mongo_batch_size
        self.num_shards = num_shards
        self.flush_s = flush_s
        self.s3_args = s3_args
        self.producer_config = producer_config

    def expand(self, fraudulent):
        dated_results = fraudulent | "ToFraudResult" >> beam.Map(_dated_fraud_result)
        dated_users = fraudulent | "LookUpUsers" >> beam.ParDo(_UsersFn(self.lookup_factory))
        written = {}
        for name, dated, key, version in (
            ("Transactions", dated_results, "transaction_id", "processed_at"),
            ("Users", dated_users, "account_id", None),
        ):
            topic = self.topics[name.lower()]
            docs = dated | f"{name}Documents" >> beam.Values()
            docs | f"Write{name}ToKafka" >> WriteToKafka(
                self.bootstrap_servers,
                topic,
                key_fn=lambda d, k=key: d[k],
                value_fn=_json_bytes,
                producer_config=self.producer_config,
            )
            (
                docs
                | f"Add{name}MongoId" >> beam.Map(with_mongo_id(key))
                | f"Write{name}ToMongo"
                >> WriteToMongo(
                    self.mongo_uri, self.mongo_db, name.lower(), self.mongo_batch_size,
                    version_field=version,
                )
            )
            if self.s3_bucket:
                written[topic] = dated | f"Write{name}ToS3" >> WriteEventTimeJson(
                    f"s3://{self.s3_bucket}/{topic}",
                    id_field=key,
                    window_s=self.window_s,
                    num_shards=self.num_shards,
                    version_field=version,
                    flush_s=self.flush_s,
                    filesystem_args=self.s3_args,
                )
        return written
