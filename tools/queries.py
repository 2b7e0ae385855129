"""The two sample queries over the fraud results: MongoDB ``$lookup`` and DuckDB over S3.

Both join each fraudulent transaction to its sender's and receiver's name, address and
email, and return the same columns (:data:`JOINED_FIELDS`), one row per transaction,
ordered by ``transaction_id``::

    from pymongo import MongoClient
    db = MongoClient(uri)["fraudulent_transactions_db"]
    rows = list(db.transactions.aggregate(fraud_lookup_pipeline()))

    rows = duckdb_fraud_rows("s3://riskpipe", ["--s3_endpoint_url=http://127.0.0.1:9000", ...])

DuckDB reads S3 through its ``httpfs`` extension, which it downloads on first use. Where
there is no internet (as on the build machine) :func:`duckdb_fraud_rows` first copies the
two folders to a temporary directory through Beam's filesystem (same flags as the job) and
runs the very same SQL over the local copy; with internet only the root differs (see
``docs/results-queries.md``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

__all__ = [
    "JOINED_FIELDS",
    "duckdb_fraud_rows",
    "fraud_lookup_pipeline",
    "fraud_lookup_sql",
    "mirror_prefix",
]

FRAUD_TOPIC = "fraudulent-transactions-result"
USERS_TOPIC = "users"
PARTY_FIELDS = ("name", "email", "address")
JOINED_FIELDS = (
    "transaction_id",
    "amount",
    "currency",
    "datetime_occurred",
    "validated_by",
    "sender_id",
    *(f"sender_{f}" for f in PARTY_FIELDS),
    "receiver_id",
    *(f"receiver_{f}" for f in PARTY_FIELDS),
)
# Where each party field lives in a `users` document.
_USER_FIELD = {"name": "account_name", "email": "email", "address": "address"}


def fraud_lookup_pipeline(users_collection: str = "users") -> list[dict]:
    """The aggregation over ``transactions`` that adds sender and receiver details.

    >>> [next(iter(stage)) for stage in fraud_lookup_pipeline()]
    ['$lookup', '$lookup', '$unwind', '$unwind', '$project', '$sort']
    """
    project = {
        "_id": 0,
        "transaction_id": 1,
        "amount": 1,
        "currency": 1,
        "datetime_occurred": 1,
        "validated_by": 1,
        "sender_id": 1,
        "receiver_id": 1,
    }
    for party in ("sender", "receiver"):
        for field in PARTY_FIELDS:
            project[f"{party}_{field}"] = f"${party}.{_USER_FIELD[field]}"
    return [
        {
            "$lookup": {
                "from": users_collection,
                "localField": "sender_id",
                "foreignField": "_id",
                "as": "sender",
            }
        },
        {
            "$lookup": {
                "from": users_collection,
                "localField": "receiver_id",
                "foreignField": "_id",
                "as": "receiver",
            }
        },
        {"$unwind": {"path": "$sender", "preserveNullAndEmptyArrays": True}},
        {"$unwind": {"path": "$receiver", "preserveNullAndEmptyArrays": True}},
        {"$project": project},
        {"$sort": {"transaction_id": 1}},
    ]


def fraud_lookup_sql(root: str) -> str:
    """DuckDB SQL joining the JSON-lines results under ``root`` (``s3://bucket`` or a dir).

    A transaction is one line of one object (that of its event time), so ``tx`` needs no
    deduplication. A user is in the object of each fraudulent transaction involving them,
    so several objects may hold them: a full document wins over an id-only one, then the
    latest hour.
    """
    columns = ",\n       ".join(
        [
            "t.transaction_id",
            "t.amount",
            "t.currency",
            "t.datetime_occurred",
            "t.validated_by",
            "t.sender_id",
        ]
        + [f"s.{_USER_FIELD[f]} AS sender_{f}" for f in PARTY_FIELDS]
        + ["t.receiver_id"]
        + [f"r.{_USER_FIELD[f]} AS receiver_{f}" for f in PARTY_FIELDS]
    )
    reader = (
        "read_json('{}/{}/*/*/*.jsonl', format = 'newline_delimited', "
        "hive_partitioning = true, union_by_name = true)"
    )
    return f"""
WITH tx AS (
  SELECT * FROM {reader.format(root, FRAUD_TOPIC)}
), users AS (
  SELECT * FROM {reader.format(root, USERS_TOPIC)}
  QUALIFY row_number() OVER (
    PARTITION BY account_id ORDER BY account_name IS NULL, dt DESC, hour DESC) = 1
)
SELECT {columns}
FROM tx AS t
LEFT JOIN users AS s ON s.account_id = t.sender_id
LEFT JOIN users AS r ON r.account_id = t.receiver_id
ORDER BY t.transaction_id
""".strip()


def mirror_prefix(prefix: str, dest: str | Path, filesystem_args: list[str] | None = None) -> int:
    """Copies every object under ``prefix`` (any Beam filesystem) into ``dest``; returns the count.

    Object keys keep their relative paths, so hive partitions (``dt=/hour=``) survive.
    """
    if filesystem_args is not None:
        FileSystems.set_options(PipelineOptions(filesystem_args))
    prefix = prefix.rstrip("/")
    matched = FileSystems.match([prefix + "/**"])[0].metadata_list
    for meta in matched:
        target = Path(dest) / os.path.relpath(meta.path, prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(meta.path) as source:
            target.write_bytes(source.read())
    return len(matched)


def duckdb_fraud_rows(root: str, filesystem_args: list[str] | None = None) -> list[dict]:
    """Runs :func:`fraud_lookup_sql` over the results under ``root``; rows as dicts.

    A local directory is read in place; anything else (``s3://bucket``) is first mirrored
    to a temporary directory with Beam's filesystem (no DuckDB ``httpfs`` needed).
    """
    import duckdb  # a query-time dependency only

    if "://" not in root:
        return _query(duckdb, root)
    with tempfile.TemporaryDirectory(prefix="riskpipe-results-") as local:
        for topic in (FRAUD_TOPIC, USERS_TOPIC):
            mirror_prefix(f"{root.rstrip('/')}/{topic}", Path(local) / topic, filesystem_args)
        return _query(duckdb, local)


def _query(duckdb, root: str) -> list[dict]:
    with duckdb.connect() as connection:
        cursor = connection.execute(fraud_lookup_sql(root))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


if __name__ == "__main__":
    raise SystemExit(
        "tools.queries is a library, not a command: it is used by the tests and docs/results-queries.md"
    )
