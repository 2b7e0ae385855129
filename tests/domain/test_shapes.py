"""Recognising a message's shape, and the reasons of messages that fit none."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.domain.shapes import (
    INPUT_FORMATS,
    account_parser,
    account_shape,
    transaction_parser,
    transaction_shape,
)
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

from .test_flinksql import ACCOUNT as FLINKSQL_ACCOUNT
from .test_flinksql import TRANSACTION as FLINKSQL_TRANSACTION
from .test_poc import TRANSFER

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RISKPIPE_TRANSACTION = {
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
RISKPIPE_ACCOUNT = {
    "account_id": "a1",
    "account_name": "Ada Lovelace",
    "account_type": "checking",
    "balance": 5000,
    "created_at": "2020-01-01T00:00:00Z",
}


def without(obj: dict, *keys: str) -> dict:
    return {k: v for k, v in obj.items() if k not in keys}


@pytest.mark.parametrize(
    "obj, shape",
    [
        (RISKPIPE_TRANSACTION, "riskpipe"),
        (without(RISKPIPE_TRANSACTION, "evaluation"), "riskpipe"),
        (without(RISKPIPE_TRANSACTION, "datetime_occurred"), "riskpipe"),
        (without(RISKPIPE_TRANSACTION, "datetime_occurred", "evaluation"), "riskpipe"),
        (FLINKSQL_TRANSACTION, "flinksql"),
        (without(FLINKSQL_TRANSACTION, "datetime_occured"), "flinksql"),
        (dict(FLINKSQL_TRANSACTION, evaluation="cleared"), "flinksql"),
        (TRANSFER, "poc"),
        (without(TRANSFER, "transfer_date", "sender_details"), "poc"),
        ({"transfer_date": "2026-01-01"}, "poc"),
        ({}, "riskpipe"),
        ({"hello": "world"}, "riskpipe"),
        ({"amount": 5}, "flinksql"),
        (dict(TRANSFER, datetime_occurred="2026-03-02T14:00:00Z"), "riskpipe"),
    ],
)
def test_transaction_shapes(obj, shape):
    assert transaction_shape(obj) == shape


@pytest.mark.parametrize(
    "obj, shape",
    [
        (RISKPIPE_ACCOUNT, "riskpipe"),
        (FLINKSQL_ACCOUNT, "flinksql"),
        (dict(FLINKSQL_ACCOUNT, account_type="CORPORATE"), "flinksql"),
        (dict(FLINKSQL_ACCOUNT, account_type="Savings"), "riskpipe"),
        (dict(FLINKSQL_ACCOUNT, account_type="Investment"), "riskpipe"),
        ({"id": "u1", "name": "Ann"}, "poc"),
        ({"id": "u1", "account_id": "a1"}, "riskpipe"),
        ({"account_type": 5}, "riskpipe"),
    ],
)
def test_account_shapes(obj, shape):
    assert account_shape(obj) == shape


def test_savings_and_investment_accounts_read_the_same_in_either_shape():
    for kind, expected in (("Savings", "savings"), ("INVESTMENT", "investment")):
        data = json.dumps(dict(FLINKSQL_ACCOUNT, account_type=kind)).encode()
        read = {f: account_parser(f)(data, now=NOW) for f in ("auto", "riskpipe", "flinksql")}
        assert {a.account_type for a in read.values()} == {expected}
        assert len(set(read.values())) == 1


@pytest.mark.parametrize(
    "obj, reason",
    [
        (dict(RISKPIPE_TRANSACTION, amount="x"), "amount: not a number ('x')"),
        (without(RISKPIPE_TRANSACTION, "evaluation"), "evaluation: missing"),
        (without(RISKPIPE_TRANSACTION, "datetime_occurred"), "datetime_occurred: missing"),
        (
            dict(FLINKSQL_TRANSACTION, amount="x"),
            "flinksql transaction: amount: not a number ('x')",
        ),
        (
            without(FLINKSQL_TRANSACTION, "datetime_occured"),
            "flinksql transaction: datetime_occured: missing",
        ),
        (
            dict(FLINKSQL_TRANSACTION, transaction_type="payment"),
            "flinksql transaction: transaction_type: unknown ('payment')",
        ),
        (dict(TRANSFER, amount="x"), "poc transfer: amount: not a number ('x')"),
        (without(TRANSFER, "transfer_date"), "poc transfer: transfer_date: missing"),
        ({"transfer_date": "2026-01-01 00:00:00"}, "poc transfer: transaction_id: missing"),
        ({}, "transaction_id: missing"),
        ({"hello": "world"}, "transaction_id: missing"),
        ({"transaction_id": "t1", "amount": 5}, "flinksql transaction: account_id: missing"),
    ],
)
def test_a_record_that_fits_no_shape_says_which_one_it_came_closest_to(obj, reason):
    with pytest.raises(InvalidRecord) as caught:
        transaction_parser("auto")(json.dumps(obj).encode(), now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "input_format, obj, reason",
    [
        ("poc", RISKPIPE_TRANSACTION, "poc transfer: sender_bank_account: missing"),
        ("poc", FLINKSQL_TRANSACTION, "poc transfer: sender_bank_account: missing"),
        ("flinksql", TRANSFER, "flinksql transaction: account_id: missing"),
        ("riskpipe", TRANSFER, "account_id: missing"),
        ("riskpipe", FLINKSQL_TRANSACTION, "datetime_occurred: missing"),
    ],
)
def test_a_given_format_judges_every_message_by_its_rules(input_format, obj, reason):
    with pytest.raises(InvalidRecord) as caught:
        transaction_parser(input_format)(json.dumps(obj).encode(), now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "payload, reason",
    [
        (None, "payload: missing"),
        (b"{", "payload: not JSON (Expecting property name enclosed in double quotes at 1)"),
        (b"\xff", "payload: not UTF-8 (byte 0)"),
        (b"[]", "payload: not a JSON object (list)"),
    ],
)
def test_payload_reasons_are_the_same_in_every_format(payload, reason):
    for input_format in INPUT_FORMATS:
        for parser in (transaction_parser(input_format), account_parser(input_format)):
            with pytest.raises(InvalidRecord) as caught:
                parser(payload, now=NOW)
            assert caught.value.reason == reason


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"transaction_type": "PAYMENT"}, {"transaction_type": "payment"}),
        ({"transaction_type": "Withdrawal"}, {"transaction_type": "withdrawal"}),
        ({"transaction_status": "Pending"}, {"transaction_status": "pending"}),
        ({"evaluation": "FRAUDULENT"}, {"evaluation": "fraudulent"}),
        ({"evaluation": "Cleared"}, {"evaluation": "cleared"}),
    ],
)
def test_riskpipe_vocabularies_match_in_any_case(changes, expected):
    for input_format in ("auto", "riskpipe"):
        parsed = transaction_parser(input_format)(
            json.dumps(dict(RISKPIPE_TRANSACTION, **changes)).encode(), now=NOW
        )
        assert {k: getattr(parsed, k) for k in expected} == expected


def test_riskpipe_account_types_match_in_any_case():
    for kind, expected in (
        ("Checking", "checking"),
        ("CREDIT", "credit"),
        ("Business", "business"),
    ):
        parsed = account_parser("auto")(
            json.dumps(dict(RISKPIPE_ACCOUNT, account_type=kind)).encode(), now=NOW
        )
        assert parsed.account_type == expected


def test_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="input_format: unknown \\('xml'\\)"):
        transaction_parser("xml")
    with pytest.raises(ValueError, match="input_format"):
        account_parser("")


ALL_KEYS = sorted(
    set(RISKPIPE_TRANSACTION)
    | set(FLINKSQL_TRANSACTION)
    | set(TRANSFER)
    | set(RISKPIPE_ACCOUNT)
    | set(FLINKSQL_ACCOUNT)
    | {"id", "name"}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(500), deadline=None)
@given(st.dictionaries(st.sampled_from(ALL_KEYS), json_values), st.sampled_from(INPUT_FORMATS))
def test_hostile_objects_of_every_shape_only_raise_invalid_record(obj, input_format):
    data = json.dumps(obj).encode()
    for parser, kind in (
        (transaction_parser(input_format), Transaction),
        (account_parser(input_format), Account),
    ):
        try:
            assert isinstance(parser(data, now=NOW), kind)
        except InvalidRecord as exc:
            assert exc.reason and "\n" not in exc.reason.split(" (")[0]


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=200), st.sampled_from(INPUT_FORMATS))
def test_arbitrary_bytes_only_raise_invalid_record(payload, input_format):
    for parser in (transaction_parser(input_format), account_parser(input_format)):
        try:
            parser(payload, now=NOW)
        except InvalidRecord:
            pass
