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
  per sender and per receiver, from banking.accounts (a receiver that is no known account
  appears with its id only).
- The topics are keyed and compacted (``stack/kafka.py``): a consumer keeping the latest
  record per key, and in time the broker, hold one record per transaction and per user.
- Mongo documents carry ``_id`` (the transaction or account id); ``WriteToMongo`` replaces
  the stored document (``ReplaceOne(upsert=True)``), so the latest version is the one kept.
- S3 ``s3://<bucket>/<topic>/dt=.../hour=.../part-<window>-<shard>.jsonl``: each document
  in the object of its transaction's event time (``datetime_occurred``; a user, that of the
  fraudulent transaction involving them), merged into what the object holds
  (``pipeline.io.s3.WriteEventTimeJson``): one line per id, a transaction's latest version
  (by ``processed_at``) winning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import apache_beam as beam

from pipeline import metrics
from pipeline.io.kafka import WriteToKafka
from pipeline.io.mongo import WriteToMongo
from pipeline.io.s3 import DEFAULT_FLUSH_S, WriteEventTimeJson
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


def _dated_fraud_result(record: AttributedTransaction) -> tuple:
    """``(event time, fraud result)``: the S3 object follows the transaction's own time."""
    return record.transaction.datetime_occurred, fraud_result(record)


class _UsersFn(beam.DoFn):
    """Emits ``(event time, user document)`` for the sender and the receiver of a fraudulent
    transaction; the event time is the transaction's (it names the user's S3 object).

    The lookup (see ``pipeline.transforms.join``) is built once per instance in ``setup``
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
                >> WriteToMongo(self.mongo_uri, self.mongo_db, name.lower(), self.mongo_batch_size)
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
