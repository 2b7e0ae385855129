"""The account's email, type and balance in banking.attributed_transactions (migration 003).

Written by the real sink into the real PostgreSQL of the local stack; the upsert stays
idempotent (a replay writes the same row) and a newer version of a row replaces the columns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import apache_beam as beam
import psycopg2
import pytest

from pipeline.io.postgres import WriteAttributedTransactions
from pipeline.records import Account, AttributedTransaction, Transaction
from tests.transforms.pipelines import batch_pipeline


@pytest.fixture
def prefix(postgres_dsn):
    tag = f"acccols-{uuid.uuid4().hex[:8]}"
    yield tag
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM banking.attributed_transactions WHERE transaction_id LIKE %s",
            (f"{tag}%",),
        )
    conn.close()


def _transaction(tid: str, **changes) -> Transaction:
    values = {
        "transaction_id": tid,
        "account_id": "acc-1",
        "counterparty_account_id": None,
        "transaction_type": "withdrawal",
        "amount": 1520.75,
        "currency": "USD",
        "transaction_status": "completed",
        "datetime_occurred": datetime(2026, 3, 2, 14, tzinfo=UTC),
        "sender_bank": None,
        "evaluation": "unidentified",
    }
    values.update(changes)
    return Transaction(**values)


def _write(dsn: str, records: list[AttributedTransaction]) -> None:
    pipeline = batch_pipeline()
    _ = pipeline | beam.Create(records) | WriteAttributedTransactions(dsn, batch_size=10)
    pipeline.run().wait_until_finish()


def _columns(dsn: str, prefix: str) -> dict[str, tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT transaction_id, account_name, email, account_type, balance, risk_score "
            "FROM banking.attributed_transactions WHERE transaction_id LIKE %s",
            (f"{prefix}%",),
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    conn.close()
    return rows


def test_account_columns_are_written_and_replays_change_nothing(postgres_dsn, prefix):
    joined = Account("acc-1", "Nguyen Van An", "an@example.vn", "investment", 45210.5)
    poc_sender = Account("u-1", "Ada", "ada@example.com", bank_account="DE02")
    records = [
        AttributedTransaction(_transaction(f"{prefix}-a"), "Nguyen Van An", 30, account=joined),
        AttributedTransaction(
            _transaction(f"{prefix}-b", account_id="u-1", account_details=poc_sender),
            "Ada",
            10,
        ),
        AttributedTransaction(_transaction(f"{prefix}-c", account_id="nobody"), None, 15),
    ]
    _write(postgres_dsn, records)
    first = _columns(postgres_dsn, prefix)
    assert {k: tuple(map(_plain, v)) for k, v in first.items()} == {
        f"{prefix}-a": ("Nguyen Van An", "an@example.vn", "investment", 45210.5, 30),
        f"{prefix}-b": ("Ada", "ada@example.com", None, 0.0, 10),
        f"{prefix}-c": (None, None, None, None, 15),
    }
    _write(postgres_dsn, records)
    assert _columns(postgres_dsn, prefix) == first


def test_a_newer_version_of_the_row_replaces_the_account_columns(postgres_dsn, prefix):
    before = Account("acc-1", "An", "old@example.vn", "checking", 100.0)
    after = Account("acc-1", "An", "new@example.vn", "business", 250.0)
    tid = f"{prefix}-x"
    _write(postgres_dsn, [AttributedTransaction(_transaction(tid), "An", 5, account=before)])
    _write(postgres_dsn, [AttributedTransaction(_transaction(tid), "An", 5, account=after)])
    assert tuple(map(_plain, _columns(postgres_dsn, prefix)[tid])) == (
        "An",
        "new@example.vn",
        "business",
        250.0,
        5,
    )


def _plain(value):
    return float(value) if value.__class__.__name__ == "Decimal" else value


def test_the_lookup_reads_account_types_in_riskpipes_words(postgres_dsn, prefix):
    """banking.accounts as the Flink SQL system's producers filled it: their words."""
    from pipeline.io.postgres import PostgresAccountLookup

    rows = {
        f"{prefix}-p": "Personal",
        f"{prefix}-i": "INVESTMENT",
        f"{prefix}-c": "credit",
        f"{prefix}-g": "Gold",
        f"{prefix}-n": None,
    }
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        for account_id, kind in rows.items():
            cur.execute(
                "INSERT INTO banking.accounts (account_id, account_name, account_type) "
                "VALUES (%s, %s, %s)",
                (account_id, "Holder", kind),
            )
    conn.close()
    lookup = PostgresAccountLookup(postgres_dsn)
    try:
        found = lookup(list(rows))
    finally:
        lookup.close()
        with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM banking.accounts WHERE account_id = ANY(%s)", (list(rows),))
        conn.close()
    assert {k: a.account_type for k, a in found.items()} == {
        f"{prefix}-p": "checking",
        f"{prefix}-i": "investment",
        f"{prefix}-c": "credit",
        f"{prefix}-g": "Gold",
        f"{prefix}-n": None,
    }
