"""The pure comparison: what reached Kafka against what each sink holds, and a reference.

Everything here takes literal values (no I/O), so each kind of problem has a unit test.

Accounting unit ("item") of the input: a dead-lettered message (by its partition/offset
origin), the group of not-dead-lettered ("live") messages sharing one transaction id (a
re-sent transaction is one row), or a live message without a parsable id.

Per sink, over the transactions it should hold (Postgres: every live transaction; the fraud
results in Kafka, MongoDB and S3: the reference run's fraudulent transactions, or without a
reference this run's fraudulent Postgres rows), its **final** value per transaction:

- ``missing``: a transaction that should be there and is not.
- ``duplicated``: a transaction a consumer of the sink would see twice. Kafka: a transaction
  id under more than one key, or under a key that is not its id (compaction cannot fold
  them). S3: an id on more than one line (in one object or across objects). Postgres and
  MongoDB: ``None``, as a primary key (``transaction_id``, ``_id``) cannot hold two.
- ``extra``: a value that should not be there. Postgres: a row for a transaction whose every
  message was dead-lettered. Fraud results: a result for a transaction that is not expected
  there (not fraudulent), or a Kafka record with no readable transaction id.
- ``stale_names``: an account name the account had before the one in effect when the
  transaction was produced (from the accounts topic's versions).
- ``wrong_names``: a name the account never had before the transaction was produced.
- ``differing``: a final value whose account name, risk score, risk reasons, ``is_fraudulent``
  or ``validated_by`` differs from the reference's for the same sink and transaction
  (``None`` without a reference).
- ``redelivered`` (information): Kafka records repeating the value (all fields but
  ``processed_at``) an earlier record of the same key carried: a replay of the same result,
  harmless on a compacted topic. Dead letters: extra copies of one origin.
- ``superseded`` (information): Kafka records whose value a later record of the same key
  replaced (a correction); compaction keeps the latest.

The dead letters are a sink too: ``missing`` counts live messages without a transaction id
(no other sink can hold them) and, with a reference, origins the reference dead-lettered and
this run did not; ``extra``, origins this run dead-lettered and the reference did not.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "SINKS", "AccountVersion", "KafkaRecord", "Message", "Observed", "Outcome", "Reconciliation",
    "Reference", "S3Line", "SinkFigures", "final_values", "names_in_effect", "outcome_of",
    "reconcile", "transaction_id_of",
]

EXAMPLES = 5  # ids quoted per problem
SINKS = ("postgres", "kafka", "mongo", "s3", "dead_letters")
RESULT_SINKS = ("kafka", "mongo", "s3")
# Fields of a document that change on every write of the same result, whatever the input.
VOLATILE_FIELDS = ("processed_at",)


class Message(NamedTuple):
    """One message of the transactions topic: its origin, its transaction id if any, and its
    Kafka timestamp (ms; when it was produced)."""

    partition: int
    offset: int
    transaction_id: str | None
    timestamp_ms: int = 0


class AccountVersion(NamedTuple):
    """One message of the accounts topic: when it was produced and the name it carried."""

    timestamp_ms: int
    account_name: str


class Outcome(NamedTuple):
    """What a sink holds for one transaction: the figures a fault must not change."""

    transaction_id: str
    account_id: str | None
    account_name: str | None
    risk_score: int | None
    risk_reasons: tuple[str, ...]
    is_fraudulent: bool
    validated_by: str | None

    def decision(self) -> tuple:
        """The compared part: name, score, reasons, decision (not the ids)."""
        return (self.account_name, self.risk_score, self.risk_reasons, self.is_fraudulent,
                self.validated_by)


def outcome_of(doc: dict) -> Outcome | None:
    """The Outcome of a result document or row dict; None without a string transaction id.

    >>> outcome_of({"transaction_id": "t1", "account_id": "a1", "account_name": "Ann",
    ...             "risk_score": 70, "risk_reasons": ["night"], "is_fraudulent": True,
    ...             "validated_by": "bank"}).decision()
    ('Ann', 70, ('night',), True, 'bank')
    """
    tid = doc.get("transaction_id") if isinstance(doc, dict) else None
    if not isinstance(tid, str):
        return None
    score = doc.get("risk_score")
    return Outcome(
        tid, doc.get("account_id"), doc.get("account_name"),
        int(score) if score is not None else None, tuple(doc.get("risk_reasons") or ()),
        bool(doc.get("is_fraudulent")), doc.get("validated_by"),
    )


class KafkaRecord(NamedTuple):
    """One record of the fraud-results topic, in offset order: its key and decoded value."""

    key: str | None
    value: dict | None  # None: not a JSON object


class S3Line(NamedTuple):
    """One line of one S3 object of the fraud results."""

    object: str
    value: dict


@dataclass
class Observed:
    """What one run left in its sinks; a sink that is None is not checked."""

    postgres: dict[str, Outcome]
    kafka: list[KafkaRecord] | None = None
    mongo: dict[str, Outcome] | None = None
    s3: list[S3Line] | None = None


@dataclass
class Reference:
    """The final value per transaction of each sink after a fault-free run of the same input,
    and the origins it dead-lettered."""

    sinks: dict[str, dict[str, Outcome]]
    dead_letters: set[tuple[int, int]]

    def to_json(self) -> str:
        return json.dumps({
            "sinks": {name: {tid: list(o) for tid, o in values.items()}
                      for name, values in self.sinks.items()},
            "dead_letters": sorted(list(o) for o in self.dead_letters),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Reference:
        data = json.loads(text)
        sinks = {
            name: {tid: Outcome(*o[:4], tuple(o[4]), *o[5:]) for tid, o in values.items()}
            for name, values in data["sinks"].items()
        }
        return cls(sinks, {tuple(o) for o in data["dead_letters"]})


@dataclass
class SinkFigures:
    """One sink's figures (see the module docstring); ``None``: cannot occur or not known."""

    sink: str
    expected: int = 0
    found: int = 0
    missing: int = 0
    duplicated: int | None = 0
    extra: int = 0
    stale_names: int | None = 0
    wrong_names: int | None = 0
    differing: int | None = None
    redelivered: int = 0
    superseded: int = 0
    examples: dict[str, list] = field(default_factory=dict)

    FAILING = ("missing", "duplicated", "extra", "stale_names", "wrong_names", "differing")

    @property
    def ok(self) -> bool:
        return all(not getattr(self, name) for name in self.FAILING)

    def count(self, problem: str, example) -> None:
        setattr(self, problem, (getattr(self, problem) or 0) + 1)
        quoted = self.examples.setdefault(problem, [])
        if len(quoted) < EXAMPLES:
            quoted.append(example)

    def line(self) -> str:
        names = ("expected", "found", *self.FAILING, "redelivered", "superseded")
        shown = " ".join(
            f"{name}={'-' if getattr(self, name) is None else getattr(self, name)}"
            for name in names)
        return f"{self.sink}: {shown}"


