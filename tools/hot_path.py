"""The job's per-record code without Beam, shared by the baseline and the Quix Streams peer.

Each message goes through the job's parser (``--input_format=auto``); a transaction is
attributed and scored by its account's :class:`~pipeline.domain.attribution.AccountHistory`
(join to the account version of its time, rolling features, score, corrections), routed
(:func:`pipeline.transforms.route.route`) and turned into its row of
banking.attributed_transactions (:func:`pipeline.io.postgres.attributed_row`). Where the
history is kept is up to the caller: a dict (the baseline) or a state store (Quix).

A transaction whose account is neither in its history nor in Postgres waits in memory for
its account message; at the end of the bounded input, :meth:`HotPath.release` looks the
waiting accounts up once more and writes what still waits unjoined (the job's LEFT JOIN,
which it does after a TTL).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, TopicPartition

from pipeline.domain.attribution import BEGINNING, AccountHistory, Scored
from pipeline.domain.scoring import is_suspicious
from pipeline.domain.shapes import account_parser, transaction_parser
from pipeline.errors import InvalidRecord
from pipeline.io.postgres import PostgresAccountLookup, attributed_row
from pipeline.local_defaults import LOCAL_KAFKA_BOOTSTRAP, LOCAL_PG_DSN
from pipeline.options import env
from pipeline.records import Account, AttributedTransaction, Transaction
from pipeline.transforms.route import route

__all__ = ["COUNTERS", "HotPath", "end_offsets", "peer_arguments", "peer_parser"]

# The job's counters that the hot path keeps, by the job's names; and how many transactions
# waited for their account.
COUNTERS = ("kafka_records_read", "parsed", "dead_lettered", "joined", "unjoined",
            "corrected", "postgres_rows_written", "high_risk", "waited")


def peer_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a peer of the job: Kafka, the two topics, Postgres."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka_bootstrap",
                        default=env("RISKPIPE_KAFKA_BOOTSTRAP", LOCAL_KAFKA_BOOTSTRAP))
    parser.add_argument("--accounts_topic", default="accounts")
    parser.add_argument("--transactions_topic", default="transactions")
    parser.add_argument("--postgres_dsn", default=env("RISKPIPE_PG_DSN", LOCAL_PG_DSN))
    return parser


def peer_arguments(args: argparse.Namespace) -> tuple[str, str, str, str]:
    """Bootstrap servers, accounts topic, transactions topic and DSN of a :func:`peer_parser`."""
    return args.kafka_bootstrap, args.accounts_topic, args.transactions_topic, args.postgres_dsn


def end_offsets(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """``(low, high)`` watermark offsets of every non-empty partition of ``topics``."""
    ends = {}
    metadata = consumer.list_topics(timeout=10)
    for topic in topics:
        if topic not in metadata.topics:
            raise SystemExit(f"topic {topic!r} does not exist")
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[(topic, partition)] = (low, high)
    return ends


class HotPath:
    """Parse → join and score → route → row, with the job's counters in ``counts``."""

    def __init__(self, dsn: str, with_features: bool = False):
        self.lookup = PostgresAccountLookup(dsn)
        # The job computes the sender's features only for a fraud model (--model_path);
        # without one, its default, neither does the hot path.
        self.with_features = with_features
        self._parse_account = account_parser("auto")
        self._parse_transaction = transaction_parser("auto")
        self.waiting: dict[str, list[tuple[int, Transaction]]] = defaultdict(list)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.processed_at = datetime.now(UTC)

    def history(self, stored: tuple | None = None, hold_unsettled: bool = False) -> AccountHistory:
        """A new account history, or one restored from :meth:`AccountHistory.to_tuple`,
        computing the sender's features as the job does. ``hold_unsettled``: as the job's
        account step, keep transactions correctable until the caller's watermark passes them
        (the caller then calls :meth:`AccountHistory.settle`)."""
        history = AccountHistory() if stored is None else AccountHistory.from_tuple(stored)
        history.with_features = self.with_features
        history.hold_unsettled = hold_unsettled
        return history

    def parse(self, is_account: bool, payload: bytes | None) -> Account | Transaction | None:
        """The record in ``payload``; None for one the job would dead-letter."""
        self.counts["kafka_records_read"] += 1
        try:
            record = (self._parse_account if is_account else self._parse_transaction)(payload)
        except InvalidRecord:
            self.counts["dead_lettered"] += 1
            return None
        self.counts["parsed"] += 1
        return record

    def account(self, history: AccountHistory, produced: int, account: Account) -> list[tuple]:
        """Rows changed by an account version produced at ``produced`` (µs), and the rows
        of the transactions that waited for it."""
        rows = self._rows(history.add_version(produced, account), joined=True, corrections=True)
        for item in self.waiting.pop(account.account_id, ()):
            rows += self._rows(history.add_transaction(*item), joined=True)
        return rows

    def transaction(self, history: AccountHistory, produced: int, txn: Transaction) -> list[tuple]:
        """The row of a transaction and its corrections; none while it waits for its account."""
        if not history.has_account and txn.account_id not in self.waiting:
            account = self.lookup([txn.account_id]).get(txn.account_id)
            if account is not None:
                history.add_version(BEGINNING, account)
        if history.has_account:
            return self._rows(history.add_transaction(produced, txn), joined=True)
        self.waiting[txn.account_id].append((produced, txn))
        self.counts["waited"] += 1
        return []

    def release(self, history_of: Callable[[str], AccountHistory]) -> list[tuple]:
        """End of the bounded input: a last lookup, then a LEFT JOIN for what still waits."""
        rows: list[tuple] = []
        found = self.lookup(list(self.waiting)) if self.waiting else {}
        for account_id, items in self.waiting.items():
            history = history_of(account_id)
            if account_id in found:
                history.add_version(BEGINNING, found[account_id])
            for item in items:
                rows += self._rows(history.add_transaction(*item), joined=account_id in found)
        self.waiting.clear()
        return rows

    def figures(self, started: float) -> dict:
        """The counters, and the seconds and rates since ``started`` (``perf_counter``)."""
        seconds = time.perf_counter() - started
        transactions = self.counts["joined"] + self.counts["unjoined"]
        return {
            **self.counts,
            "seconds": round(seconds, 3),
            "records_per_s": round(self.counts["kafka_records_read"] / seconds, 1),
            "transactions_per_s": round(transactions / seconds, 1),
        }

    def close(self) -> None:
        self.lookup.close()

    def _rows(self, scored: list[Scored], joined: bool, corrections: bool = False) -> list[tuple]:
        """The rows of ``scored``: a new transaction's row and its corrections of rows before
        it, or (``corrections``: an account version's) corrections only, which count no
        transaction: how many come depends on the order the topics are read in."""
        if corrections:
            self.counts["corrected"] += len(scored)
        elif scored:
            self.counts["joined" if joined else "unjoined"] += 1
            self.counts["high_risk"] += is_suspicious(scored[0].risk_score)
            self.counts["corrected"] += len(scored) - 1
        return [
            attributed_row(route(AttributedTransaction(
                transaction=row.transaction,
                account_name=row.account.account_name if row.account is not None else None,
                risk_score=row.risk_score, risk_reasons=row.risk_reasons,
                processed_at=self.processed_at, account=row.account,
            ))[1])
            for row in scored
        ]


if __name__ == "__main__":
    raise SystemExit(
        "tools.hot_path is a library, not a command: it is used by python -m tools.baseline, python -m tools.quix_peer, python -m tools.bench"
    )
