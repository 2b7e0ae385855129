"""The fraud results: fraudulent transactions and the users involved, to Kafka, MongoDB, S3.

Usage::

    fraudulent = attributed | "KeepFraudulent" >> beam.Filter(lambda r: r.is_fraudulent)
    fraudulent | "WriteFraudResults" >> WriteFraudResults(
        bootstrap_servers, "fraudulent-transactions-result", "users",
        mongo_uri, "fraudulent_transactions_db", s3_bucket="riskpipe", window_s=60,
        lookup_factory=lookup_factory(dsn),
    )

What goes where:

- topic ``fraudulent-transactions-result``, keyed by transaction id, and Mongo
  ``<db>.transactions``: one :func:`fraud_result` per fraudulent transaction (its fields,
  ``sender_id``, ``receiver_id``, the risk score and reasons, who decided).
- topic ``users``, keyed by account id, and Mongo ``<db>.users``: one :func:`user_document`
  per sender and per receiver, from banking.accounts (a receiver that is no known account
  appears with its id only). Mongo upserts on ``_id`` (the account id), so a user is stored
  once however often they transact; the topic is keyed, so compaction keeps one per user.
- S3 ``s3://<bucket>/<topic>/dt=.../hour=.../part-....jsonl``: both, windowed, replay-safe.

Every write is idempotent: Mongo documents carry ``_id`` (``pipeline.io.mongo.WriteToMongo``
then does a ``ReplaceOne(upsert=True)`` per document) and S3 object names are deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import apache_beam as beam

from pipeline import metrics
from pipeline.io.kafka import WriteToKafka
from pipeline.io.mongo import WriteToMongo
from pipeline.io.s3 import WriteWindowedJson
from pipeline.records import Account, AttributedTransaction

__all__ = ["WriteFraudResults", "fraud_result", "user_document", "with_mongo_id"]

# User fields published on `users`; `balance` is account state, not a user detail.
USER_FIELDS = tuple(f for f in Account.__dataclass_fields__ if f != "balance")


def fraud_result(record: AttributedTransaction) -> dict:
    """The `fraudulent-transactions-result` document of one fraudulent transaction.

    >>> from pipeline.records import Transaction
    >>> from datetime import datetime, timezone
    >>> t = Transaction("t1", "a1", "a2", "transfer", 10.0, "EUR", "completed",
    ...                 datetime(2026, 1, 1, tzinfo=timezone.utc), "Bank", "fraudulent")
    >>> doc = fraud_result(AttributedTransaction(t, "Ann", 80, ("night",), True, "bank"))
    >>> doc["sender_id"], doc["receiver_id"], doc["validated_by"], doc["risk_reasons"]
    ('a1', 'a2', 'bank', ['night'])
    """
    doc = record.to_dict()
    doc["sender_id"] = record.account_id
    doc["receiver_id"] = record.transaction.counterparty_account_id
    return doc


def user_document(account_id: str, account: Account | None) -> dict:
    """The `users` document of one account; only ``account_id`` when the account is unknown.

    >>> user_document("a9", None)
    {'account_id': 'a9'}
    >>> user_document("a1", Account("a1", "Ann", email="ann@x"))["email"]
    'ann@x'
    """
    if account is None:
        return {"account_id": account_id}
    data = account.to_dict()
    return {name: data[name] for name in USER_FIELDS}


def with_mongo_id(key: str) -> Callable[[dict], dict]:
    """A function copying a document with ``_id`` set from ``key`` (the upsert key)."""

    def add_id(doc: dict) -> dict:
        return {"_id": doc[key], **doc}

    return add_id


def _json_bytes(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


class _UsersFn(beam.DoFn):
    """Emits the sender's and the receiver's user documents of a fraudulent transaction.

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
        ids = [record.account_id, record.transaction.counterparty_account_id]
        ids = [i for i in dict.fromkeys(ids) if i]
        found = self.lookup(ids)
        for account_id in ids:
            account = found.get(account_id)
            if account is None:
                self.unknown.inc()
            yield user_document(account_id, account)


class WriteFraudResults(beam.PTransform):
    """Writes fraudulent AttributedTransactions and their users to Kafka, MongoDB and S3.

    Args:
        bootstrap_servers: Kafka bootstrap servers.
        fraud_topic, users_topic: the two result topics (also the S3 folder names).
        mongo_uri, mongo_db: MongoDB; collections ``transactions`` and ``users``.
        s3_bucket: bucket of the S3 results (None: no S3 output).
        window_s: length of the windows that become S3 objects.
        lookup_factory: zero-argument callable returning an account lookup
            (``ids -> {id: Account}``), e.g. ``pipeline.io.postgres.lookup_factory(dsn)``.
        mongo_batch_size: documents per Mongo bulk write.
        num_shards: S3 objects per window and topic at most.
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
        self.s3_args = s3_args
        self.producer_config = producer_config

    def expand(self, fraudulent):
        results = fraudulent | "ToFraudResult" >> beam.Map(fraud_result)
        users = fraudulent | "LookUpUsers" >> beam.ParDo(_UsersFn(self.lookup_factory))
        written = {}
        for name, docs, key in (
            ("Transactions", results, "transaction_id"),
            ("Users", users, "account_id"),
        ):
            topic = self.topics[name.lower()]
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
                >> WriteToMongo(self.mongo_uri, self.mongo_db, name.lower(), self.mongo_batch_size)
            )
            if self.s3_bucket:
                written[topic] = docs | f"Write{name}ToS3" >> WriteWindowedJson(
                    f"s3://{self.s3_bucket}/{topic}",
                    self.window_s,
                    id_field=key,
                    num_shards=self.num_shards,
                    filesystem_args=self.s3_args,
                )
        return written
