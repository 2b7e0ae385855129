"""Tests of record parsing: good payloads, every dead-letter reason, and the PTransforms."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.errors import InvalidRecord, RiskpipeError
from pipeline.records import Account, DeadLetter, KafkaRecord, Transaction
from pipeline.domain.parsing import MAX_PAYLOAD_BYTES, parse_account, parse_transaction
from pipeline.transforms.parse import ParseAccounts, ParseTransactions

from .pipelines import batch_pipeline, run_and_count

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
GOOD_TRANSACTION = {
    "transaction_id": "t1",
    "account_id": "a1",
    "counterparty_account_id": "a2",
    "transaction_type": "payment",
    "amount": 40.0,
    "currency": "EUR",
    "transaction_status": "completed",
    "datetime_occurred": "2026-03-02T14:00:00+00:00",
    "sender_bank": "Bank A",
    "evaluation": "unidentified",
}
GOOD_ACCOUNT = {
    "account_id": "a1",
    "account_name": "Ada Lovelace",
    "email": "ada@example.com",
    "account_type": "checking",
    "balance": 5000,
    "created_at": "2020-01-01T00:00:00Z",
    "birthdate": "1990-12-10",
}


def encode(obj) -> bytes:
    return json.dumps(obj).encode()


def txn_payload(**changes) -> bytes:
    obj = dict(GOOD_TRANSACTION, **changes)
    return encode({k: v for k, v in obj.items() if v is not ...})


def test_parses_a_good_transaction():
    parsed = parse_transaction(encode(GOOD_TRANSACTION), now=NOW)
    assert parsed == Transaction.from_dict(GOOD_TRANSACTION)
    assert parsed.datetime_occurred == datetime(2026, 3, 2, 14, tzinfo=UTC)


def test_accepts_numeric_strings_naive_and_zulu_timestamps_and_unknown_keys():
    parsed = parse_transaction(
        txn_payload(amount="1e3", datetime_occurred="2026-03-02T14:00:00", extra=[1]), now=NOW
    )
    assert parsed.amount == 1000.0
    assert parsed.datetime_occurred.tzinfo is not None
    zulu = parse_transaction(txn_payload(datetime_occurred="2026-03-02T14:00:00Z"), now=NOW)
    assert zulu.datetime_occurred == parsed.datetime_occurred


def test_optional_transaction_fields_may_be_absent_or_null():
    parsed = parse_transaction(txn_payload(counterparty_account_id=..., sender_bank=None), NOW)
    assert parsed.counterparty_account_id is None and parsed.sender_bank is None


def test_converts_offsets_to_utc():
    parsed = parse_transaction(txn_payload(datetime_occurred="2026-03-02T16:00:00+02:00"), NOW)
    assert parsed.datetime_occurred == datetime(2026, 3, 2, 14, tzinfo=UTC)


def test_parses_a_good_account():
    parsed = parse_account(encode(GOOD_ACCOUNT), now=NOW)
    assert parsed == Account.from_dict(GOOD_ACCOUNT)
    assert parse_account(b'{"account_id": "a2", "account_name": "B"}', NOW).balance == 0.0


@pytest.mark.parametrize(
    "payload, reason",
    [
        (None, "payload: missing"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), f"payload: too large ({MAX_PAYLOAD_BYTES + 1} bytes)"),
        (b'{"a": "\xff"}', "payload: not UTF-8 (byte 7)"),
        (b"{", "payload: not JSON (Expecting property name enclosed in double quotes at 1)"),
        (b"", "payload: not JSON (Expecting value at 0)"),
        (b"[1, 2]", "payload: not a JSON object (list)"),
        (b"[" * 60000, "payload: not JSON (RecursionError)"),
        (b'"text"', "payload: not a JSON object (str)"),
        (txn_payload(transaction_id=...), "transaction_id: missing"),
        (txn_payload(account_id=None), "account_id: missing"),
        (txn_payload(transaction_id=""), "transaction_id: empty"),
        (txn_payload(account_id="   "), "account_id: empty"),
        (txn_payload(account_id="a" * 129), "account_id: too long (129 chars)"),
        (txn_payload(account_id="a\nb"), "account_id: control characters ('a\\nb')"),
        (txn_payload(account_id=42), "account_id: not a string (int)"),
        (
            txn_payload(counterparty_account_id="\x00"),
            "counterparty_account_id: control characters ('\\x00')",
        ),
        (txn_payload(amount=...), "amount: missing"),
        (txn_payload(amount=True), "amount: not a number (bool)"),
        (txn_payload(amount=[1]), "amount: not a number (list)"),
        (txn_payload(amount="12,50"), "amount: not a number ('12,50')"),
        (txn_payload(amount="NaN"), "amount: not a number ('NaN')"),
        (txn_payload(amount=" 12"), "amount: not a number (' 12')"),
        (txn_payload(amount=float("nan")), "amount: not a finite number (nan)"),
        (txn_payload(amount=float("inf")), "amount: not a finite number (inf)"),
        (txn_payload(amount=10**400), "amount: not a finite number (inf)"),
        (txn_payload(amount="1e400"), "amount: not a finite number (inf)"),
        (txn_payload(amount=-5), "amount: not positive (-5.0)"),
        (txn_payload(amount=0), "amount: not positive (0.0)"),
        (txn_payload(amount=2e9), "amount: too large (2000000000.0 EUR)"),
        (txn_payload(currency="XYZ"), "currency: unknown ('XYZ')"),
        (txn_payload(currency="eur"), "currency: unknown ('eur')"),
        (txn_payload(currency=978), "currency: not a string (int)"),
        (
            txn_payload(datetime_occurred="yesterday"),
            "datetime_occurred: not an ISO-8601 timestamp ('yesterday')",
        ),
        (txn_payload(datetime_occurred=1767225600), "datetime_occurred: not a string (int)"),
        (
            txn_payload(datetime_occurred="1999-12-31T23:59:59Z"),
            "datetime_occurred: before 2000 ('1999-12-31T23:59:59Z')",
        ),
        (
            txn_payload(datetime_occurred="2026-03-03T15:00:01Z"),
            "datetime_occurred: in the future ('2026-03-03T15:00:01Z')",
        ),
        (
            txn_payload(datetime_occurred="9999-12-31T23:59:59-14:00"),
            "datetime_occurred: out of range ('9999-12-31T23:59:59-14:00')",
        ),
        (txn_payload(evaluation="maybe"), "evaluation: unknown ('maybe')"),
        (txn_payload(transaction_type="refund"), "transaction_type: unknown ('refund')"),
        (txn_payload(transaction_status="done"), "transaction_status: unknown ('done')"),
        (txn_payload(sender_bank=5), "sender_bank: not a string (int)"),
        (txn_payload(sender_bank="b" * 513), "sender_bank: too long (513 chars)"),
        # JSON can escape a lone surrogate; no sink can encode one.
        (
            txn_payload(sender_bank="E\udfd9"),
            "sender_bank: lone surrogate, not valid unicode ('E\\udfd9')",
        ),
        (
            txn_payload(transaction_id="t\ud800"),
            "transaction_id: lone surrogate, not valid unicode ('t\\ud800')",
        ),
    ],
)
def test_rejects_bad_transactions_with_a_stable_reason(payload, reason):
    with pytest.raises(InvalidRecord) as caught:
        parse_transaction(payload, now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"account_name": None}, "account_name: missing"),
        ({"account_name": " "}, "account_name: empty"),
        ({"account_type": "gold"}, "account_type: unknown ('gold')"),
        ({"balance": "abc"}, "balance: not a number ('abc')"),
        ({"balance": 1e13}, "balance: too large (10000000000000.0)"),
        (
            {"created_at": "2027-01-01T00:00:00Z"},
            "created_at: in the future ('2027-01-01T00:00:00Z')",
        ),
        ({"birthdate": "10/12/1990"}, "birthdate: not an ISO-8601 date ('10/12/1990')"),
        ({"birthdate": "1850-01-01"}, "birthdate: before 1900 ('1850-01-01')"),
        ({"email": {"a": 1}}, "email: not a string (dict)"),
        ({"account_name": "\udc00x"}, "account_name: lone surrogate, not valid unicode ('\\udc00x')"),
    ],
)
def test_rejects_bad_accounts_with_a_stable_reason(changes, reason):
    with pytest.raises(InvalidRecord) as caught:
        parse_account(encode(dict(GOOD_ACCOUNT, **changes)), now=NOW)
    assert caught.value.reason == reason


def test_negative_balances_are_accepted():
    assert parse_account(encode(dict(GOOD_ACCOUNT, balance=-250.5)), NOW).balance == -250.5


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_record(payload):
    for parse in (parse_transaction, parse_account):
        try:
            parse(payload, now=NOW)
        except InvalidRecord:
            pass


@settings(max_examples=examples(500), deadline=None)
@given(st.sampled_from(sorted(GOOD_TRANSACTION) + sorted(GOOD_ACCOUNT)), json_values)
def test_any_single_bad_field_only_raises_invalid_record(field, value):
    for good, parse in ((GOOD_TRANSACTION, parse_transaction), (GOOD_ACCOUNT, parse_account)):
        payload = json.dumps(dict(good, **{field: value})).encode()
        try:
            assert isinstance(parse(payload, now=NOW), (Transaction, Account))
        except InvalidRecord as exc:
            assert isinstance(exc, RiskpipeError) and exc.reason.startswith(f"{field}: ")


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GOOD_TRANSACTION)), json_values))
def test_arbitrary_json_objects_only_raise_invalid_record(obj):
    try:
        parse_transaction(json.dumps(obj).encode(), now=NOW)
    except InvalidRecord:
        pass


def kafka(offset: int, value) -> KafkaRecord:
    return KafkaRecord("transactions", 3, offset, 0, b"a1", value)


def test_parse_transactions_splits_records_and_dead_letters():
    good, bad = encode(GOOD_TRANSACTION), txn_payload(amount=-1)
    pipeline = batch_pipeline()
    parsed = (
        pipeline
        | beam.Create([kafka(7, good), kafka(8, bad), kafka(9, None)])
        | "ParseTransactions" >> ParseTransactions(clock=lambda: NOW)
    )
    assert_that(parsed.records, equal_to([Transaction.from_dict(GOOD_TRANSACTION)]))
    assert_that(
        parsed.dead_letters,
        equal_to(
            [
                DeadLetter(
                    bad, "amount: not positive (-1.0)", "ParseTransactions", "transactions", 3, 8
                ),
                DeadLetter(None, "payload: missing", "ParseTransactions", "transactions", 3, 9),
            ]
        ),
        label="CheckDeadLetters",
    )
    assert run_and_count(pipeline) == {"parsed": 1, "dead_lettered": 2}


def test_parse_accounts_uses_its_label_as_the_step():
    with batch_pipeline() as pipeline:
        parsed = (
            pipeline
            | beam.Create([KafkaRecord("accounts", 0, 1, 0, None, b"{}")])
            | "ParseAccounts" >> ParseAccounts()
        )
        assert_that(parsed.records, equal_to([]))
        assert_that(
            parsed.dead_letters | beam.Map(lambda d: (d.step, d.reason, d.offset)),
            equal_to([("ParseAccounts", "account_id: missing", 1)]),
            label="CheckDeadLetters",
        )


def test_parse_transforms_reject_bad_arguments():
    with pytest.raises(ValueError):
        ParseTransactions(clock="now")
