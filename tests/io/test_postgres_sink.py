"""The attributed-transactions sink against the real PostgreSQL: what goes in comes back out."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from pipeline.io.postgres import _UpsertAttributedFn
from pipeline.records import AttributedTransaction, Transaction

HOSTILE = ['quote " and comma ,', "back\\slash", "new\nline\ttab", "", "\\N", "NULL", "{brace}",
           # a batch travels as one JSON text given as a statement parameter
           "null", '{"a": [1, "b"]}', '"]}', "%s %(x)s %%", "ctl \x01\x1b\x7f\x85", "\u2028",
           "漢字 🙂 e\u0301", "\\u0041"]


def record(tid: str, name, reasons=(), score=10, fraudulent=False) -> AttributedTransaction:
    txn = Transaction(
        transaction_id=tid, account_id="acc", counterparty_account_id=None,
        transaction_type="payment", amount=12.34, currency="EUR", transaction_status="completed",
        datetime_occurred=datetime(2026, 11, 1, 12, 30, 1, 123456, tzinfo=timezone.utc),
        sender_bank=name, evaluation="cleared",
    )
    return AttributedTransaction(txn, account_name=name, risk_score=score,
                                 risk_reasons=tuple(reasons), is_fraudulent=fraudulent,
                                 validated_by="none",
                                 processed_at=datetime(2026, 11, 1, 13, tzinfo=timezone.utc))


def write(dsn: str, records) -> None:
    fn = _UpsertAttributedFn(dsn, batch_size=1000)
    fn.setup()
    fn.start_bundle()
    for r in records:
        fn.process(r)
    fn.finish_bundle()
    fn.teardown()


def read(dsn: str, prefix: str) -> dict:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT transaction_id, account_name, sender_bank, risk_reasons, risk_score, "
            "is_fraudulent, amount, datetime_occurred FROM banking.attributed_transactions "
            "WHERE transaction_id LIKE %s", (prefix + "%",))
        return {row[0]: row[1:] for row in cur.fetchall()}


@pytest.mark.parametrize("text", HOSTILE + [None])
def test_text_nulls_and_arrays_come_back_as_written(postgres_dsn, text):
    prefix = f"sink-{uuid.uuid4().hex[:8]}-"
    reasons = [] if text is None else [text, "second"]
    write(postgres_dsn, [record(prefix + "1", text, reasons)])
    name, bank, stored_reasons, score, fraudulent, amount, occurred = read(postgres_dsn, prefix)[
        prefix + "1"]
    assert (name, bank, stored_reasons) == (text, text, reasons)
    assert (score, fraudulent, float(amount)) == (10, False, 12.34)
    assert occurred == datetime(2026, 11, 1, 12, 30, 1, 123456, tzinfo=timezone.utc)


def test_a_later_version_of_a_row_overwrites_the_earlier_one(postgres_dsn):
    prefix = f"sink-{uuid.uuid4().hex[:8]}-"
    write(postgres_dsn, [record(prefix + "1", "Old", score=10)])
    # A correction, and in one batch two versions of one row: the last one wins.
    write(postgres_dsn, [record(prefix + "1", "Newer", score=20),
                         record(prefix + "1", "Newest", score=30, fraudulent=True)])
    name, _, _, score, fraudulent, *_ = read(postgres_dsn, prefix)[prefix + "1"]
    assert (name, score, fraudulent) == ("Newest", 30, True)


def test_an_older_version_never_replaces_a_newer_one(postgres_dsn):
    """A runner may deliver a transaction's rows out of the order they were made in: the row
    with the latest ``processed_at`` stays, in one batch or across batches."""
    prefix = f"sink-{uuid.uuid4().hex[:8]}-"
    at = datetime(2026, 11, 1, 13, tzinfo=timezone.utc)

    def version(tid, name, minutes):
        later = at + timedelta(minutes=minutes)
        return dataclasses.replace(record(prefix + tid, name), processed_at=later)

    write(postgres_dsn, [version("1", "Corrected", 2), version("1", "First", 1)])
    write(postgres_dsn, [version("2", "Corrected", 2)])
    write(postgres_dsn, [version("2", "First", 1)])
    write(postgres_dsn, [version("3", "First", 1)])
    write(postgres_dsn, [version("3", "Corrected", 2)])
    rows = read(postgres_dsn, prefix)
    assert {tid.removeprefix(prefix): row[0] for tid, row in rows.items()} == {
        "1": "Corrected", "2": "Corrected", "3": "Corrected",
    }
