"""Malformed messages for the transactions topic, so the dead-letter path can be tested.

Each bad message starts from a valid transaction (drawn like any other, so it has a
``transaction_id`` and an ``account_id`` and its Kafka key is that account) and breaks it in
one way. Where the way allows it the payload still carries the ``transaction_id`` so a
dead letter can be matched to its ground-truth row by id; every ground-truth row also has
``payload_sha256``, which matches the dead letter's payload bytes whatever the kind.

| kind               | payload                                               | id recoverable |
|--------------------|-------------------------------------------------------|----------------|
| not_json           | ``transaction_id=...;amount=...`` text                | yes (text)     |
| binary             | bytes that are not UTF-8                              | no             |
| truncated_json     | the JSON object cut in half                           | yes (text)     |
| missing_field      | valid JSON without one required field                 | yes*           |
| negative_amount    | ``"amount": -12.5``                                   | yes            |
| nan_amount         | ``"amount": NaN`` (not strict JSON)                   | yes (text)     |
| unknown_currency   | e.g. ``"currency": "ZZZ"``                            | yes            |
| bad_timestamp      | e.g. ``"datetime_occurred": "2026-02-30T10:00:00Z"``  | yes            |
| unknown_type       | ``"transaction_type": "teleport"``                    | yes            |
| oversized          | valid JSON padded with a ``note`` of OVERSIZED_BYTES  | yes            |

(*) unless the missing field is ``transaction_id`` itself.
The pipeline's parser must reject payloads larger than its limit (suggested 64 KiB); an
oversized message is otherwise a valid transaction.

The field names above are riskpipe's; :class:`BadFields` names them in another record shape
(``simulator.formats``), and a kind whose field the shape lacks (the PoC's transfers have
no currency and no type) is not drawn for it (:func:`kinds_for`).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import NamedTuple

__all__ = ["BAD_KINDS", "OVERSIZED_BYTES", "BadFields", "corrupt", "kinds_for"]

BAD_KINDS = (
    "not_json",
    "binary",
    "truncated_json",
    "missing_field",
    "negative_amount",
    "nan_amount",
    "unknown_currency",
    "bad_timestamp",
    "unknown_type",
    "oversized",
)
# Below Kafka's default 1 MB message limit, far above any sane transaction (~400 bytes).
OVERSIZED_BYTES = 256 * 1024
REQUIRED_FIELDS = (
    "transaction_id",
    "account_id",
    "transaction_type",
    "amount",
    "currency",
    "transaction_status",
    "datetime_occurred",
    "evaluation",
)
UNKNOWN_CURRENCIES = ("ZZZ", "BTC", "EURO", "")
BAD_TIMESTAMPS = ("not-a-date", "2026-02-30T10:00:00+00:00", "", "31/12/2025 25:61")


class BadFields(NamedTuple):
    """Where a record shape keeps what a bad message breaks (``None``: it has no such field)."""

    required: tuple[str, ...] = REQUIRED_FIELDS
    amount: str = "amount"
    currency: str | None = "currency"
    timestamp: str = "datetime_occurred"
    bad_timestamps: tuple[str, ...] = BAD_TIMESTAMPS
    transaction_type: str | None = "transaction_type"
    unknown_type: str = "teleport"


RISKPIPE_FIELDS = BadFields()


def kinds_for(fields: BadFields) -> tuple[str, ...]:
    """The bad kinds that apply to a shape.

    >>> len(kinds_for(BadFields())) == len(BAD_KINDS)
    True
    >>> "unknown_currency" in kinds_for(BadFields(currency=None))
    False
    """
    missing = {
        "unknown_currency": fields.currency is None,
        "unknown_type": fields.transaction_type is None,
    }
    return tuple(k for k in BAD_KINDS if not missing.get(k, False))


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def corrupt(
    record: dict, kind: str, rng: random.Random, fields: BadFields = RISKPIPE_FIELDS
) -> tuple[bytes, dict]:
    """Breaks a transaction's JSON form in the way ``kind`` names.

    ``fields`` names the record's fields when it is not in riskpipe's shape.

    Returns:
        The payload bytes, and the ground-truth details (``bad``, ``transaction_id`` as
        generated, ``id_in_payload``, ``payload_sha256``, plus ``field`` where one is broken).
    """
    record = dict(record)
    detail: dict = {}
    if kind == "not_json":
        payload = ";".join(f"{k}={v}" for k, v in record.items()).encode()
    elif kind == "binary":
        payload = b"\xff\xfe\x00" + rng.randbytes(rng.randint(8, 64))
    elif kind == "truncated_json":
        text = _dumps(record)
        payload = text[: rng.randint(len(text) // 3, len(text) - 2)]
    elif kind == "missing_field":
        detail["field"] = rng.choice(fields.required)
        del record[detail["field"]]
        payload = _dumps(record)
    elif kind == "negative_amount":
        record[fields.amount] = -abs(record[fields.amount]) or -1.0
        payload = _dumps(record)
    elif kind == "nan_amount":
        record[fields.amount] = float("nan")
        payload = _dumps(record)
    elif kind == "unknown_currency" and fields.currency:
        record[fields.currency] = rng.choice(UNKNOWN_CURRENCIES)
        payload = _dumps(record)
    elif kind == "bad_timestamp":
        record[fields.timestamp] = rng.choice(fields.bad_timestamps)
        payload = _dumps(record)
    elif kind == "unknown_type" and fields.transaction_type:
        record[fields.transaction_type] = fields.unknown_type
        payload = _dumps(record)
    elif kind == "oversized":
        record["note"] = "x" * OVERSIZED_BYTES
        payload = _dumps(record)
    else:
        raise ValueError(
            f"corrupt: unknown bad kind {kind!r}; expected one of {kinds_for(fields)}"
        )
    transaction_id = record.get("transaction_id")
    detail.update(
        bad=kind,
        id_in_payload=bool(transaction_id) and transaction_id.encode() in payload,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
    )
    return payload, detail
