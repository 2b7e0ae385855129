"""Unit tests of tools.reconcile's pure comparison (no services)."""

from __future__ import annotations

import json

from tools.reconcile import (
    AccountVersion,
    Message,
    Reconciliation,
    Row,
    names_in_effect,
    reconcile,
    transaction_id_of,
)


def row(tid, account="a1", name="Ada", fraud=False, by="bank"):
    return Row(tid, account, name, fraud, by)


def test_all_accounted_for_is_ok():
    messages = [Message(0, 0, "t1"), Message(0, 1, None), Message(1, 0, "t2")]
    result = reconcile(messages, [(0, 1)], {"t1": row("t1"), "t2": row("t2")}, {"a1": "Ada"})
    assert (result.messages, result.produced, result.in_postgres, result.dead_lettered) == (3, 3, 2, 1)
    assert result.ok and result.line().startswith("reconcile: OK messages=3 produced=3")


def test_missing_message_with_and_without_id():
    result = reconcile([Message(0, 0, "t1"), Message(0, 1, None)], [], {}, {})
    assert result.missing == 2 and not result.ok and "missing=2" in result.line()
    assert result.examples["missing"] == ["0/1 (no id)", "t1"]


def test_same_id_twice_is_one_transaction():
    result = reconcile([Message(0, 0, "t1"), Message(0, 5, "t1")], [], {"t1": row("t1")}, {})
    assert (result.produced, result.in_postgres, result.duplicated) == (1, 1, 0) and result.ok


def test_valid_and_invalid_message_sharing_an_id_are_two_items():
    result = reconcile([Message(0, 0, "t1"), Message(0, 1, "t1")], [(0, 1)], {"t1": row("t1")}, {})
    assert (result.produced, result.in_postgres, result.dead_lettered) == (2, 1, 1) and result.ok


def test_dead_lettered_and_in_postgres_is_duplicated():
    result = reconcile([Message(0, 0, "t1")], [(0, 0)], {"t1": row("t1")}, {})
    assert result.duplicated == 1 and not result.ok


def test_dead_letter_origin_seen_twice_is_a_redelivery():
    """Dead letters are keyed by origin: a replay re-sends the same key, one effect."""
    result = reconcile([Message(0, 0, None)], [(0, 0), (0, 0)], {}, {})
    assert result.dead_lettered == 1 and result.redelivered == 1
    assert result.duplicated == 0 and result.ok


def test_wrong_account_name_only_when_the_account_exists():
    rows = {"t1": row("t1", "a1", "Eve"), "t2": row("t2", "a2", None), "t3": row("t3", "a3", "x")}
    messages = [Message(0, i, t) for i, t in enumerate(rows)]
    result = reconcile(messages, [], rows, {"a1": "Ada", "a2": "Bob"})
    assert result.wrongly_attributed == 2 and result.examples["wrongly_attributed"] == ["t1", "t2"]


def test_account_name_is_checked_as_of_when_the_transaction_was_produced():
    """A rename after a transaction does not make its row wrong; a name from after it, or one
    the account never had, does."""
    history = {"a1": [AccountVersion(100, "Owen Carroll"), AccountVersion(500, "Owen Trub")]}
    rows = {
        "before": row("before", "a1", "Owen Carroll"),   # produced at 200: right
        "after": row("after", "a1", "Owen Trub"),        # produced at 600: right
        "stale": row("stale", "a1", "Owen Carroll"),     # produced at 700: old name, wrong
        "future": row("future", "a1", "Owen Trub"),      # produced at 300: wrong
        "early": row("early", "a1", "Owen Carroll"),     # produced before the account: first name
    }
    produced = {"before": 200, "after": 600, "stale": 700, "future": 300, "early": 50}
    messages = [Message(0, i, t, produced[t]) for i, t in enumerate(rows)]
    result = reconcile(messages, [], rows, {"a1": "Owen Trub"}, account_history=history)
    assert result.examples["stale_attributed"] == ["stale"]  # an earlier name of the account
    assert result.examples["wrongly_attributed"] == ["future"]
    assert result.wrong == 2 and not result.ok
    # Without the history, the current name is the reference.
    plain = reconcile(messages, [], rows, {"a1": "Owen Trub"})
    assert plain.examples["wrongly_attributed"] == ["before", "stale", "early"]


def test_a_version_in_the_same_millisecond_may_come_either_side():
    versions = [AccountVersion(100, "A"), AccountVersion(200, "B")]
    assert names_in_effect(versions, 200) == {"A", "B"}
    assert names_in_effect(versions, 201) == {"B"}
    assert names_in_effect(versions, 99) == {"A"}


def test_ground_truth_fraud_cleared_or_unvalidated_is_wrong():
    rows = {
        "f1": row("f1", fraud=False, by="bank"), "f2": row("f2", fraud=True, by="bank"),
        "u1": row("u1", by="none"), "u2": row("u2", by="validator"), "b1": row("b1"),
    }
    truth = [
        {"kind": "transaction", "transaction_id": "f1", "evaluation": "fraudulent"},
        {"kind": "transaction", "transaction_id": "f2", "evaluation": "fraudulent"},
        {"kind": "transaction", "transaction_id": "u1", "evaluation": "unidentified"},
        {"kind": "transaction", "transaction_id": "u2", "evaluation": "unidentified"},
        {"kind": "bad", "transaction_id": "b1"}, {"kind": "summary"},
    ]
    messages = [Message(0, i, t) for i, t in enumerate(rows)]
    result = reconcile(messages, [], rows, {"a1": "Ada"}, truth)
    assert result.wrongly_cleared == 2 and result.wrongly_accepted == 1 and not result.ok


def test_fraudulent_rows_missing_from_mongo():
    rows = {"t1": row("t1", fraud=True), "t2": row("t2", fraud=True), "t3": row("t3")}
    messages = [Message(0, i, t) for i, t in enumerate(rows)]
    assert reconcile(messages, [], rows, {}, mongo_ids={"t1"}).missing_in_mongo == 1
    assert reconcile(messages, [], rows, {}, mongo_ids=None).missing_in_mongo == 0


def test_transaction_id_of_never_raises():
    assert transaction_id_of(json.dumps({"transaction_id": "t1"}).encode()) == "t1"
    for payload in (None, b"\xff\xfe", b"not json", b"[1]", b'{"transaction_id": 5}',
                    b"[" * 100_000, b'{"amount": NaN}'):
        assert transaction_id_of(payload) is None


def test_empty_reconciliation_is_ok():
    assert Reconciliation().ok
