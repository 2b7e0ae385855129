"""PostgreSQL from the local stack: migrated schema, keys, and an upsert round trip."""

import psycopg2
import pytest

from stack.postgres import Postgres


@pytest.fixture
def connection(postgres_dsn):
    with psycopg2.connect(postgres_dsn) as conn:
        yield conn
    conn.close()


def test_select_one(connection):
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_tables_and_primary_keys_exist(connection):
    with connection.cursor() as cur:
        cur.execute("""
            SELECT tc.table_name, kcu.column_name
              FROM information_schema.table_constraints tc
              JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
             WHERE tc.table_schema = 'banking' AND tc.constraint_type = 'PRIMARY KEY'
        """)
        keys = dict(cur.fetchall())
    assert keys == {
        "accounts": "account_id",
        "attributed_transactions": "transaction_id",
    }


def test_migrations_are_recorded_and_applied_once(connection, postgres_dsn):
    with connection.cursor() as cur:
        cur.execute("SELECT version FROM public.schema_migrations")
        assert ("001_banking.sql",) in cur.fetchall()
    assert Postgres().migrate() == []


def test_account_upsert_round_trip(connection):
    upsert = """
        INSERT INTO banking.accounts (account_id, account_name, balance)
        VALUES (%s, %s, %s)
        ON CONFLICT (account_id) DO UPDATE
           SET account_name = EXCLUDED.account_name, balance = EXCLUDED.balance, updated_at = now()
    """
    with connection.cursor() as cur:
        cur.execute(upsert, ("stack-test-acc", "Ada", 10))
        cur.execute(upsert, ("stack-test-acc", "Ada Lovelace", 25.5))
        cur.execute(
            "SELECT account_name, balance FROM banking.accounts WHERE account_id = %s",
            ("stack-test-acc",),
        )
        rows = cur.fetchall()
        cur.execute(
            "DELETE FROM banking.accounts WHERE account_id = %s", ("stack-test-acc",)
        )
    assert [(name, float(balance)) for name, balance in rows] == [
        ("Ada Lovelace", 25.5)
    ]
