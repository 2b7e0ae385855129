"""PostgreSQL IO: the attributed-transactions sink and the account lookup.

Write every scored transaction, upserting on ``transaction_id`` (a stored row gives way to
a version with the same or a later ``processed_at`` only)::

    scored | 'WriteToPostgres' >> WriteAttributedTransactions(dsn)

Look accounts up (batched, cached) when the join's state has none::

    lookup = PostgresAccountLookup(dsn)
    accounts = lookup(["acc-1", "acc-2"])   # {account_id: Account} for those found

Both open one connection per DoFn instance (on first use) and reconnect after a
connection error. A schema error (missing table or column) is not retried: it fails
with a message that says which migration to run.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Iterable, Optional

import apache_beam as beam
import orjson
import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pipeline.domain.vocabularies import account_type_word
from pipeline.errors import ConfigurationError, LookupUnavailable
from pipeline.io.batching import BatchingWriteFn
from pipeline.records import Account, AttributedTransaction

logger = logging.getLogger(__name__)

__all__ = ["PostgresAccountLookup", "WriteAttributedTransactions", "connect"]

# Errors worth another attempt: the server went away or refused us for a while.
RETRYABLE_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

ATTRIBUTED_COLUMNS = (
    "transaction_id", "account_id", "counterparty_account_id", "transaction_type",
    "amount", "currency", "transaction_status", "datetime_occurred", "sender_bank",
    "evaluation", "account_name", "risk_score", "risk_reasons", "is_fraudulent",
    "validated_by", "processed_at",
    # the account's fields the Flink SQL job's table carried (migration 003)
    "email", "account_type", "balance",
)

# The SQL type of each column, as a batch's JSON is read into rows (json_to_recordset).
_COLUMN_TYPES = {
    "amount": "numeric", "datetime_occurred": "timestamptz", "risk_score": "smallint",
    "risk_reasons": "text[]", "is_fraudulent": "boolean", "processed_at": "timestamptz",
    "balance": "numeric",
}
# A batch is one statement: its rows travel as one JSON array of objects (built by orjson,
# in C), which PostgreSQL reads into rows of the columns' types and upserts.
# A stored row is replaced by a version processed no earlier than it (a correction), never by
# an older one: a runner may hand a transaction's rows to the sink in another order than the
# join emitted them (Prism orders a step's input by timestamp).
UPSERT_SQL = (
    f"INSERT INTO banking.attributed_transactions ({', '.join(ATTRIBUTED_COLUMNS)}) "
    f"SELECT {', '.join(ATTRIBUTED_COLUMNS)} FROM json_to_recordset(%s::json) AS batch("
    + ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'text')}" for c in ATTRIBUTED_COLUMNS)
    + ") ON CONFLICT (transaction_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ATTRIBUTED_COLUMNS[1:])
    + " WHERE banking.attributed_transactions.processed_at IS NULL"
    " OR banking.attributed_transactions.processed_at <= EXCLUDED.processed_at"
)

ACCOUNT_COLUMNS = (
    "account_id", "account_name", "email", "account_type", "balance", "created_at",
    "address", "birthdate", "phone_number", "job", "company", "bank", "bank_account",
)

# Backoff of a patient lookup (see PostgresAccountLookup): 0.5 s, 1 s, 2 s, ... up to 10 s.
LOOKUP_INITIAL_BACKOFF_S = 0.5
LOOKUP_MAX_BACKOFF_S = 10.0
# How long the results' user lookup waits for PostgreSQL before failing the bundle.
RESULTS_LOOKUP_PATIENCE_S = 90.0

LOOKUP_SQL = (
    f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM banking.accounts WHERE account_id = ANY(%s)"
)


def connect(dsn: str, connect_timeout_s: int = 5):
    """Opens an autocommit-off connection; raises ConfigurationError on a bad DSN."""
    try:
        return psycopg2.connect(dsn, connect_timeout=connect_timeout_s)
    except psycopg2.ProgrammingError as error:
        raise ConfigurationError(f"postgres: invalid DSN {_redact(dsn)!r}: {error}") from error


def _redact(dsn: str) -> str:
    """Shows a DSN (URI or key=value) as ``user@host:port/dbname``: never its password.

    >>> _redact("postgresql://u:secret@db:5432/x?password=other")
    'u@db:5432/x'
    >>> _redact("host=db user=u password=secret dbname=x")
    'u@db:5432/x'
    """
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparsable DSN>"
    return (
        f"{parts.get('user', '')}@{parts.get('host', 'localhost')}:"
        f"{parts.get('port', '5432')}/{parts.get('dbname', '')}"
    )


def upsert_rows(cursor, rows: list[tuple]) -> None:
    """Upserts ``rows`` (tuples in ATTRIBUTED_COLUMNS order, one per transaction id) with one
    statement; the caller commits.

    One round trip, and little Python work while holding the GIL (orjson builds the text in
    C): the sink's writer thread shares the interpreter with the thread scoring the next
    records (README, "Changes of 2026-12-03").
    """
    cursor.execute(UPSERT_SQL, (_json_rows(rows),))


def _json_rows(rows: list[tuple]) -> str:
    """The batch as a JSON array of objects (None is null, a list a JSON array, a datetime
    ISO 8601 with its offset).

    >>> _json_rows([("t1", None, ["a \\"b\\"", "c"], 12.5)])[:60]
    '[{"transaction_id":"t1","account_id":null,"counterparty_acco'
    """
    return orjson.dumps([dict(zip(ATTRIBUTED_COLUMNS, row)) for row in rows]).decode()


def attributed_row(record: AttributedTransaction) -> tuple:
    """The row of banking.attributed_transactions for one record.

    The account's email, type and balance come from the account the join found, else from
    the transaction's own message (the fraud PoC's transfers describe their sender); NULL
    when neither is known.
    """
    t = record.transaction
    account = record.known_account
    email, account_type, balance = (
        (None, None, None) if account is None
        else (account.email, account.account_type, account.balance)
    )
    return (
        t.transaction_id, t.account_id, t.counterparty_account_id, t.transaction_type,
        t.amount, t.currency, t.transaction_status, t.datetime_occurred, t.sender_bank,
        t.evaluation, record.account_name, record.risk_score, list(record.risk_reasons),
        record.is_fraudulent, record.validated_by, record.processed_at,
        email, account_type, balance,
    )


class _UpsertAttributedFn(BatchingWriteFn):
    """Upserts AttributedTransactions, one statement per batch."""

    SINK = "postgres"
    RETRYABLE_ERRORS = RETRYABLE_ERRORS

    def __init__(self, dsn: str, batch_size: int):
        super().__init__(batch_size)
        self.dsn = dsn

    def open_client(self):
        return connect(self.dsn)

    def close_client(self, client):
        client.close()

    def write_batch(self, client, batch):
        # One statement may not touch a row twice: keep the newest version of each id (of
        # equal ones, the last).
        latest: dict[str, AttributedTransaction] = {}
        for record in batch:
            kept = latest.get(record.transaction_id)
            if kept is None or not record.version < kept.version:
                latest[record.transaction_id] = record
        rows = [attributed_row(record) for record in latest.values()]
        try:
            with client.cursor() as cursor:
                upsert_rows(cursor, rows)
            client.commit()
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn) as error:
            client.rollback()
            raise ConfigurationError(
                "postgres: banking.attributed_transactions does not match the pipeline "
                f"({error.pgerror.strip()}); apply migrations/ with `make up`"
            ) from error
        except RETRYABLE_ERRORS:
            raise
        except psycopg2.Error:
            client.rollback()
            raise


class WriteAttributedTransactions(beam.PTransform):
    """Writes AttributedTransactions to banking.attributed_transactions (upsert)."""

    def __init__(self, dsn: str, batch_size: int = 1000):
        super().__init__()
        if not dsn:
            raise ValueError("WriteAttributedTransactions: dsn must not be empty")
        self.dsn = dsn
        self.batch_size = batch_size

    def expand(self, records):
        return records | "UpsertRows" >> beam.ParDo(_UpsertAttributedFn(self.dsn, self.batch_size))


class PostgresAccountLookup:
    """Finds accounts in banking.accounts by id, with an LRU cache of found accounts.

    A callable ``lookup(account_ids) -> {account_id: Account}``; ids not in the table are
    absent from the result (and not cached, so an account written later is found later).
    When PostgreSQL cannot be reached it retries with backoff for ``patience_s`` seconds
    (at least three attempts), then raises LookupUnavailable. The join and the validator
    use no patience (an unknown account is "not found for now"); the user documents of the
    results wait out a database restart, since failing there restarts the job.
    Instances are cheap to pickle: the connection opens on first use.
    """

    def __init__(self, dsn: str, cache_size: int = 100_000, patience_s: float = 0.0):
        self.dsn = dsn
        self.cache_size = cache_size
        self.patience_s = patience_s
        self._cache: OrderedDict[str, Account] = OrderedDict()
        self._conn = None

    def __getstate__(self):
        return {"dsn": self.dsn, "cache_size": self.cache_size, "patience_s": self.patience_s}

    def __setstate__(self, state):
        self.__init__(state["dsn"], state["cache_size"], state.get("patience_s", 0.0))

    def __call__(self, account_ids: Iterable[str]) -> dict[str, Account]:
        wanted = list(dict.fromkeys(account_ids))
        found = {i: self._cache[i] for i in wanted if i in self._cache}
        missing = [i for i in wanted if i not in found]
        if missing:
            for account in self._query(missing):
                found[account.account_id] = account
                self._remember(account)
        for account_id in found:
            if account_id in self._cache:
                self._cache.move_to_end(account_id)
        return found

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _remember(self, account: Account) -> None:
        self._cache[account.account_id] = account
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _query(self, account_ids: list[str], min_attempts: int = 3) -> list[Account]:
        give_up_at = time.monotonic() + self.patience_s
        backoff = LOOKUP_INITIAL_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.dsn)
                    # One statement, one round trip: no BEGIN before it, no ROLLBACK after.
                    self._conn.autocommit = True
                with self._conn.cursor() as cursor:
                    cursor.execute(LOOKUP_SQL, (account_ids,))
                    rows = cursor.fetchall()
                return [_account(row) for row in rows]
            except RETRYABLE_ERRORS as error:
                logger.warning("postgres lookup failed (attempt %d): %s", attempt, error)
                self.close()
                if attempt >= min_attempts and time.monotonic() + backoff > give_up_at:
                    raise LookupUnavailable(f"postgres account lookup failed: {error}") from error
                if self.patience_s > 0:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, LOOKUP_MAX_BACKOFF_S)


def _account(row: tuple) -> Account:
    """The Account of a banking.accounts row, its type in riskpipe's words (the Flink SQL
    system's producers filled the table with theirs: ``Personal`` is ``checking``)."""
    values = dict(zip(ACCOUNT_COLUMNS, _plain(row)))
    values["account_type"] = account_type_word(values["account_type"])
    return Account(**values)


def _plain(row: tuple) -> tuple:
    """Turns NUMERIC values into floats so records stay JSON-friendly."""
    return tuple(float(v) if v.__class__.__name__ == "Decimal" else v for v in row)


def lookup_factory(dsn: str, cache_size: int = 100_000, patience_s: float = 0.0):
    """Returns a zero-argument factory building a PostgresAccountLookup on a worker."""

    def build() -> Optional[PostgresAccountLookup]:
        return PostgresAccountLookup(dsn, cache_size, patience_s)

    return build
