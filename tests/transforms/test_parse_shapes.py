"""ParseTransactions / ParseAccounts on the older systems' shapes: records, accounts, bad ones."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipeline.records import Account, KafkaRecord
from pipeline.transforms.parse import ParseAccounts, ParseTransactions

from .pipelines import batch_pipeline, run_and_count

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def user(uid: str, name: str, bank_account: str) -> dict:
    return {
        "id": uid,
        "name": name,
        "email": f"{uid}@example.com",
        "birthdate": "1980-01-02",
        "ssn": "000-00-0000",
        "blood_group": "A+",
        "website": "https://x.example/",
        "username": uid,
        "bank_account": bank_account,
    }


def transfer(tid: str, sender: dict, receiver: dict, **changes) -> bytes:
    message = {
        "transaction_id": tid,
        "sender_bank_account": sender["bank_account"],
        "sender_details": sender,
        "receiver_bank_account": receiver["bank_account"],
        "receiver_details": receiver,
        "amount": 10.0,
        "status": "completed",
        "evaluation": "fraudulent",
        "transfer_date": "2026-03-02 12:00:00",
        "sender_bank": "Bank S",
    }
    message.update(changes)
    return json.dumps(message).encode()


def kafka(topic: str, offset: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, 0, None, value)  # unkeyed, as both systems wrote


def account(uid: str, name: str, bank_account: str) -> Account:
    return Account(
        uid, name, email=f"{uid}@example.com", birthdate=date(1980, 1, 2),
        bank_account=bank_account,
    )


def test_a_transfer_yields_its_transaction_and_both_accounts():
    ada, bo = user("u1", "Ada", "IBAN-1"), user("u2", "Bo", "IBAN-2")
    pipeline = batch_pipeline()
    parsed = (
        pipeline
        | beam.Create(
            [
                kafka("bank-transactions", 0, transfer("t1", ada, bo)),
                kafka("bank-transactions", 1, transfer("t2", bo, ada, evaluation="legitimate")),
                kafka("bank-transactions", 2, transfer("t3", ada, ada)),
                kafka("bank-transactions", 3, transfer("t4", ada, bo, amount="ten")),
            ]
        )
        | "ParseTransactions" >> ParseTransactions(clock=lambda: NOW)
    )
    assert_that(
        parsed.records
        | beam.Map(
            lambda t: (t.transaction_id, t.account_id, t.counterparty_account_id, t.evaluation)
        ),
        equal_to(
            [
                ("t1", "u1", "u2", "fraudulent"),
                ("t2", "u2", "u1", "cleared"),
                ("t3", "u1", "u1", "fraudulent"),
            ]
        ),
    )
    assert_that(
        parsed.accounts,
        equal_to(
            [
                # the same account whether its user sends or receives
                account("u1", "Ada", "IBAN-1"),
                account("u2", "Bo", "IBAN-2"),
                account("u2", "Bo", "IBAN-2"),
                account("u1", "Ada", "IBAN-1"),
                account("u1", "Ada", "IBAN-1"),
            ]
        ),
        label="CheckAccounts",
    )
    assert_that(
        parsed.dead_letters | beam.Map(lambda d: (d.reason, d.step, d.offset)),
        equal_to([("poc transfer: amount: not a number ('ten')", "ParseTransactions", 3)]),
        label="CheckDeadLetters",
    )
    assert run_and_count(pipeline) == {
        "parsed": 3,
        "dead_lettered": 1,
        "accounts_from_transactions": 5,
    }


def test_flinksql_records_parse_and_bad_ones_name_their_shape():
    good = {
        "transaction_id": "t1",
        "account_id": "a1",
        "transaction_type": "Deposit",
        "amount": 150000.0,
        "currency": "VND",
        "transaction_status": "Pending",
        "datetime_occured": "2026-03-02 12:00:00",
    }
    pipeline = batch_pipeline()
    parsed = (
        pipeline
        | beam.Create(
            [
                kafka("bank_transactions", 0, json.dumps(good).encode()),
                kafka("bank_transactions", 1, json.dumps(dict(good, currency="XXX")).encode()),
            ]
        )
        | "ParseTransactions" >> ParseTransactions(clock=lambda: NOW, input_format="flinksql")
    )
    assert_that(
        parsed.records
        | beam.Map(
            lambda t: (
                t.transaction_type,
                t.transaction_status,
                t.evaluation,
                t.counterparty_account_id,
            )
        ),
        equal_to([("deposit", "pending", "unidentified", None)]),
    )
    assert_that(parsed.accounts, equal_to([]), label="NoAccounts")
    assert_that(
        parsed.dead_letters | beam.Map(lambda d: d.reason),
        equal_to(["flinksql transaction: currency: unknown ('XXX')"]),
        label="CheckDeadLetters",
    )
    pipeline.run().wait_until_finish()


def test_flinksql_accounts():
    message = {
        "account_id": "a1",
        "account_name": "An",
        "email": "an@example.vn",
        "account_type": "Corporate",
        "balance": 2000.0,
        "created_at": "2025-01-01 00:00:00",
    }
    with batch_pipeline() as pipeline:
        parsed = (
            pipeline
            | beam.Create([kafka("accounts", 0, json.dumps(message).encode())])
            | "ParseAccounts" >> ParseAccounts(clock=lambda: NOW, input_format="auto")
        )
        assert_that(
            parsed.records,
            equal_to(
                [
                    Account(
                        "a1",
                        "An",
                        "an@example.vn",
                        "business",
                        2000.0,
                        datetime(2025, 1, 1, tzinfo=UTC),
                    )
                ]
            ),
        )


def test_unknown_input_formats_are_refused():
    with pytest.raises(ValueError, match="input_format"):
        ParseTransactions(input_format="csv")
    with pytest.raises(ValueError, match="input_format"):
        ParseAccounts(input_format="FLINKSQL")
