"""Unit tests of tools.reconcile's pure comparison (no services): literal sink contents, each
kind of problem detected in each sink, and a clean input that passes."""

from __future__ import annotations

import json

from tools.reconcile import (
    AccountVersion,
    KafkaRecord,
    Message,
    Observed,
    Outcome,
    Reconciliation,
    Reference,
    S3Line,
    final_values,
    names_in_effect,
    reconcile,
    transaction_id_of,
)


def row(tid, account="a1", name="Ada", fraud=False, by="bank", score=10, reasons=()):
    return Outcome(tid, account, name, score, tuple(reasons), fraud, by)


def doc(tid, account="a1", name="Ada", score=80, reasons=("night",), by="bank",
        processed="2026-01-01T00:00:00+00:00", **extra):
    """A fraud result document as the job writes it (to Kafka, Mongo and S3)."""
    return {"transaction_id": tid, "account_id": account, "account_name": name,
            "risk_score": score, "risk_reasons": list(reasons), "is_fraudulent": True,
            "validated_by": by, "processed_at": processed, **extra}


# A clean run: t1 ordinary, f1 and f2 fraudulent, one dead-lettered message (0/3).
MESSAGES = [Message(0, 0, "t1"), Message(0, 1, "f1"), Message(1, 0, "f2"), Message(0, 3, None)]
DEAD = [(0, 3)]
ROWS = {"t1": row("t1"), "f1": row("f1", fraud=True, score=80, reasons=("night",)),
        "f2": row("f2", fraud=True, score=80, reasons=("night",))}
NAMES = {"a1": "Ada"}


def clean() -> Observed:
    return Observed(
        postgres=dict(ROWS),
        kafka=[KafkaRecord("f1", doc("f1")), KafkaRecord("f2", doc("f2"))],
        mongo={"f1": row("f1", fraud=True, score=80, reasons=("night",)),
               "f2": row("f2", fraud=True, score=80, reasons=("night",))},
        s3=[S3Line("dt=2026-01-05/hour=12/part-1-00.jsonl", doc("f1")),
            S3Line("dt=2026-01-05/hour=12/part-1-01.jsonl", doc("f2"))],
    )


def figures(result: Reconciliation, sink: str) -> dict:
    s = result.sinks[sink]
    return {name: getattr(s, name) for name in (
        "missing", "duplicated", "extra", "stale_names", "wrong_names", "differing",
        "redelivered", "superseded")}


def test_a_clean_run_passes_in_every_sink_and_against_its_own_reference():
    reference = final_values(clean(), DEAD)
    result = reconcile(MESSAGES, DEAD, clean(), NAMES, reference=reference)
    assert result.ok, result.line()
    assert (result.messages, result.produced, result.in_postgres, result.dead_lettered) == (
        4, 4, 3, 1)
    assert set(result.sinks) == {"postgres", "kafka", "mongo", "s3", "dead_letters"}
    for sink in ("kafka", "mongo", "s3"):
        assert (result.sinks[sink].expected, result.sinks[sink].found) == (2, 2)
        assert result.sinks[sink].differing == 0
    assert result.sinks["postgres"].duplicated is None  # a primary key: no figure
    assert result.sinks["mongo"].duplicated is None
    assert result.line().startswith("reconcile: OK messages=4 produced=4")


def test_the_reference_survives_its_file():
    reference = final_values(clean(), DEAD)
    assert Reference.from_json(reference.to_json()) == reference


def test_missing_in_each_sink():
    observed = clean()
    del observed.postgres["t1"]
    observed.kafka = observed.kafka[:1]
    del observed.mongo["f2"]
    observed.s3 = observed.s3[1:]
    result = reconcile(MESSAGES + [Message(1, 1, None)], DEAD, observed, NAMES)
    assert result.sinks["postgres"].examples["missing"] == ["t1"]
    assert result.sinks["kafka"].examples["missing"] == ["f2"]
    assert result.sinks["mongo"].examples["missing"] == ["f2"]
    assert result.sinks["s3"].examples["missing"] == ["f1"]
    # A message with no transaction id that was not dead-lettered: no sink can hold it.
    assert result.sinks["dead_letters"].examples["missing"] == ["1/1 (no id)"]
    assert result.missing == 5 and not result.ok


