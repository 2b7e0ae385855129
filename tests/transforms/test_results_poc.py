"""The fraud results under the fraud PoC's field names, from a transfer of the PoC's shape."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipeline.records import Account, AttributedTransaction, Transaction
from pipeline.transforms.results import _UsersFn, fraud_result, user_document

from .pipelines import batch_pipeline

SENDER = Account(
    "u-1",
    "Ada",
    "ada@example.com",
    address="1 Road",
    birthdate=date(1980, 1, 2),
    phone_number="+1",
    job="Pilot",
    company="Air",
    bank="Harbor Trust",
    bank_account="DE02",
)
RECEIVER = Account("u-2", "Bo", "bo@example.com", bank_account="FR76")


def poc_record() -> AttributedTransaction:
    txn = Transaction(
        "tx-1",
        "u-1",
        "u-2",
        "transfer",
        2500.0,
        "EUR",
        "completed",
        datetime(2026, 3, 2, 13, 45, 7, 250000, tzinfo=UTC),
        "Harbor Trust",
        "unidentified",
        account_details=SENDER,
        counterparty_details=RECEIVER,
    )
    return AttributedTransaction(txn, "Ada", 65, ("large_amount: x (+20)",), True, "validator")


def test_a_fraud_result_carries_the_poc_field_names():
    doc = fraud_result(poc_record())
    poc_view = {
        k: doc[k]
        for k in (
            "transaction_id",
            "sender_bank_account",
            "receiver_bank_account",
            "amount",
            "status",
            "evaluation",
            "transfer_date",
            "sender_bank",
            "is_fraudulent_transaction",
        )
    }
    assert poc_view == {
        "transaction_id": "tx-1",
        "sender_bank_account": "DE02",
        "receiver_bank_account": "FR76",
        "amount": 2500.0,
        "status": "completed",
        "evaluation": "unidentified",
        "transfer_date": "2026-03-02 13:45:07",
        "sender_bank": "Harbor Trust",
        "is_fraudulent_transaction": True,
    }
    assert doc["sender_details"] == {
        "id": "u-1",
        "name": "Ada",
        "address": "1 Road",
        "email": "ada@example.com",
        "birthdate": "1980-01-02",
        "phone_number": "+1",
        "job": "Pilot",
        "company": "Air",
        "bank_account": "DE02",
    }
    assert doc["receiver_details"]["id"] == "u-2" and doc["receiver_details"]["name"] == "Bo"
    # riskpipe's own names stay beside them
    assert (doc["sender_id"], doc["receiver_id"], doc["is_fraudulent"]) == ("u-1", "u-2", True)
    assert "account_details" not in doc and "counterparty_details" not in doc
    json.dumps(doc)


def test_a_riskpipe_record_has_the_poc_names_it_can_fill():
    txn = Transaction(
        "t9",
        "a1",
        "a2",
        "payment",
        5.0,
        "USD",
        "pending",
        datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC),
        None,
        "fraudulent",
    )
    doc = fraud_result(AttributedTransaction(txn, "Ann", 90, (), True, "bank"))
    assert (doc["status"], doc["transfer_date"], doc["is_fraudulent_transaction"]) == (
        "pending",
        "2026-03-02 01:02:03",
        True,
    )
    assert doc["sender_details"] is None and doc["receiver_bank_account"] is None


def test_user_documents_carry_the_poc_names():
    doc = user_document("u-1", SENDER)
    assert (doc["id"], doc["name"], doc["account_id"], doc["account_name"]) == (
        "u-1",
        "Ada",
        "u-1",
        "Ada",
    )
    assert doc["bank_account"] == "DE02" and "balance" not in doc


def _refusing_lookup(ids):
    raise AssertionError(f"looked up {ids}: the transfer described both users")


def _refusing_lookup_factory():
    return _refusing_lookup


def test_users_of_a_transfer_come_from_the_transfer_itself():
    pipeline = batch_pipeline()
    users = pipeline | beam.Create([poc_record()]) | beam.ParDo(_UsersFn(_refusing_lookup_factory))
    assert_that(
        users | beam.MapTuple(lambda _at, u: (u["id"], u["name"], u["email"], u["bank"])),
        equal_to(
            [
                ("u-1", "Ada", "ada@example.com", "Harbor Trust"),
                ("u-2", "Bo", "bo@example.com", None),
            ]
        ),
    )
    pipeline.run().wait_until_finish()
