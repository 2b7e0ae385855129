"""The fraud PoC's transfers (shape B) read into a transaction and the two users' accounts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.domain.shapes import account_parser, transaction_parser
from pipeline.errors import InvalidRecord
from pipeline.records import Account, Transaction

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SENDER = {
    "id": "u-100",
    "name": "Jörg Weiß",
    "address": "Hauptstraße 1, 10115 Berlin",
    "email": "joerg.weiss@example.de",
    "birthdate": "1984-07-01",
    "phone_number": "+49 30 1234567",
    "job": "Engineer",
    "company": "Müller GmbH",
    "ssn": "123-45-6789",
    "blood_group": "AB-",
    "website": "https://www.mullergmbh.de/",
    "username": "joergweiss",
    "bank_account": "DE02100100100006820101",
}
RECEIVER = {
    "id": "u-200",
    "name": "Ana Souza",
    "address": "Rua A 2, Lisboa",
    "email": "ana@example.pt",
    "birthdate": "1990-02-28",
    "phone_number": "+351 21 000 0000",
    "job": "Nurse",
    "company": None,
    "ssn": "987-65-4321",
    "blood_group": "O+",
    "website": "https://www.example.pt/",
    "username": "anasouza",
    "bank_account": "PT50000201231234567890154",
}
TRANSFER = {
    "transaction_id": "tx-0001",
    "sender_bank_account": "DE02100100100006820101",
    "sender_details": SENDER,
    "receiver_bank_account": "PT50000201231234567890154",
    "receiver_details": RECEIVER,
    "amount": 2500.0,
    "status": "completed",
    "evaluation": "unidentified",
    "transfer_date": "2026-03-02 13:45:00",
    "sender_bank": "Harbor Trust",
}
FORMATS = ("auto", "poc")
SENDER_ACCOUNT = Account(
    account_id="u-100",
    account_name="Jörg Weiß",
    email="joerg.weiss@example.de",
    address="Hauptstraße 1, 10115 Berlin",
    birthdate=date(1984, 7, 1),
    phone_number="+49 30 1234567",
    job="Engineer",
    company="Müller GmbH",
    bank=None,
    bank_account="DE02100100100006820101",
)
RECEIVER_ACCOUNT = Account(
    account_id="u-200",
    account_name="Ana Souza",
    email="ana@example.pt",
    address="Rua A 2, Lisboa",
    birthdate=date(1990, 2, 28),
    phone_number="+351 21 000 0000",
    job="Nurse",
    company=None,
    bank=None,
    bank_account="PT50000201231234567890154",
)


def payload(obj: dict, **changes) -> bytes:
    merged = dict(obj, **changes)
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


def parse(data: bytes, input_format: str = "auto") -> Transaction:
    return transaction_parser(input_format)(data, now=NOW)


@pytest.mark.parametrize("input_format", FORMATS)
def test_every_field_of_a_transfer(input_format):
    assert parse(payload(TRANSFER), input_format) == Transaction(
        transaction_id="tx-0001",
        account_id="u-100",
        counterparty_account_id="u-200",
        transaction_type="transfer",
        amount=2500.0,
        currency="EUR",
        transaction_status="completed",
        datetime_occurred=datetime(2026, 3, 2, 13, 45, tzinfo=UTC),
        sender_bank="Harbor Trust",
        evaluation="unidentified",
        account_details=SENDER_ACCOUNT,
        counterparty_details=RECEIVER_ACCOUNT,
    )


def test_the_sensitive_and_unused_user_fields_are_not_kept():
    parsed = parse(payload(TRANSFER))
    kept = json.dumps(parsed.to_dict())
    for value in ("123-45-6789", "AB-", "joergweiss", "mullergmbh", "987-65-4321"):
        assert value not in kept


def test_a_receiver_here_and_a_sender_there_are_one_account():
    first = parse(payload(TRANSFER))
    back = parse(
        payload(
            TRANSFER,
            transaction_id="tx-0002",
            sender_bank_account=RECEIVER["bank_account"],
            sender_details=RECEIVER,
            receiver_bank_account=SENDER["bank_account"],
            receiver_details=SENDER,
        )
    )
    assert back.account_id == first.counterparty_account_id == "u-200"
    assert back.counterparty_account_id == first.account_id == "u-100"


def test_the_transfer_bank_account_is_the_account_one():
    moved = dict(SENDER, bank_account="OLD-ACCOUNT")
    parsed = parse(payload(TRANSFER, sender_details=moved))
    assert parsed.account_details.bank_account == "DE02100100100006820101"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("fraudulent", "fraudulent"),
        ("FRAUDULENT", "fraudulent"),
        ("Fraudulent", "fraudulent"),
        ("unidentified", "unidentified"),
        ("Unidentified", "unidentified"),
        ("UNIDENTIFIED", "unidentified"),
        ("legitimate", "cleared"),
        ("cleared", "cleared"),
        ("genuine", "cleared"),
        ("fraud", "cleared"),
        (None, "unidentified"),
        (..., "unidentified"),
        ("", "unidentified"),
        ("  ", "unidentified"),
    ],
)
def test_evaluations(value, expected):
    assert parse(payload(TRANSFER, evaluation=value)).evaluation == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("completed", "completed"),
        ("Completed", "completed"),
        ("PENDING", "pending"),
        ("Failed", "failed"),
        ("fAiLeD", "failed"),
    ],
)
def test_statuses_in_any_case(value, expected):
    assert parse(payload(TRANSFER, status=value)).transaction_status == expected


def test_an_integer_user_id_is_its_decimal_string():
    parsed = parse(payload(TRANSFER, sender_details=dict(SENDER, id=42)))
    assert parsed.account_id == "42" and parsed.account_details.account_id == "42"


def test_a_transfer_to_oneself_names_one_account():
    parsed = parse(
        payload(TRANSFER, receiver_details=SENDER, receiver_bank_account=SENDER["bank_account"])
    )
    assert parsed.account_id == parsed.counterparty_account_id == "u-100"


def test_a_user_record_on_an_accounts_topic():
    for input_format in FORMATS:
        parsed = account_parser(input_format)(payload(RECEIVER), now=NOW)
        assert parsed == Account(
            account_id="u-200",
            account_name="Ana Souza",
            email="ana@example.pt",
            address="Rua A 2, Lisboa",
            birthdate=date(1990, 2, 28),
            phone_number="+351 21 000 0000",
            job="Nurse",
            company=None,
            bank_account="PT50000201231234567890154",
        )
    with pytest.raises(InvalidRecord) as caught:
        account_parser("auto")(payload(RECEIVER, name=None), now=NOW)
    assert caught.value.reason == "poc user: name: missing"


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"transaction_id": ...}, "transaction_id: missing"),
        ({"amount": "x"}, "amount: not a number ('x')"),
        ({"amount": -3}, "amount: not positive (-3.0)"),
        ({"amount": 5e9}, "amount: too large (5000000000.0 EUR)"),
        ({"status": "done"}, "status: unknown ('done')"),
        ({"status": ...}, "status: missing"),
        ({"evaluation": 1}, "evaluation: not a string (int)"),
        ({"evaluation": {"$ne": "x"}}, "evaluation: not a string (dict)"),
        ({"transfer_date": ...}, "transfer_date: missing"),
        (
            {"transfer_date": "2026-02-30 10:00:00"},
            "transfer_date: not an ISO-8601 timestamp ('2026-02-30 10:00:00')",
        ),
        (
            {"transfer_date": "1999-12-31 23:59:59"},
            "transfer_date: before 2000 ('1999-12-31 23:59:59')",
        ),
        ({"sender_bank_account": ...}, "sender_bank_account: missing"),
        ({"receiver_bank_account": ""}, "receiver_bank_account: empty"),
        ({"sender_bank": 7}, "sender_bank: not a string (int)"),
        ({"sender_details": ...}, "sender_details: missing"),
        ({"sender_details": "u-100"}, "sender_details: not an object (str)"),
        ({"receiver_details": [RECEIVER]}, "receiver_details: not an object (list)"),
        ({"sender_details": dict(SENDER, id=None)}, "sender_details.id: missing"),
        ({"sender_details": dict(SENDER, id=True)}, "sender_details.id: not a string (bool)"),
        (
            {"sender_details": dict(SENDER, id="u\n1")},
            "sender_details.id: control characters ('u\\n1')",
        ),
        (
            {"receiver_details": {k: v for k, v in RECEIVER.items() if k != "name"}},
            "receiver_details.name: missing",
        ),
        (
            {"receiver_details": dict(RECEIVER, name="Ana\udfd9")},
            "receiver_details.name: lone surrogate, not valid unicode ('Ana\\udfd9')",
        ),
        (
            {"receiver_details": dict(RECEIVER, birthdate="28/02/1990")},
            "receiver_details.birthdate: not an ISO-8601 date ('28/02/1990')",
        ),
        (
            {"sender_details": dict(SENDER, email="a\x00b")},
            "sender_details.email: contains a NUL character ('a\\x00b')",
        ),
    ],
)
def test_bad_transfers_name_the_shape_and_the_field(changes, reason):
    for input_format in FORMATS:
        with pytest.raises(InvalidRecord) as caught:
            parse(payload(TRANSFER, **changes), input_format)
        assert caught.value.reason == f"poc transfer: {reason}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(400), deadline=None)
@given(st.sampled_from(sorted(TRANSFER)), json_values)
def test_any_single_bad_transfer_field_only_raises_a_reason_naming_it(field, value):
    try:
        parsed = parse(payload(TRANSFER, **{field: value}))
    except InvalidRecord as exc:
        assert exc.reason.startswith((f"poc transfer: {field}: ", f"poc transfer: {field}.")), (
            exc.reason
        )
    else:
        assert isinstance(parsed, Transaction)


@settings(max_examples=examples(400), deadline=None)
@given(
    st.sampled_from(("sender_details", "receiver_details")),
    st.sampled_from(sorted(SENDER)),
    json_values,
)
def test_any_single_bad_user_field_only_raises_a_reason_naming_its_path(side, field, value):
    data = payload(TRANSFER, **{side: dict(TRANSFER[side], **{field: value})})
    try:
        parsed = parse(data)
    except InvalidRecord as exc:
        assert exc.reason.startswith(f"poc transfer: {side}.{field}: "), exc.reason
    else:
        assert parsed.account_details is not None and parsed.counterparty_details is not None
