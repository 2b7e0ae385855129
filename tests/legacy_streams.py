"""Fixture streams in the shapes of the two systems riskpipe replaces, and what to expect.

:class:`FlinkSqlStream` writes the Flink SQL risk job's topics (``<prefix>accounts`` and
``<prefix>bank_transactions``), :class:`PocStream` the fraud PoC's one topic
(``<prefix>bank-transactions``): unkeyed JSON messages as those systems' producers wrote
them, plus malformed variants. Each stream knows, written out here rather than computed by
riskpipe, what every good record must become and which reason each bad one must carry.
The DirectRunner and the FlinkRunner end-to-end tests share them, and :class:`Outputs`,
which reads what the job wrote to each sink.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
import psycopg2
import pymongo
from botocore.config import Config
from confluent_kafka import Producer

from stack.kafka import ensure_topics
from tools.reconcile import read_topic

ZONELESS = "%Y-%m-%d %H:%M:%S"
# The Flink SQL words and riskpipe's, as the migration section of the README lists them.
FLINKSQL_TYPES = {"Deposit": "deposit", "Withdrawal": "withdrawal", "Transfer": "transfer"}
FLINKSQL_STATUSES = {"Pending": "pending", "Completed": "completed", "Failed": "failed"}
FLINKSQL_ACCOUNT_TYPES = {
    "Personal": "checking",
    "Corporate": "business",
    "Savings": "savings",
    "Investment": "investment",
}
POC_EVALUATIONS = {
    "fraudulent": "fraudulent",
    "unidentified": "unidentified",
    "legitimate": "cleared",
}


def produce(bootstrap: str, messages: list[tuple[str, bytes]]) -> None:
    """Writes ``(topic, value)`` messages in order, unkeyed, and waits for every ack."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, value in messages:
        producer.produce(topic, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages not acknowledged"


def read_json(bootstrap: str, topic: str) -> list[dict]:
    """Every message of ``topic``, decoded, read to the end offsets."""
    return [json.loads(m.value()) for m in read_topic(bootstrap, topic, timeout_s=60)]


@dataclass
class Expected:
    """What riskpipe must make of a stream."""

    rows: dict[str, dict] = field(default_factory=dict)  # transaction_id -> column values
    dead_letters: dict[bytes, str] = field(default_factory=dict)  # payload -> reason
    fraudulent_by_bank: set[str] = field(default_factory=set)
    users: dict[str, dict] = field(default_factory=dict)  # PoC user id -> kept fields


class FlinkSqlStream:
    """Accounts and transactions of the Flink SQL job; some accounts arrive late."""

    ACCOUNTS = 12
    TRANSACTIONS = 60

    def __init__(self, prefix: str, seed: int = 7):
        self.prefix = prefix
        self.accounts_topic = f"{prefix}accounts"
        self.transactions_topic = f"{prefix}bank_transactions"
        rng = random.Random(seed)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        self.expected = Expected()
        self.accounts: list[dict] = []
        kinds = []  # each account's type as the old producer spelled it
        for i in range(self.ACCOUNTS):
            kind = list(FLINKSQL_ACCOUNT_TYPES)[i % 4]
            kinds.append(kind)
            self.accounts.append(
                {
                    "account_id": f"{prefix}acc-{i:02d}",
                    "account_name": f"Holder {i:02d}",
                    "email": f"holder{i:02d}@example.vn",
                    # any case: the old producer capitalised, others may not
                    "account_type": kind if i % 3 else kind.upper(),
                    "balance": round(1000 + 7919.5 * i, 2),
                    "created_at": (start - timedelta(days=400 + i)).strftime(ZONELESS),
                }
            )
        self.transactions: list[dict] = []
        for n in range(self.TRANSACTIONS):
            account, account_kind = self.accounts[n % self.ACCOUNTS], kinds[n % self.ACCOUNTS]
            kind = list(FLINKSQL_TYPES)[n % 3]
            status = list(FLINKSQL_STATUSES)[n % 3 if n % 5 else 1]
            currency = ("USD", "EUR", "VND")[n % 3]
            at = start + timedelta(seconds=17 * n)
            amount = round(rng.uniform(10, 500_000), 2)
            message = {
                "transaction_id": f"{prefix}tx-{n:03d}",
                "account_id": account["account_id"],
                "transaction_type": kind if n % 4 else kind.lower(),
                "amount": amount,
                "currency": currency,
                "transaction_status": status,
                "datetime_occured": at.strftime(ZONELESS),
            }
            self.transactions.append(message)
            self.expected.rows[message["transaction_id"]] = {
                "account_id": account["account_id"],
                "account_name": account["account_name"],
                "counterparty_account_id": None,
                "transaction_type": FLINKSQL_TYPES[kind],
                "amount": amount,
                "currency": currency,
                "transaction_status": FLINKSQL_STATUSES[status],
                "datetime_occurred": at,
                "evaluation": "unidentified",
                "email": account["email"],
                "account_type": FLINKSQL_ACCOUNT_TYPES[account_kind],
                "balance": account["balance"],
            }
        good = self.transactions[0]
        bad_transactions = [
            (
                dict(good, transaction_id=f"{prefix}bad-amount", amount="x"),
                "flinksql transaction: amount: not a number ('x')",
            ),
            (
                dict(good, transaction_id=f"{prefix}bad-type", transaction_type="Teleport"),
                "flinksql transaction: transaction_type: unknown ('Teleport')",
            ),
            (
                dict(good, transaction_id=f"{prefix}bad-currency", currency="XYZ"),
                "flinksql transaction: currency: unknown ('XYZ')",
            ),
            (
                dict(
                    good, transaction_id=f"{prefix}bad-time", datetime_occured="2026-02-30 10:00:00"
                ),
                (
                    "flinksql transaction: datetime_occured: not an ISO-8601 timestamp "
                    "('2026-02-30 10:00:00')"
                ),
            ),
            (
                {k: v for k, v in good.items() if k != "account_id"}
                | {"transaction_id": f"{prefix}bad-acc"},
                "flinksql transaction: account_id: missing",
            ),
        ]
        bad_accounts = [
            (
                dict(self.accounts[0], account_id=f"{prefix}bad-gold", account_type="Gold"),
                "flinksql account: account_type: unknown ('Gold')",
            ),
            (
                dict(self.accounts[1], account_id=f"{prefix}bad-name", account_name=None),
                "flinksql account: account_name: missing",
            ),
        ]
        self.bad_transactions = [(json.dumps(m).encode(), r) for m, r in bad_transactions]
        self.bad_transactions.append(
            (b"not json at all", "payload: not JSON (Expecting value at 0)")
        )
        self.bad_accounts = [(json.dumps(m).encode(), r) for m, r in bad_accounts]
        self.expected.dead_letters = dict(self.bad_transactions + self.bad_accounts)

    def create_topics(self, bootstrap: str, partitions: int = 2) -> None:
        ensure_topics(
            {self.accounts_topic: partitions, self.transactions_topic: partitions}, bootstrap
        )

    def publish(self, bootstrap: str) -> None:
        """A third of the transactions, then the accounts, then the rest and the bad ones."""
        early = len(self.transactions) // 3
        encode = [json.dumps(m).encode() for m in self.transactions]
        produce(bootstrap, [(self.transactions_topic, v) for v in encode[:early]])
        produce(
            bootstrap,
            [(self.accounts_topic, json.dumps(a).encode()) for a in self.accounts]
            + [(self.accounts_topic, v) for v, _ in self.bad_accounts],
        )
        produce(
            bootstrap,
            [(self.transactions_topic, v) for v in encode[early:]]
            + [(self.transactions_topic, v) for v, _ in self.bad_transactions],
        )


class PocStream:
    """Transfers of the fraud PoC between a few users, each user both sender and receiver."""

    USERS = 8
    TRANSFERS = 48

    def __init__(self, prefix: str, seed: int = 11):
        self.prefix = prefix
        self.topic = f"{prefix}bank-transactions"
        rng = random.Random(seed)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        self.expected = Expected()
        self.users = []
        for i in range(self.USERS):
            user = {
                "id": f"{prefix}user-{i}",
                "name": f"User {i}",
                "address": f"{i} Main Street",
                "email": f"user{i}@example.org",
                "birthdate": f"19{70 + i}-0{1 + i % 9}-1{i}",
                "phone_number": f"+1-555-010{i}",
                "job": "Analyst",
                "company": f"Company {i}",
                "ssn": f"123-45-67{i:02d}",
                "blood_group": "O+",
                "website": f"https://user{i}.example.org/",
                "username": f"user{i}",
                "bank_account": f"{prefix}IBAN{i:04d}",
            }
            self.users.append(user)
            self.expected.users[user["id"]] = {
                "id": user["id"],
                "name": user["name"],
                "email": user["email"],
                "address": user["address"],
                "birthdate": user["birthdate"],
                "phone_number": user["phone_number"],
                "job": "Analyst",
                "company": user["company"],
                "bank_account": user["bank_account"],
            }
        self.transfers: list[dict] = []
        evaluations = ["legitimate", "legitimate", "fraudulent", "unidentified", "Fraudulent"]
        for n in range(self.TRANSFERS):
            sender = self.users[n % self.USERS]
            receiver = self.users[(n * 3 + 1) % self.USERS]  # never the sender: 2n+1 is odd
            at = start + timedelta(seconds=11 * n)
            evaluation = evaluations[n % len(evaluations)]
            amount = round(rng.uniform(5, 20_000), 2)
            message = {
                "transaction_id": f"{prefix}tr-{n:03d}",
                "sender_bank_account": sender["bank_account"],
                "sender_details": sender,
                "receiver_bank_account": receiver["bank_account"],
                "receiver_details": receiver,
                "amount": amount,
                "status": ("completed", "Pending", "FAILED")[n % 3],
                "evaluation": evaluation,
                "transfer_date": at.strftime(ZONELESS),
                "sender_bank": "Harbor Trust",
            }
            self.transfers.append(message)
            self.expected.rows[message["transaction_id"]] = {
                "account_id": sender["id"],
                "account_name": sender["name"],
                "counterparty_account_id": receiver["id"],
                "transaction_type": "transfer",
                "amount": amount,
                "currency": "EUR",
                "transaction_status": ("completed", "pending", "failed")[n % 3],
                "datetime_occurred": at,
                "evaluation": POC_EVALUATIONS[evaluation.lower()],
                "email": sender["email"],
                "sender_bank_account": sender["bank_account"],
                "receiver_bank_account": receiver["bank_account"],
            }
            if evaluation.lower() == "fraudulent":
                self.expected.fraudulent_by_bank.add(message["transaction_id"])
        good = self.transfers[0]
        bad = [
            (
                dict(good, transaction_id=f"{prefix}bad-amount", amount="x"),
                "poc transfer: amount: not a number ('x')",
            ),
            (
                {k: v for k, v in good.items() if k != "receiver_details"}
                | {"transaction_id": f"{prefix}bad-receiver"},
                "poc transfer: receiver_details: missing",
            ),
            (
                dict(good, transaction_id=f"{prefix}bad-details", sender_details="user-0"),
                "poc transfer: sender_details: not an object (str)",
            ),
            (
                dict(
                    good,
                    transaction_id=f"{prefix}bad-name",
                    sender_details=dict(good["sender_details"], name=" "),
                ),
                "poc transfer: sender_details.name: empty",
            ),
            (
                dict(good, transaction_id=f"{prefix}bad-date", transfer_date="31/12/2025 25:61"),
                "poc transfer: transfer_date: not an ISO-8601 timestamp ('31/12/2025 25:61')",
            ),
            (
                dict(good, transaction_id=f"{prefix}bad-status", status="teleported"),
                "poc transfer: status: unknown ('teleported')",
            ),
        ]
        self.bad = [(json.dumps(m).encode(), r) for m, r in bad]
        self.expected.dead_letters = dict(self.bad)

    def create_topics(self, bootstrap: str, partitions: int = 2) -> None:
        ensure_topics({self.topic: partitions}, bootstrap)

    def publish(self, bootstrap: str) -> None:
        produce(
            bootstrap,
            [(self.topic, json.dumps(m).encode()) for m in self.transfers]
            + [(self.topic, v) for v, _ in self.bad],
        )


ROW_COLUMNS = (
    "account_id",
    "account_name",
    "counterparty_account_id",
    "transaction_type",
    "amount",
    "currency",
    "transaction_status",
    "datetime_occurred",
    "evaluation",
)


def _plain(value):
    return float(value) if value.__class__.__name__ == "Decimal" else value


class Outputs:
    """A test's output topics, Mongo database and consumer group, and readers of every sink."""

    def __init__(self, endpoints: dict, prefix: str):
        self.endpoints = endpoints
        self.bootstrap = endpoints["kafka"]["bootstrap_servers"]
        self.dsn = endpoints["postgres"]["dsn"]
        self.mongo_uri = endpoints["mongo"].get("uri") or "mongodb://127.0.0.1:27017"
        self.prefix = prefix
        self.mongo_db = prefix.rstrip(".").replace(".", "_")
        self.group = f"{prefix}job"
        self.topics = {
            "dead_letters": f"{prefix}dead-letters",
            "results": f"{prefix}fraudulent-transactions-result",
            "users": f"{prefix}users",
        }
        ensure_topics({t: 1 for t in self.topics.values()}, self.bootstrap)

    def job_flags(self) -> list[str]:
        """The job's flags for these outputs (input topics and format are the test's)."""
        return [
            f"--kafka_bootstrap={self.bootstrap}",
            f"--postgres_dsn={self.dsn}",
            f"--mongo_uri={self.mongo_uri}",
            f"--mongo_db={self.mongo_db}",
            f"--s3_bucket={self.endpoints['s3']['bucket']}",
            f"--dead_letter_topic={self.topics['dead_letters']}",
            f"--fraud_results_topic={self.topics['results']}",
            f"--users_topic={self.topics['users']}",
            f"--consumer_group={self.group}",
            "--start_offset=earliest",
        ]

    def rows(self, ids: list[str], columns: tuple[str, ...]) -> dict[str, dict]:
        """The rows of banking.attributed_transactions with those ids, by transaction id."""
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT transaction_id, {', '.join(columns)} "
                "FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                (ids,),
            )
            found = {row[0]: dict(zip(columns, map(_plain, row[1:]))) for row in cur.fetchall()}
        conn.close()
        return found

    def fraudulent(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` whose row says fraudulent."""
        return {t for t, row in self.rows(ids, ("is_fraudulent",)).items() if row["is_fraudulent"]}

    def dead_letters(self) -> list[tuple[bytes, str, str]]:
        """(payload, reason, step) of every dead letter, in topic order."""
        out = []
        for letter in read_json(self.bootstrap, self.topics["dead_letters"]):
            text = letter["payload"]
            payload = bytes.fromhex(text) if letter["payload_encoding"] == "hex" else text.encode()
            out.append((payload, letter["reason"], letter["step"]))
        return out

    def mongo_docs(self, collection: str) -> list[dict]:
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            return list(client[self.mongo_db][collection].find({}))
        finally:
            client.close()

    def s3_docs(self, folder: str) -> list[dict]:
        """Every record of the S3 objects under ``<bucket>/<folder>/``."""
        s3 = self.endpoints["s3"]
        client = boto3.client(
            "s3",
            endpoint_url=s3["endpoint_url"],
            aws_access_key_id=s3["s3_access_key_id"],
            aws_secret_access_key=s3["s3_secret_access_key"],
            region_name=s3["s3_region_name"],
            config=Config(s3={"addressing_style": "path"}),
        )
        docs = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3["bucket"], Prefix=f"{folder}/"
        ):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=s3["bucket"], Key=obj["Key"])["Body"].read()
                docs += [json.loads(line) for line in body.splitlines() if line.strip()]
        return docs

    def cleanup(self, ids: list[str]) -> None:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "DELETE FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                (ids,),
            )
        conn.close()
        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(self.mongo_db)
        finally:
            client.close()


def check_fraud_result(doc: dict, stream: PocStream) -> None:
    """Asserts a fraud result carries the PoC's field names with the transfer's values."""
    want = stream.expected.rows[doc["transaction_id"]]
    users = stream.expected.users
    assert doc["sender_bank_account"] == want["sender_bank_account"]
    assert doc["receiver_bank_account"] == want["receiver_bank_account"]
    assert doc["sender_details"] == users[want["account_id"]]
    assert doc["receiver_details"] == users[want["counterparty_account_id"]]
    assert doc["amount"] == want["amount"]
    assert doc["status"] == want["transaction_status"]
    assert doc["evaluation"] == want["evaluation"]
    assert doc["transfer_date"] == want["datetime_occurred"].strftime(ZONELESS)
    assert doc["sender_bank"] == "Harbor Trust"
    assert doc["is_fraudulent_transaction"] is True


def check_user(doc: dict, stream: PocStream) -> None:
    """Asserts a users document carries the PoC's field names with the user's values."""
    want = stream.expected.users[doc["id"]]
    assert {k: doc[k] for k in want} == want


def users_of(stream: PocStream, ids: set[str]) -> set[str]:
    """The ids of the senders and receivers of those transfers."""
    rows = stream.expected.rows
    return {rows[t][k] for t in ids for k in ("account_id", "counterparty_account_id")}