@dataclass
class Reconciliation:
    """The figures of one reconciliation: the input's accounting and one SinkFigures per
    sink checked; ``examples`` quotes a few ids per input-level problem."""

    messages: int = 0
    produced: int = 0
    in_postgres: int = 0
    dead_lettered: int = 0
    # Against the simulator's ground truth (Postgres rows):
    wrongly_cleared: int = 0  # fraud it labelled that the row does not flag, or unvalidated
    wrongly_accepted: int = 0  # a message it made bad that has a row
    sinks: dict[str, SinkFigures] = field(default_factory=dict)
    examples: dict[str, list] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.sinks.values())

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated or 0 for s in self.sinks.values())

    @property
    def redelivered(self) -> int:
        return sum(s.redelivered for s in self.sinks.values())

    @property
    def ok(self) -> bool:
        return (self.wrongly_cleared == 0 and self.wrongly_accepted == 0
                and all(s.ok for s in self.sinks.values()))

    def line(self) -> str:
        figures = " ".join(f"{name}={getattr(self, name)}" for name in (
            "messages", "produced", "in_postgres", "dead_lettered", "missing", "duplicated",
            "wrongly_cleared", "wrongly_accepted"))
        sinks = "; ".join(s.line() for s in self.sinks.values())
        return f"reconcile: {'OK' if self.ok else 'FAILED'} {figures} | {sinks}"

    def _count(self, problem: str, example) -> None:
        setattr(self, problem, getattr(self, problem) + 1)
        quoted = self.examples.setdefault(problem, [])
        if len(quoted) < EXAMPLES:
            quoted.append(example)