def test_kafka_redelivery_and_correction_are_information_not_duplicates():
    """f1: the same value again (a replay, processed later): redelivered. f2: a first version
    then a corrected one under the same key: superseded, the latest counts."""
    observed = clean()
    observed.kafka = [
        KafkaRecord("f1", doc("f1")),
        KafkaRecord("f2", doc("f2", name="Ada", score=60)),
        KafkaRecord("f1", doc("f1", processed="2026-01-01T00:09:00+00:00")),
        KafkaRecord("f2", doc("f2")),
    ]
    result = reconcile(MESSAGES, DEAD, observed, NAMES, reference=final_values(clean(), DEAD))
    assert figures(result, "kafka") == {
        "missing": 0, "duplicated": 0, "extra": 0, "stale_names": 0, "wrong_names": 0,
        "differing": 0, "redelivered": 1, "superseded": 1}
    assert result.ok, result.line()


def test_kafka_final_value_decides_differing():
    """The correction came first and an earlier version last: compaction keeps the wrong one."""
    observed = clean()
    observed.kafka = [KafkaRecord("f1", doc("f1")), KafkaRecord("f2", doc("f2")),
                      KafkaRecord("f2", doc("f2", score=60))]
    result = reconcile(MESSAGES, DEAD, observed, NAMES, reference=final_values(clean(), DEAD))
    assert result.sinks["kafka"].differing == 1 and not result.ok
    assert result.sinks["kafka"].examples["differing"][0].startswith("f2: ")


def test_kafka_duplicates_are_ids_compaction_cannot_fold():
    observed = clean()
    observed.kafka += [KafkaRecord(None, doc("f1")),          # unkeyed
                       KafkaRecord("a1", doc("f2")),          # keyed by account, not id
                       KafkaRecord("x", {"no": "id"})]        # not a result at all
    result = reconcile(MESSAGES, DEAD, observed, NAMES)
    assert result.sinks["kafka"].duplicated == 2
    assert result.sinks["kafka"].extra == 1
    assert result.duplicated == 2 and not result.ok


def test_s3_duplicates_across_objects_and_within_one():
    observed = clean()
    observed.s3 += [S3Line("dt=2026-01-05/hour=13/part-9-00.jsonl", doc("f1")),
                    S3Line("dt=2026-01-05/hour=12/part-1-01.jsonl", doc("f2"))]
    result = reconcile(MESSAGES, DEAD, observed, NAMES)
    assert result.sinks["s3"].duplicated == 2
    assert [e.split(" ")[0] for e in result.sinks["s3"].examples["duplicated"]] == ["f1", "f2"]


def test_extra_results_and_a_row_for_a_dead_lettered_transaction():
    observed = clean()
    observed.mongo["t1"] = row("t1")  # a result for a transaction that is not fraudulent
    observed.s3.append(S3Line("dt=2026-01-05/hour=12/part-1-00.jsonl", doc("t1")))
    observed.kafka.append(KafkaRecord("t1", doc("t1")))
    messages = MESSAGES + [Message(1, 5, "d1")]  # its only message dead-lettered ...
    observed.postgres["d1"] = row("d1")          # ... yet it has a row
    result = reconcile(messages, DEAD + [(1, 5)], observed, NAMES)
    assert {s: result.sinks[s].examples.get("extra") for s in ("postgres", "kafka", "mongo", "s3")
            } == {"postgres": ["d1"], "kafka": ["t1"], "mongo": ["t1"], "s3": ["t1"]}
    assert not result.ok


def test_differing_from_the_reference_in_each_field_and_sink():
    reference = final_values(clean(), DEAD)
    observed = clean()
    observed.postgres["t1"] = row("t1", name="Eve")               # account name
    observed.postgres["f1"] = row("f1", fraud=False, score=80, reasons=("night",))  # decision
    observed.mongo["f2"] = row("f2", fraud=True, score=81, reasons=("night",))      # score
    observed.s3[0] = S3Line(observed.s3[0].object, doc("f1", reasons=("night", "burst")))
    observed.kafka[1] = KafkaRecord("f2", doc("f2", by="validator"))                # who decided
    result = reconcile(MESSAGES, DEAD, observed, {}, reference=reference)
    assert {s: result.sinks[s].differing for s in ("postgres", "kafka", "mongo", "s3")} == {
        "postgres": 2, "kafka": 1, "mongo": 1, "s3": 1}
    # A fault that un-flags f1 makes its results expected by the reference: missing nowhere
    # here (they are still there), but Postgres differs.
    assert not result.ok


