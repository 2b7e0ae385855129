"""PostgreSQL going away: the sink and the patient lookup wait for it; nothing is lost.

The real local PostgreSQL sits behind a TcpLink the test cuts and restores, so the shared
server keeps running for the rest of the suite while this worker sees an outage.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from pipeline.errors import LookupUnavailable
from pipeline.io.postgres import PostgresAccountLookup, _UpsertAttributedFn
from pipeline.records import AttributedTransaction, Transaction
from tests.tcp_fault import TcpLink

OUTAGE_S = 4.0


@pytest.fixture
def link(postgres_dsn):
    parts = urlsplit(postgres_dsn)
    with TcpLink((parts.hostname, parts.port or 5432)) as link:
        netloc = f"{parts.username}:{parts.password}@{link.host}:{link.port}"
        link.dsn = urlunsplit(parts._replace(netloc=netloc))
        yield link


def _record(tid: str, account_id: str) -> AttributedTransaction:
    txn = Transaction(
        transaction_id=tid, account_id=account_id, counterparty_account_id=None,
        transaction_type="payment", amount=12.5, currency="EUR", transaction_status="completed",
        datetime_occurred=datetime(2026, 11, 1, tzinfo=timezone.utc), sender_bank="Bank",
        evaluation="cleared",
    )
    return AttributedTransaction(txn, account_name="Ann", risk_score=10, validated_by="bank")


def _restore_after(link: TcpLink, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), link.restore()), daemon=True)
    thread.start()
    return thread


def test_sink_starts_while_postgres_is_down_and_writes_once_it_is_back(link, postgres_dsn):
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    fn = _UpsertAttributedFn(link.dsn, batch_size=100)
    link.cut()
    fn.setup()  # must not need the database
    restorer = _restore_after(link, OUTAGE_S)
    fn.start_bundle()
    for i in range(5):
        fn.process(_record(f"{prefix}-{i}", f"{prefix}-acc"))
    fn.finish_bundle()  # retries with backoff until the link is back
    restorer.join()

    # A second outage cuts the connection the sink now holds: it reconnects.
    link.cut()
    restorer = _restore_after(link, OUTAGE_S / 2)
    fn.start_bundle()
    for i in range(5, 10):
        fn.process(_record(f"{prefix}-{i}", f"{prefix}-acc"))
    fn.finish_bundle()
    restorer.join()
    fn.teardown()

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM banking.attributed_transactions "
                    "WHERE transaction_id LIKE %s", (f"{prefix}-%",))
        assert cur.fetchone()[0] == 10
    conn.close()
    assert link.accepted >= 2  # one connection per outage


def test_patient_lookup_waits_out_an_outage(link, postgres_dsn):
    account_id = f"outage-{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO banking.accounts (account_id, account_name) VALUES (%s, %s)",
                    (account_id, "Patient"))
    conn.close()

    link.cut()
    restorer = _restore_after(link, OUTAGE_S)
    started = time.monotonic()
    found = PostgresAccountLookup(link.dsn, patience_s=60)([account_id])
    restorer.join()
    assert found[account_id].account_name == "Patient"
    assert time.monotonic() - started >= OUTAGE_S * 0.9  # it did wait for the link


def test_impatient_lookup_gives_up_at_once(link):
    link.cut()
    started = time.monotonic()
    with pytest.raises(LookupUnavailable):
        PostgresAccountLookup(link.dsn)(["anyone"])
    assert time.monotonic() - started < OUTAGE_S
