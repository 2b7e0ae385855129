"""The three record shapes: exact fields, types and vocabularies, keys, topics, Postgres rows,
reproducibility, and one generator behind all of them."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import datetime

import pytest

from pipeline.records import Account, Transaction
from simulator.formats import (
    FLINKSQL_COLUMNS,
    FORMATS,
    POC_USER_FIELDS,
    flinksql_money,
)

UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
ZONELESS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
FLINKSQL_ACCOUNT = {
    "account_id": str,
    "account_name": str,
    "email": str,
    "account_type": str,
    "balance": float,
    "created_at": str,
}
FLINKSQL_TRANSACTION = {
    "transaction_id": str,
    "account_id": str,
    "transaction_type": str,
    "amount": float,
    "currency": str,
    "transaction_status": str,
    "datetime_occured": str,
}
POC_TRANSFER = {
    "transaction_id": str,
    "sender_bank_account": str,
    "sender_details": dict,
    "receiver_bank_account": str,
    "receiver_details": dict,
    "amount": float,
    "status": str,
    "evaluation": str,
    "transfer_date": str,
    "sender_bank": str,
}
MIX = {
    "fraud_rate": 0.03,
    "bad_rate": 0.02,
    "update_rate": 0.01,
    "ground_truth_all": True,
}


def bad_hashes(kafka) -> set[str]:
    return {
        json.loads(m.value)["payload_sha256"]
        for m in kafka.topic("ground-truth")
        if json.loads(m.value)["kind"] == "bad"
    }


def valid_values(kafka, topic) -> list[dict]:
    """The topic's JSON objects, bad messages (by ground truth's hash) left out."""
    bad = bad_hashes(kafka)
    return [
        json.loads(m.value)
        for m in kafka.topic(topic)
        if hashlib.sha256(m.value).hexdigest() not in bad
    ]


def assert_shape(record: dict, fields: dict) -> None:
    assert list(record) == list(fields), sorted(set(record) ^ set(fields))
    for name, kind in fields.items():
        assert type(record[name]) is kind, (name, record[name])


@pytest.fixture(scope="module")
def runs(publish):
    """A seeded run in every format, with fraud, bad messages and account updates."""
    return {fmt: publish(fmt, **MIX) for fmt in FORMATS}


def test_flinksql_topics_are_unkeyed_and_named_as_that_system_did(runs):
    kafka, _, summary, topics = runs["flinksql"]
    assert (topics.accounts, topics.transactions) == ("accounts", "bank_transactions")
    published = {m.topic for m in kafka.messages}
    assert published == {"accounts", "bank_transactions", "ground-truth"}
    for m in kafka.messages:
        if m.topic != "ground-truth":
            assert m.key is None, m
    assert len(kafka.topic("bank_transactions")) == summary["messages"]["transactions"]


def test_flinksql_accounts_have_exactly_the_shape(runs):
    kafka, _, _, _ = runs["flinksql"]
    accounts = [json.loads(m.value) for m in kafka.topic("accounts")]
    assert accounts
    types = Counter()
    for a in accounts:
        assert_shape(a, FLINKSQL_ACCOUNT)
        assert UUID.match(a["account_id"]) and "@" in a["email"] and a["account_name"]
        assert ZONELESS.match(a["created_at"])
        types[a["account_type"]] += 1
    assert set(types) == {"Personal", "Corporate", "Savings", "Investment"}


def test_flinksql_transactions_have_exactly_the_shape(runs):
    kafka, _, summary, _ = runs["flinksql"]
    transactions = valid_values(kafka, "bank_transactions")
    assert len(transactions) == summary["transactions"]
    seen = {
        name: Counter()
        for name in ("transaction_type", "currency", "transaction_status")
    }
    for t in transactions:
        assert_shape(t, FLINKSQL_TRANSACTION)
        assert UUID.match(t["transaction_id"]) and UUID.match(t["account_id"])
        assert ZONELESS.match(t["datetime_occured"])
        assert t["amount"] > 0
        for name, counter in seen.items():
            counter[t[name]] += 1
    assert set(seen["transaction_type"]) == {"Deposit", "Withdrawal", "Transfer"}
    assert set(seen["currency"]) == {"USD", "EUR", "VND"}
    assert set(seen["transaction_status"]) == {"Pending", "Completed", "Failed"}
    # VND in dong: a 35 EUR payment is about a million
    vnd = sorted(t["amount"] for t in transactions if t["currency"] == "VND")
    assert vnd[len(vnd) // 2] > 100_000 and all(a == round(a) for a in vnd)


def test_flinksql_writes_its_columns_to_postgres(runs):
    kafka, writer, _, _ = runs["flinksql"]
    assert writer.columns == FLINKSQL_COLUMNS
    latest = {}
    for m in kafka.topic("accounts"):
        a = json.loads(m.value)
        latest[a["account_id"]] = a
    assert set(writer.rows) == set(latest)
    for account_id, row in writer.rows.items():
        values = dict(zip(FLINKSQL_COLUMNS, row))
        message = latest[account_id]
        assert {k: values[k] for k in FLINKSQL_COLUMNS[:-1]} == {
            k: message[k] for k in FLINKSQL_COLUMNS[:-1]
        }
        assert (
            values["created_at"].strftime("%Y-%m-%d %H:%M:%S") == message["created_at"]
        )


def test_poc_is_one_unkeyed_topic_of_transfers(runs):
    kafka, writer, summary, topics = runs["poc"]
    assert writer is None and topics.transactions == "bank-transactions"
    assert {m.topic for m in kafka.messages} == {"bank-transactions", "ground-truth"}
    assert all(m.key is None for m in kafka.topic("bank-transactions"))
    assert len(kafka.topic("bank-transactions")) == summary["messages"]["transactions"]


def test_poc_transfers_have_exactly_the_shape(runs):
    kafka, _, summary, _ = runs["poc"]
    transfers = valid_values(kafka, "bank-transactions")
    assert len(transfers) == summary["transactions"]
    seen = Counter()
    for t in transfers:
        assert_shape(t, POC_TRANSFER)
        assert t["amount"] > 0 and t["amount"] == round(t["amount"], 2)
        assert ZONELESS.match(t["transfer_date"])
        seen[("status", t["status"])] += 1
        seen[("evaluation", t["evaluation"])] += 1
        for side in ("sender", "receiver"):
            user = t[f"{side}_details"]
            assert list(user) == list(POC_USER_FIELDS)
            assert all(isinstance(v, str) and v for v in user.values()), user
            assert user["bank_account"] == t[f"{side}_bank_account"]
            assert re.match(r"^\d{3}-\d{2}-\d{4}$", user["ssn"])
            assert user["blood_group"] in (
                "A+",
                "A-",
                "B+",
                "B-",
                "O+",
                "O-",
                "AB+",
                "AB-",
            )
            assert user["website"].startswith("https://www.")
            datetime.strptime(user["birthdate"], "%Y-%m-%d")
        assert UUID.match(t["sender_details"]["id"])
    assert {v for k, v in seen if k == "status"} == {"completed", "pending", "failed"}
    assert {v for k, v in seen if k == "evaluation"} == {
        "fraudulent",
        "unidentified",
        "legitimate",
    }


def test_every_format_carries_the_same_transactions_and_ground_truth(runs):
    truths = {}
    for fmt, (kafka, _, summary, _) in runs.items():
        rows = [json.loads(m.value) for m in kafka.topic("ground-truth")]
        truths[fmt] = [r for r in rows if r["kind"] != "bad"]
        ids = [r["transaction_id"] for r in truths[fmt] if r["kind"] == "transaction"]
        assert len(ids) == summary["transactions"]
        topic = {"riskpipe": "transactions", "flinksql": "bank_transactions"}.get(
            fmt, "bank-transactions"
        )
        assert [t["transaction_id"] for t in valid_values(kafka, topic)] == ids
    assert truths["riskpipe"] == truths["flinksql"] == truths["poc"]


def test_formats_map_the_same_record(runs):
    """The n-th transaction is the same money movement in every shape."""
    kafka = {fmt: run[0] for fmt, run in runs.items()}
    riskpipe = [
        Transaction.from_dict(t)
        for t in valid_values(kafka["riskpipe"], "transactions")
    ]
    flinksql = valid_values(kafka["flinksql"], "bank_transactions")
    poc = valid_values(kafka["poc"], "bank-transactions")
    accounts = {}
    for m in kafka["riskpipe"].topic("accounts"):
        a = Account.from_dict(json.loads(m.value))
        accounts.setdefault(a.account_id, a)
    for r, f, p in zip(riskpipe, flinksql, poc, strict=True):
        assert r.transaction_id == f["transaction_id"] == p["transaction_id"]
        assert r.account_id == f["account_id"] == p["sender_details"]["id"]
        assert (
            f["datetime_occured"]
            == p["transfer_date"]
            == r.datetime_occurred.strftime("%Y-%m-%d %H:%M:%S")
        )
        assert (f["amount"], f["currency"]) == flinksql_money(r.amount, r.currency)
        assert f["transaction_status"].lower() == p["status"] == r.transaction_status
        assert p["sender_bank"] == r.sender_bank
        assert p["sender_bank_account"] == accounts[r.account_id].bank_account
        if r.counterparty_account_id in accounts:
            assert p["receiver_details"]["id"] == r.counterparty_account_id


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_seeded_run_is_reproducible_in_every_format(publish, fmt):
    first, _, _, _ = publish(fmt, count=1_500, **MIX)
    second, _, _, _ = publish(fmt, count=1_500, **MIX)
    assert first.messages == second.messages and len(first.messages) > 1_500


def test_another_seed_gives_other_data_in_every_format(publish):
    for fmt in FORMATS:
        first, _, _, _ = publish(fmt, count=300)
        other, _, _, _ = publish(fmt, count=300, seed=5)
        values = {m.value for m in first.messages}
        assert values.isdisjoint(m.value for m in other.messages)


@pytest.mark.parametrize("fmt", ["flinksql", "poc"])
def test_bad_messages_break_the_formats_own_shape(runs, fmt):
    kafka, _, summary, topics = runs[fmt]
    fields = FLINKSQL_TRANSACTION if fmt == "flinksql" else POC_TRANSFER
    timestamp = "datetime_occured" if fmt == "flinksql" else "transfer_date"
    bad = bad_hashes(kafka)
    broken = [
        m.value
        for m in kafka.topic(topics.transactions)
        if hashlib.sha256(m.value).hexdigest() in bad
    ]
    assert len(broken) == summary["bad"]["messages"] > 0
    for payload in broken:
        try:
            record = json.loads(payload, parse_constant=lambda c: float("nan"))
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict):
            continue
        ok = (
            set(record) == set(fields)
            and isinstance(record["amount"], float)
            and record["amount"] > 0
            and ZONELESS.match(str(record[timestamp]))
            and (fmt == "poc" or record["currency"] in ("USD", "EUR", "VND"))
            and (
                fmt == "poc"
                or record["transaction_type"] in ("Deposit", "Withdrawal", "Transfer")
            )
        )
        assert not ok, payload[:300]
    kinds = {k for k, n in summary["bad"]["by_kind"].items() if n}
    if fmt == "poc":
        assert not kinds & {"unknown_currency", "unknown_type"}
