"""Hostile input through the real pipeline: every message accounted for, injections stay data.

One bounded run (``python -m pipeline.main`` on the FnApiRunner) over per-test topics on the
real Kafka, Postgres, Mongo, S3 and validator. Hypothesis draws the hostile text of one batch
of accounts and transactions (running the pipeline per example would be far too slow); the
invalid payloads are listed by hand, each with the reason prefix its dead letter must carry.
``parse_transaction`` on arbitrary JSON is covered by tests/transforms/test_parse.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient

import stack.kafka
from pipeline.domain.fields import MAX_TEXT_LENGTH
from tools import reconcile

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
INJECTIONS = (
    "'; DROP TABLE banking.accounts; --",
    "Robert'); DROP TABLE banking.attributed_transactions;--",
    '{"$gt": ""}',
    '{"$where": "sleep(1000)"}',
    "$ne",
    "\\x00\\'\" OR 1=1 --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
)
# NUL is left out here: Postgres TEXT cannot hold it (see test_nul_in_text_fields_...).
CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f\x85\u2028\u2029\ufeff\u202e"
PIPELINE_TIMEOUT_S = 240

hostile_text = st.one_of(
    st.sampled_from(INJECTIONS),
    # Lone surrogates (category Cs) are dead-lettered: see invalid_payloads.
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            min_size=1, max_size=30),
    st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1,
            max_size=30),
    st.text(alphabet=CONTROL + "ab'\"$;{}", min_size=1, max_size=20),
    st.text(alphabet="ÄØ漢字🙂\u0301x'$", min_size=1, max_size=30),  # very long ones: below
).filter(lambda s: s.strip())
extra_fields = st.dictionaries(
    st.sampled_from(["$gt", "$where", "$set", "a.b", "$", "__proto__", "_id"]),
    hostile_text | st.integers() | st.none(), max_size=2,
)
# unique names: with max_examples=1 Hypothesis would otherwise favour one simple value.
batch = st.lists(st.tuples(hostile_text, hostile_text, extra_fields), min_size=50 - len(INJECTIONS),
                 max_size=50 - len(INJECTIONS), unique_by=lambda r: r[0]).map(
    lambda drawn: [(name, name, {"$gt": name}) for name in INJECTIONS]
    + [("ctl\x01\x1b[2J\r\n\u202e", "\x7fbank", {}), ("L" * MAX_TEXT_LENGTH, "🙂" * 500, {})]
    + drawn[2:])


def _now_iso(minutes: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def _transaction(tid, account_id, evaluation="cleared", **changes) -> dict:
    record = {
        "transaction_id": tid, "account_id": account_id, "counterparty_account_id": None,
        "transaction_type": "transfer", "amount": 12.5, "currency": "EUR",
        "transaction_status": "completed", "datetime_occurred": _now_iso(5),
        "sender_bank": "Bank", "evaluation": evaluation,
    }
    record.update(changes)
    return record


def _dumps(obj) -> bytes:
    return json.dumps(obj).encode()


def invalid_payloads(prefix: str, account_id: str) -> list[tuple[str, bytes, str]]:
    """(name, payload, reason prefix of its dead letter) of each invalid message."""
    good = _transaction(f"{prefix}bad", account_id)

    def bad(name, **changes):
        return _dumps({**good, "transaction_id": f"{prefix}bad-{name}", **changes})

    missing = dict(good, transaction_id=f"{prefix}bad-missing")
    del missing["amount"]
    return [
        ("not_json", b"transaction_id=1;amount=2", "payload: not JSON"),
        ("binary", bytes(range(128, 256)), "payload: not UTF-8"),
        ("empty", b"", "payload: not JSON"),
        ("nested", b"[" * 10_000 + b"]" * 10_000, "payload: "),
        ("nested_object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "payload: "),
        ("large", _dumps(dict(good, transaction_id=f"{prefix}bad-large", note="x" * 200_000)),
         "payload: too large"),  # 1 MiB: test_huge_payload_is_dead_lettered
        ("array", b"[1, 2, 3]", "payload: not a JSON object"),
        ("missing_amount", _dumps(missing), "amount: missing"),
        ("mistyped_amount", bad("mistyped_amount", amount="twelve"), "amount: not a number"),
        ("mistyped_account", bad("mistyped_account", account_id=5), "account_id: not a string"),
        ("bool_amount", bad("bool_amount", amount=True), "amount: not a number"),
        ("nan", bad("nan", amount=float("nan")), "amount: "),
        ("inf", bad("inf", amount=float("inf")), "amount: "),
        ("big_literal", _dumps(good).replace(b'"amount": 12.5', b'"amount": 1e999')
         .replace(good["transaction_id"].encode(), f"{prefix}bad-big_literal".encode()),
         "amount: "),
        ("negative", bad("negative", amount=-1), "amount: not positive"),
        ("zero", bad("zero", amount=0), "amount: not positive"),
        ("too_large", bad("too_large", amount=1e15), "amount: too large"),
        ("far_past", bad("far_past", datetime_occurred="0001-01-01T00:00:00+00:00"),
         "datetime_occurred: before"),
        ("far_future", bad("far_future", datetime_occurred="9999-12-31T23:59:59+00:00"),
         "datetime_occurred: in the future"),
        ("not_a_date", bad("not_a_date", datetime_occurred="2026-02-30T10:00:00Z"),
         "datetime_occurred: not an ISO-8601"),
        ("control_id", bad("control_id", transaction_id=f"{prefix}bad-\x00\n"),
         "transaction_id: control characters"),
        ("long_id", bad("long_id", transaction_id="x" * 10_000), "transaction_id: too long"),
        ("injection_currency", bad("injection_currency", currency="'; DROP TABLE x; --"),
         "currency: unknown"),
        ("operator_evaluation", bad("operator_evaluation", evaluation={"$ne": "cleared"}),
         "evaluation: not a string"),
        # Valid JSON ("\udfd9" escape), but no sink can encode a lone surrogate.
        ("lone_surrogate", bad("lone_surrogate", sender_bank="E\udfd9"),
         "sender_bank: lone surrogate"),
    ]


def produce(bootstrap: str, messages: list[tuple[str, str | None, bytes]]) -> None:
    producer = Producer({
        "bootstrap.servers": bootstrap, "compression.type": "lz4", "enable.idempotence": True,
        "message.max.bytes": 4 << 20, "linger.ms": 5,
    })
    errors = []
    for topic, key, value in messages:
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda err, _msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors


def upsert_accounts(dsn: str, accounts: list[dict]) -> None:
    """What the simulator does: banking.accounts is the table of record (parameterised SQL)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for a in accounts:
            cur.execute(
                "INSERT INTO banking.accounts (account_id, account_name, email, balance) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id) DO UPDATE SET "
                "account_name = EXCLUDED.account_name, email = EXCLUDED.email, "
                "balance = EXCLUDED.balance, updated_at = now()",
                (a["account_id"], a["account_name"], a.get("email"), a.get("balance", 0)),
            )
    conn.close()