def test_without_a_reference_differing_is_unknown_not_zero():
    result = reconcile(MESSAGES, DEAD, clean(), NAMES)
    assert all(result.sinks[s].differing is None for s in result.sinks)
    assert result.ok


def test_reference_dead_letters_missing_and_extra():
    reference = final_values(clean(), DEAD)
    messages = MESSAGES + [Message(1, 7, "t9")]
    observed = clean()
    result = reconcile(messages, [(1, 7), (1, 7)], observed, NAMES, reference=reference)
    dead = result.sinks["dead_letters"]
    assert (dead.missing, dead.extra, dead.redelivered) == (1, 1, 1)
    assert dead.examples["missing"] == ["0/3 dead-lettered by the reference"]


def test_names_stale_and_wrong_in_every_sink():
    """t1 produced at 600 after a rename at 500: 'Owen Carroll' is stale, 'Nobody' wrong."""
    history = {"a1": [AccountVersion(100, "Owen Carroll"), AccountVersion(500, "Owen Trub")]}
    messages = [Message(0, 0, "t1", 600), Message(0, 1, "f1", 600), Message(0, 2, "f2", 300)]
    observed = Observed(
        postgres={"t1": row("t1", name="Owen Carroll"),
                  "f1": row("f1", name="Owen Trub", fraud=True),
                  "f2": row("f2", name="Owen Carroll", fraud=True)},
        kafka=[KafkaRecord("f1", doc("f1", name="Owen Carroll")),
               KafkaRecord("f2", doc("f2", name="Owen Carroll"))],
        mongo={"f1": row("f1", name="Nobody", fraud=True),
               "f2": row("f2", name="Owen Trub", fraud=True)},  # from after f2: wrong
        s3=[S3Line("o", doc("f1", name="Owen Trub")), S3Line("o", doc("f2", name="Owen Carroll"))],
    )
    result = reconcile(messages, [], observed, {"a1": "Owen Trub"}, account_history=history)
    names = {s: (result.sinks[s].stale_names, result.sinks[s].wrong_names)
             for s in ("postgres", "kafka", "mongo", "s3")}
    assert names == {"postgres": (1, 0), "kafka": (1, 0), "mongo": (0, 2), "s3": (0, 0)}
    assert result.sinks["postgres"].examples["stale_names"] == ["t1"]
    # Without the history, the current banking.accounts name is the reference.
    plain = reconcile(messages, [], observed, {"a1": "Owen Trub"})
    assert plain.sinks["postgres"].examples["wrong_names"] == ["f2", "t1"]


def test_a_version_in_the_same_millisecond_may_come_either_side():
    versions = [AccountVersion(100, "A"), AccountVersion(200, "B")]
    assert names_in_effect(versions, 200) == {"A", "B"}
    assert names_in_effect(versions, 201) == {"B"}
    assert names_in_effect(versions, 99) == {"A"}


def test_same_id_twice_is_one_transaction_and_valid_plus_invalid_are_two_items():
    once = reconcile([Message(0, 0, "t1"), Message(0, 5, "t1")], [], Observed({"t1": row("t1")}),
                     {})
    assert (once.produced, once.in_postgres, once.missing) == (1, 1, 0) and once.ok
    two = reconcile([Message(0, 0, "t1"), Message(0, 1, "t1")], [(0, 1)],
                    Observed({"t1": row("t1")}), {})
    assert (two.produced, two.in_postgres, two.dead_lettered) == (2, 1, 1) and two.ok


def test_ground_truth_fraud_cleared_or_unvalidated_or_bad_accepted():
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
    result = reconcile(messages, [], Observed(rows), {"a1": "Ada"}, truth)
    assert result.wrongly_cleared == 2 and result.wrongly_accepted == 1 and not result.ok


def test_transaction_id_of_never_raises():
    assert transaction_id_of(json.dumps({"transaction_id": "t1"}).encode()) == "t1"
    for payload in (None, b"\xff\xfe", b"not json", b"[1]", b'{"transaction_id": 5}',
                    b"[" * 100_000, b'{"amount": NaN}'):
        assert transaction_id_of(payload) is None


def test_empty_reconciliation_is_ok():
    assert Reconciliation().ok
