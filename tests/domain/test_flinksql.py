"""The Flink SQL risk job's records (shape A) read into riskpipe's records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.domain.shapes import account_parser, transaction_parser
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TRANSACTION = {
    "transaction_id": "0f8d7c1e-5b7a-4e0e-9a57-1f2a3b4c5d6e",
    "account_id": "7c2e9f4a-1111-4a2b-8c3d-000000000001",
    "transaction_type": "Withdrawal",
    "amount": 1520.75,
    "currency": "USD",
    "transaction_status": "Completed",
    "datetime_occured": "2026-03-02 14:05:09",
}
ACCOUNT = {
    "account_id": "7c2e9f4a-1111-4a2b-8c3d-000000000001",
    "account_name": "Nguyen Van An",
    "email": "an.nguyen@example.vn",
    "account_type": "Personal",
    "balance": 45210.5,
    "created_at": "2024-11-20 08:30:00",
}
FORMATS = ("auto", "flinksql")


def payload(obj: dict, **changes) -> bytes:
    merged = dict(obj, **changes)
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


def cases(word: str) -> list[str]:
    return sorted(
        {word, word.lower(), word.upper(), word.title(), word[:1].lower() + word[1:].upper()}
    )


def parse_txn(data: bytes, input_format: str = "auto") -> Transaction:
    return transaction_parser(input_format)(data, now=NOW)


def parse_acc(data: bytes, input_format: str = "auto") -> Account:
    return account_parser(input_format)(data, now=NOW)


@pytest.mark.parametrize("input_format", FORMATS)
def test_every_field_of_a_transaction(input_format):
    assert parse_txn(payload(TRANSACTION), input_format) == Transaction(
        transaction_id="0f8d7c1e-5b7a-4e0e-9a57-1f2a3b4c5d6e",
        account_id="7c2e9f4a-1111-4a2b-8c3d-000000000001",
        counterparty_account_id=None,
        transaction_type="withdrawal",
        amount=1520.75,
        currency="USD",
        transaction_status="completed",
        datetime_occurred=datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC),
        sender_bank=None,
        evaluation="unidentified",
    )


@pytest.mark.parametrize("input_format", FORMATS)
def test_every_field_of_an_account(input_format):
    assert parse_acc(payload(ACCOUNT), input_format) == Account(
        account_id="7c2e9f4a-1111-4a2b-8c3d-000000000001",
        account_name="Nguyen Van An",
        email="an.nguyen@example.vn",
        account_type="checking",
        balance=45210.5,
        created_at=datetime(2024, 11, 20, 8, 30, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "word, expected",
    [
        (spelling, expected)
        for word, expected in (
            ("Deposit", "deposit"),
            ("Withdrawal", "withdrawal"),
            ("Transfer", "transfer"),
        )
        for spelling in cases(word)
    ],
)
def test_transaction_types_in_any_case(word, expected):
    for input_format in FORMATS:
        assert (
            parse_txn(payload(TRANSACTION, transaction_type=word), input_format).transaction_type
            == expected
        )


@pytest.mark.parametrize(
    "word, expected",
    [
        (spelling, expected)
        for word, expected in (
            ("Pending", "pending"),
            ("Completed", "completed"),
            ("Failed", "failed"),
        )
        for spelling in cases(word)
    ],
)
def test_statuses_in_any_case(word, expected):
    for input_format in FORMATS:
        assert (
            parse_txn(
                payload(TRANSACTION, transaction_status=word), input_format
            ).transaction_status
            == expected
        )


@pytest.mark.parametrize(
    "word, expected",
    [
        (spelling, expected)
        for word, expected in (
            ("Personal", "checking"),
            ("Corporate", "business"),
            ("Savings", "savings"),
            ("Investment", "investment"),
        )
        for spelling in cases(word)
    ],
)
def test_account_types_in_any_case(word, expected):
    for input_format in FORMATS:
        assert parse_acc(payload(ACCOUNT, account_type=word), input_format).account_type == expected


@pytest.mark.parametrize("currency, eur", [("USD", 0.92), ("EUR", 1.0), ("VND", 0.000036)])
def test_the_three_currencies_are_known(currency, eur):
    from pipeline.domain.currency import to_eur

    parsed = parse_txn(payload(TRANSACTION, currency=currency, amount=500000.0))
    assert parsed.currency == currency
    assert to_eur(parsed.amount, parsed.currency) == pytest.approx(500000.0 * eur)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-03-02 14:05:09", datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)),
        ("2026-03-02T14:05:09", datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)),
        ("2026-03-02 14:05:09.250000", datetime(2026, 3, 2, 14, 5, 9, 250000, tzinfo=UTC)),
        ("2026-03-02 21:05:09+07:00", datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)),
        ("2026-03-02 14:05:09Z", datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)),
    ],
)
def test_zoneless_times_are_utc_and_zoned_ones_are_converted(text, expected):
    parsed = parse_txn(payload(TRANSACTION, datetime_occured=text))
    assert parsed.datetime_occurred == expected
    assert parsed.datetime_occurred.utcoffset() == timedelta(0)
    account = parse_acc(payload(ACCOUNT, created_at=text))
    assert account.created_at == expected


def test_the_right_spelling_is_read_when_the_format_is_given():
    fixed = payload(TRANSACTION, datetime_occured=..., datetime_occurred="2026-03-02 14:05:09")
    assert parse_txn(fixed, "flinksql").datetime_occurred == datetime(
        2026, 3, 2, 14, 5, 9, tzinfo=UTC
    )


def test_a_zone_offset_other_than_utc_is_kept_as_the_instant():
    plus7 = timezone(timedelta(hours=7))
    parsed = parse_txn(payload(TRANSACTION, datetime_occured="2026-03-02 21:05:09+07:00"))
    assert parsed.datetime_occurred == datetime(2026, 3, 2, 21, 5, 9, tzinfo=plus7)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"amount": "x"}, "amount: not a number ('x')"),
        ({"amount": ...}, "amount: missing"),
        ({"amount": 0}, "amount: not positive (0.0)"),
        ({"amount": True}, "amount: not a number (bool)"),
        ({"transaction_type": "Payment"}, "transaction_type: unknown ('Payment')"),
        ({"transaction_type": "Teleport"}, "transaction_type: unknown ('Teleport')"),
        ({"transaction_status": "Done"}, "transaction_status: unknown ('Done')"),
        ({"currency": "vnd"}, "currency: unknown ('vnd')"),
        ({"currency": "BTC"}, "currency: unknown ('BTC')"),
        ({"datetime_occured": ...}, "datetime_occured: missing"),
        (
            {"datetime_occured": "2026-02-30 10:00:00"},
            "datetime_occured: not an ISO-8601 timestamp ('2026-02-30 10:00:00')",
        ),
        (
            {"datetime_occured": "31/12/2025 25:61"},
            "datetime_occured: not an ISO-8601 timestamp ('31/12/2025 25:61')",
        ),
        (
            {"datetime_occured": "2026-03-04 00:00:00"},
            "datetime_occured: in the future ('2026-03-04 00:00:00')",
        ),
        ({"datetime_occured": 1767225600}, "datetime_occured: not a string (int)"),
        ({"account_id": ...}, "account_id: missing"),
        ({"account_id": "a\x1bb"}, "account_id: control characters ('a\\x1bb')"),
        ({"transaction_id": ""}, "transaction_id: empty"),
        ({"account_id": "\udc00"}, "account_id: lone surrogate, not valid unicode ('\\udc00')"),
    ],
)
def test_bad_transactions_name_the_shape_and_the_field(changes, reason):
    for input_format in FORMATS:
        with pytest.raises(InvalidRecord) as caught:
            parse_txn(payload(TRANSACTION, **changes), input_format)
        assert caught.value.reason == f"flinksql transaction: {reason}"


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"account_name": ...}, "account_name: missing"),
        ({"account_name": "  "}, "account_name: empty"),
        ({"balance": "1.000,50"}, "balance: not a number ('1.000,50')"),
        ({"created_at": "20/11/2024"}, "created_at: not an ISO-8601 timestamp ('20/11/2024')"),
        ({"email": ["a@b"]}, "email: not a string (list)"),
    ],
)
def test_bad_accounts_name_the_shape_and_the_field(changes, reason):
    for input_format in FORMATS:
        with pytest.raises(InvalidRecord) as caught:
            parse_acc(payload(ACCOUNT, **changes), input_format)
        assert caught.value.reason == f"flinksql account: {reason}"


def test_an_unknown_account_type_given_the_format_names_the_shape():
    with pytest.raises(InvalidRecord) as caught:
        parse_acc(payload(ACCOUNT, account_type="Gold"), "flinksql")
    assert caught.value.reason == "flinksql account: account_type: unknown ('Gold')"
    # riskpipe's own words are not the Flink SQL system's
    with pytest.raises(InvalidRecord):
        parse_acc(payload(ACCOUNT, account_type="checking"), "flinksql")


def test_riskpipe_format_rejects_the_flinksql_words():
    with pytest.raises(InvalidRecord) as caught:
        parse_acc(payload(ACCOUNT, account_type="Personal"), "riskpipe")
    assert caught.value.reason == "account_type: unknown ('Personal')"
    with pytest.raises(InvalidRecord) as caught:
        parse_txn(payload(TRANSACTION), "riskpipe")
    assert caught.value.reason == "datetime_occurred: missing"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(400), deadline=None)
@given(st.sampled_from(sorted(TRANSACTION)), json_values)
def test_any_single_bad_transaction_field_only_raises_a_reason_naming_it(field, value):
    try:
        parsed = parse_txn(payload(TRANSACTION, **{field: value}))
    except InvalidRecord as exc:
        assert exc.reason.startswith(f"flinksql transaction: {field}: "), exc.reason
    else:
        assert isinstance(parsed, Transaction) and parsed.evaluation == "unidentified"


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(sorted(ACCOUNT)), json_values)
def test_any_single_bad_account_field_only_raises_a_reason_naming_it(field, value):
    try:
        parsed = parse_acc(payload(ACCOUNT, **{field: value}), "flinksql")
    except InvalidRecord as exc:
        assert exc.reason.startswith(f"flinksql account: {field}: "), exc.reason
    else:
        assert isinstance(parsed, Account)