def run_pipeline(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.main", *args], check=False, cwd=REPO, capture_output=True,
        text=True, timeout=PIPELINE_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def services(kafka_bootstrap, postgres_dsn, validator_url, s3_config, stack_up):
    return {
        "bootstrap": kafka_bootstrap, "dsn": postgres_dsn, "validator": validator_url,
        "s3_args": s3_config["pipeline_args"], "mongo": stack_up("mongo")["mongo"]["uri"],
    }


class Run:
    """Per-test topics, consumer group and Mongo db; runs the pipeline once over them."""

    def __init__(self, services: dict):
        run_id = uuid.uuid4().hex[:10]
        self.services, self.prefix, self.mongo_db = services, f"rel-{run_id}.", f"rel_{run_id}"
        names = ("accounts", "transactions", "dead-letters", "fraud", "users")
        self.t = {name: f"{self.prefix}{name}" for name in names}
        stack.kafka.ensure_topics({topic: 2 for topic in self.t.values()}, services["bootstrap"])

    def pipeline(self) -> subprocess.CompletedProcess:
        s, t = self.services, self.t
        return run_pipeline([
            f"--kafka_bootstrap={s['bootstrap']}", f"--postgres_dsn={s['dsn']}",
            f"--validator_url={s['validator']}", f"--mongo_uri={s['mongo']}",
            f"--mongo_db={self.mongo_db}", f"--accounts_topic={t['accounts']}",
            f"--transactions_topic={t['transactions']}",
            f"--dead_letter_topic={t['dead-letters']}", f"--fraud_results_topic={t['fraud']}",
            f"--users_topic={t['users']}", f"--consumer_group={self.prefix}group",
            "--start_offset=earliest", "--join_ttl_s=5", *s["s3_args"],
        ])

    def reconcile(self) -> reconcile.Reconciliation:
        s = self.services
        return reconcile.run(s["bootstrap"], self.t["transactions"], self.t["dead-letters"],
                             s["dsn"], mongo_uri=s["mongo"], mongo_db=self.mongo_db)

    def dead_letters(self) -> list[dict]:
        return [json.loads(m.value())
                for m in reconcile.read_topic(self.services["bootstrap"], self.t["dead-letters"])]


@settings(max_examples=1, deadline=None, database=None, phases=(Phase.generate,),
          suppress_health_check=list(HealthCheck))
@given(drawn=batch)
def test_hostile_batch_is_accounted_for_exactly_once(services, drawn):
    run = Run(services)
    prefix, t, mongo_db = run.prefix, run.t, run.mongo_db

    accounts, messages = [], []
    evaluations = ("fraudulent", "cleared", "unidentified")
    for i, (name, bank, extra) in enumerate(drawn):
        account = {"account_id": f"{prefix}acc-{i}", "account_name": name,
                   "email": f"{i}@example.com", "balance": 10.0, **extra}
        accounts.append(account)
        messages.append((t["accounts"], account["account_id"], _dumps(account)))
        tid = f"{prefix}tx-{i}"
        record = _transaction(tid, account["account_id"], evaluations[i % 3], sender_bank=bank,
                              counterparty_account_id=f"{prefix}acc-{(i + 1) % len(drawn)}",
                              **{"$where": name, "note": {"$gt": ""}})
        messages.append((t["transactions"], account["account_id"], _dumps(record)))

    # The same transaction id twice (same key, so same partition): one row, the later wins.
    dup_account = accounts[0]["account_id"]
    for amount in (11.0, 22.0):
        messages.append((t["transactions"], dup_account,
                         _dumps(_transaction(f"{prefix}dup", dup_account, amount=amount))))
    # An account whose update (new email and balance) arrives after its transactions.
    late = {"account_id": f"{prefix}late", "account_name": "'; DROP TABLE banking.accounts; --",
            "email": "old@example.com", "balance": 1.0}
    for j in range(3):
        messages.append((t["transactions"], late["account_id"],
                         _dumps(_transaction(f"{prefix}late-tx-{j}", late["account_id"]))))
    updated = dict(late, email="new@example.com", balance=2.0)
    messages += [(t["accounts"], late["account_id"], _dumps(late)),
                 (t["accounts"], late["account_id"], _dumps(updated))]
    invalid = invalid_payloads(prefix, dup_account)
    messages += [(t["transactions"], f"key-{name}", payload) for name, payload, _ in invalid]
    # Invalid accounts: dead-lettered too, and never break the join.
    messages += [(t["accounts"], "x", b"\xff\x00"),
                 (t["accounts"], "y", _dumps({"account_id": {"$gt": ""}, "account_name": "x"})),
                 (t["accounts"], "z", _dumps({"account_id": "z", "account_name": "\udc00"}))]

    upsert_accounts(services["dsn"], accounts + [updated])
    produce(services["bootstrap"], messages)

    started = time.monotonic()
    proc = run.pipeline()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"pipeline exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    print(f"pipeline: {elapsed:.1f}s {proc.stdout.strip()[-500:]}")

    result = run.reconcile()
    print(result.line(), result.examples)
    assert result.missing == 0 and result.duplicated == 0, (result.line(), result.examples)
    assert result.ok, (result.line(), result.examples)
    assert result.dead_lettered == len(invalid)
    assert result.in_postgres == len(drawn) + 1 + 3

    with psycopg2.connect(services["dsn"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('banking.accounts'), "
                    "to_regclass('banking.attributed_transactions')")
        assert all(cur.fetchone()), "an injection string dropped a table"
        cur.execute("SELECT transaction_id, account_id, account_name, sender_bank, amount "
                    "FROM banking.attributed_transactions WHERE transaction_id LIKE %s",
                    (prefix.replace("_", r"\_") + "%",))
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    conn.close()
    for i, (name, bank, _) in enumerate(drawn):
        account_id, stored_name, stored_bank, _amount = rows[f"{prefix}tx-{i}"]
        assert (account_id, stored_name, stored_bank) == (f"{prefix}acc-{i}", name, bank)
    assert float(rows[f"{prefix}dup"][3]) == 22.0, "the later of two same-id messages must win"
    assert all(rows[f"{prefix}late-tx-{j}"][1] == late["account_name"] for j in range(3))

    client = MongoClient(services["mongo"], serverSelectionTimeoutMS=10_000)
    try:
        users = {d["_id"]: d for d in client[mongo_db]["users"].find()}
        fraud_ids = {d["_id"] for d in client[mongo_db]["transactions"].find()}
        client.drop_database(mongo_db)
    finally:
        client.close()
    for i, (name, _bank, _) in enumerate(drawn):
        if i % 3 == 0:  # bank-labelled fraud: its users reach Mongo with names verbatim
            assert f"{prefix}tx-{i}" in fraud_ids
            assert users[f"{prefix}acc-{i}"]["account_name"] == name

    letters = run.dead_letters()
    by_offset = {(d["topic"], d["partition"], d["offset"]): d for d in letters}
    assert all(d["reason"] and d["step"] for d in letters)
    assert {d["topic"] for d in letters} == {t["transactions"], t["accounts"]}
    reasons = sorted(d["reason"] for d in by_offset.values() if d["topic"] == t["transactions"])
    for name, _payload, reason in invalid:
        assert any(r.startswith(reason) for r in reasons), (name, reason, reasons)


def _run_small(services, payloads: list[bytes], accounts: list[dict] = ()):
    run = Run(services)
    messages = [(run.t["accounts"], a["account_id"], _dumps(a)) for a in accounts]
    messages += [(run.t["transactions"], "k", p) for p in payloads]
    produce(services["bootstrap"], messages)
    return run, run.pipeline()


def test_huge_payload_is_dead_lettered(services):
    huge = _dumps({"transaction_id": "huge", "note": "x" * (1 << 20)})  # 1 MiB
    binary = bytes(range(128, 256)) * 4000  # 512 KB of non-UTF-8, 1 MB as hex
    run, proc = _run_small(services, [huge, binary])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = run.reconcile()
    assert result.ok and result.dead_lettered == 2, result.line()
    assert all(d["reason"].startswith("payload: ") for d in run.dead_letters())


def test_nul_in_text_fields_is_accounted_for(services):
    run = Run(services)
    account = {"account_id": f"{run.prefix}acc-nul", "account_name": "nul\x00name"}
    tx = _transaction(f"{run.prefix}tx-nul", account["account_id"], sender_bank="b\x00ank")
    produce(services["bootstrap"], [(run.t["accounts"], account["account_id"], _dumps(account)),
                                    (run.t["transactions"], account["account_id"], _dumps(tx))])
    proc = run.pipeline()
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = run.reconcile()
    assert result.ok and result.produced == 1, result.line()


def test_flood_of_garbage_between_good_transactions(services):
    """10,000 messages, half garbage of every shape, on one run: nothing lost or doubled."""
    run = Run(services)
    accounts = [{"account_id": f"{run.prefix}acc-{i}", "account_name": f"A{i}"} for i in range(20)]
    garbage = [b"", b"\x00" * 64, b"{", b"null", b"[]", b'"x"', b"{}", b"\xc3\x28" * 10,
               b'{"transaction_id": "' + b"\xe2\x82" + b'"}', b"9" * 5000, b"{" * 3000]
    messages = [(run.t["accounts"], a["account_id"], _dumps(a)) for a in accounts]
    for i in range(5000):
        account_id = accounts[i % len(accounts)]["account_id"]
        good = _transaction(f"{run.prefix}tx-{i}", account_id, ("cleared", "unidentified")[i % 2])
        messages.append((run.t["transactions"], account_id, _dumps(good)))
        messages.append((run.t["transactions"], None, garbage[i % len(garbage)]))
    produce(services["bootstrap"], messages)
    started = time.monotonic()
    proc = run.pipeline()
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = run.reconcile()
    print(f"flood: pipeline {time.monotonic() - started:.1f}s; {result.line()}")
    assert result.ok, (result.line(), result.examples)
    assert (result.messages, result.in_postgres, result.dead_lettered) == (10_000, 5000, 5000)