def transaction_id_of(payload: bytes | None) -> str | None:
    """The ``transaction_id`` string of a JSON-object payload, else None (never raises)."""
    try:
        obj = json.loads(payload)
    except (TypeError, ValueError, RecursionError):
        return None
    value = obj.get("transaction_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def names_in_effect(versions: list[AccountVersion], timestamp_ms: int) -> set[str]:
    """The account's name when a transaction was produced at ``timestamp_ms``: that of the
    last version produced before it (or, if none was, the first version), plus the names of
    versions produced in the same millisecond, whose order against it is unknown."""
    before = [v for v in versions if v.timestamp_ms < timestamp_ms]
    same = {v.account_name for v in versions if v.timestamp_ms == timestamp_ms}
    return {(before[-1] if before else versions[0]).account_name} | same


class _Names:
    """Judges an account name: in effect, stale (an earlier one) or wrong."""

    def __init__(self, produced_at: dict[str, int], account_names: dict[str, str],
                 history: dict[str, list[AccountVersion]]):
        self.produced_at, self.account_names, self.history = produced_at, account_names, history

    def judge(self, outcome: Outcome) -> str | None:
        """"stale_names", "wrong_names" or None (right, or nothing to judge by)."""
        versions = self.history.get(outcome.account_id)
        if versions and outcome.transaction_id in self.produced_at:
            at = self.produced_at[outcome.transaction_id]
            expected = names_in_effect(versions, at)
            earlier = {v.account_name for v in versions if v.timestamp_ms < at} - expected
        elif outcome.account_id in self.account_names:
            expected, earlier = {self.account_names[outcome.account_id]}, set()
        else:
            return None
        if outcome.account_name in earlier:
            return "stale_names"
        return None if outcome.account_name in expected else "wrong_names"


def _judge(figures: SinkFigures, finals: dict[str, list[Outcome]], expected: set[str],
           names: _Names, reference: dict[str, Outcome] | None) -> None:
    """Missing, extra, names and differing of a sink's final values (several per id when the
    sink holds duplicates: each is judged, an id counted once per problem)."""
    figures.expected = len(expected)
    figures.found = len(expected & finals.keys())
    for tid in sorted(expected - finals.keys()):
        figures.count("missing", tid)
    if reference is not None:
        figures.differing = 0
    for tid in sorted(finals):
        outcomes = finals[tid]
        if tid not in expected:
            figures.count("extra", tid)
            continue
        verdicts = {names.judge(o) for o in outcomes} - {None}
        for problem in sorted(verdicts):
            figures.count(problem, tid)
        if reference is not None and tid in reference and any(
                o.decision() != reference[tid].decision() for o in outcomes):
            figures.count("differing", f"{tid}: {outcomes[-1].decision()} != "
                                       f"{reference[tid].decision()}")


def _normalised(value: dict) -> str:
    return json.dumps({k: v for k, v in value.items() if k not in VOLATILE_FIELDS},
                      sort_keys=True, default=str)


def _kafka(records: list[KafkaRecord], figures: SinkFigures) -> dict[str, list[Outcome]]:
    """Kafka's final value per transaction, counting duplicated/redelivered/superseded."""
    by_key: dict[str | None, list[KafkaRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    keys_of: dict[str, set] = {}
    finals: dict[str, list[Outcome]] = {}
    for key, keyed in by_key.items():
        values = [_normalised(r.value) if r.value is not None else "" for r in keyed]
        figures.redelivered += len(values) - len(set(values))
        last_seen = {v: i for i, v in enumerate(values)}
        figures.superseded += len(last_seen) - 1
        for record in keyed:
            outcome = outcome_of(record.value) if record.value is not None else None
            if outcome is None:
                figures.count("extra", f"record without a transaction id under key {key!r}")
            else:
                keys_of.setdefault(outcome.transaction_id, set()).add(key)
        final = outcome_of(keyed[-1].value) if keyed[-1].value is not None else None
        if final is not None and key == final.transaction_id:
            finals[key] = [final]
    for tid, keys in sorted(keys_of.items()):
        if keys != {tid}:
            figures.count("duplicated", f"{tid} under keys {sorted(map(str, keys))}")
            if tid not in finals:  # only under other keys: what a consumer would see
                finals[tid] = [o for r in records for o in [outcome_of(r.value or {})]
                               if o is not None and o.transaction_id == tid][-1:]
    return finals


def _s3(lines: list[S3Line], figures: SinkFigures) -> dict[str, list[Outcome]]:
    finals: dict[str, list[Outcome]] = {}
    where: dict[str, list[str]] = {}
    for line in lines:
        outcome = outcome_of(line.value)
        if outcome is None:
            figures.count("extra", f"line without a transaction id in {line.object}")
            continue
        finals.setdefault(outcome.transaction_id, []).append(outcome)
        where.setdefault(outcome.transaction_id, []).append(line.object)
    for tid, objects in sorted(where.items()):
        if len(objects) > 1:
            figures.count("duplicated", f"{tid} in {objects}")
    return finals


def reconcile(
    messages: Iterable[Message],
    dead_letter_origins: Iterable[tuple[int, int]],
    observed: Observed,
    account_names: dict[str, str],
    ground_truth: Iterable[dict] = (),
    account_history: dict[str, list[AccountVersion]] | None = None,
    reference: Reference | None = None,
) -> Reconciliation:
    """Compares what reached Kafka with what each sink holds (see the module docstring).

    Args:
      messages: every message of the transactions topic.
      dead_letter_origins: (partition, offset) of each dead letter from that topic, repeats
        kept.
      observed: the sinks' contents (Postgres rows by transaction id at least for the
        messages' ids; the others as read, None when not checked).
      account_names: banking.accounts names by account id (at least the rows' accounts).
      ground_truth: the simulator's ground-truth rows (``kind`` transaction/bad/...).
      account_history: the accounts topic's versions of each account, in order. With it, a
        name must be the one its account had when the transaction was produced; without it,
        or for an account it lacks, the current banking.accounts name.
      reference: the final values of a fault-free run of the same input.
    """
    result = Reconciliation()
    origins = Counter(dead_letter_origins)
    rows = observed.postgres
    ids: dict[str, bool] = {}  # id -> whether some live message carries it
    produced_at: dict[str, int] = {}
    no_id: list[tuple[int, int]] = []  # live messages without a transaction id
    for message in messages:
        result.messages += 1
        dead = (message.partition, message.offset) in origins
        if dead:
            result.dead_lettered += 1
        elif message.transaction_id is None:
            no_id.append((message.partition, message.offset))
        if message.transaction_id is not None:
            ids[message.transaction_id] = ids.get(message.transaction_id, False) or not dead
            if not dead:
                produced_at.setdefault(message.transaction_id, message.timestamp_ms)
    live = {tid for tid, is_live in ids.items() if is_live}
    result.in_postgres = len(live & rows.keys())
    names = _Names(produced_at, account_names, account_history or {})
    ref = reference.sinks if reference is not None else {}

    postgres = SinkFigures("postgres", duplicated=None)
    only_dead = {tid for tid, is_live in ids.items() if not is_live and tid in rows}
    _judge(postgres, {tid: [rows[tid]] for tid in (live | only_dead) & rows.keys()},
           live, names, ref.get("postgres") if reference else None)
    result.sinks["postgres"] = postgres
    result.produced = result.dead_lettered + len(live) + len(no_id)

    fraudulent = {tid for tid in live if tid in rows and rows[tid].is_fraudulent}
    for sink in RESULT_SINKS:
        contents = getattr(observed, sink)
        if contents is None:
            continue
        figures = SinkFigures(sink, duplicated=None if sink == "mongo" else 0)
        if sink == "kafka":
            finals = _kafka(contents, figures)
        elif sink == "s3":
            finals = _s3(contents, figures)
        else:
            finals = {tid: [o] for tid, o in contents.items()}
        expected = set(ref[sink]) if sink in ref else fraudulent
        _judge(figures, finals, expected, names, ref.get(sink) if reference else None)
        result.sinks[sink] = figures

    dead = SinkFigures("dead_letters", duplicated=None, stale_names=None, wrong_names=None)
    dead.expected = len(reference.dead_letters) if reference else len(origins)
    dead.found = len(origins.keys() & reference.dead_letters) if reference else len(origins)
    for origin in no_id:
        if reference is None or origin not in reference.dead_letters:
            dead.count("missing", f"{origin[0]}/{origin[1]} (no id)")
    if reference is not None:
        for origin in sorted(reference.dead_letters - origins.keys()):
            dead.count("missing", f"{origin[0]}/{origin[1]} dead-lettered by the reference")
        for origin in sorted(origins.keys() - reference.dead_letters):
            dead.count("extra", f"{origin[0]}/{origin[1]} not dead-lettered by the reference")
    for origin, seen in sorted(origins.items()):
        if seen > 1:  # the same key again: a redelivery, not a second effect
            dead.redelivered += seen - 1
    result.sinks["dead_letters"] = dead

    for truth in ground_truth:
        row = rows.get(truth.get("transaction_id"))
        if truth.get("kind") == "bad" and row is not None:
            result._count("wrongly_accepted", row.transaction_id)
        elif truth.get("kind") == "transaction" and row is not None:
            evaluation = truth.get("evaluation")
            if (evaluation == "fraudulent" and not row.is_fraudulent) or (
                evaluation == "unidentified" and row.validated_by == "none"
            ):
                result._count("wrongly_cleared", row.transaction_id)
    return result


def final_values(observed: Observed, dead_letter_origins: Iterable[tuple[int, int]]) -> Reference:
    """The final value per transaction of each sink (for a fault-free run: the reference).

    Kafka: the last record of each key that is its transaction id; S3: the last line of an
    id (a clean run has one).
    """
    scratch = SinkFigures("scratch")
    sinks: dict[str, dict[str, Outcome]] = {"postgres": dict(observed.postgres)}
    if observed.kafka is not None:
        sinks["kafka"] = {tid: o[-1] for tid, o in _kafka(observed.kafka, scratch).items() if o}
    if observed.mongo is not None:
        sinks["mongo"] = dict(observed.mongo)
    if observed.s3 is not None:
        sinks["s3"] = {tid: o[-1] for tid, o in _s3(observed.s3, scratch).items()}
    return Reference(sinks, set(dead_letter_origins))
