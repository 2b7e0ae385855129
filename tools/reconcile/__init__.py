"""Reconciliation: is every transaction in each sink once, with the right final value?

Reads every message of the transactions topic (earliest to the end offsets), the dead-letter
topic, the rows of ``banking.attributed_transactions`` and the names in ``banking.accounts``,
and, when named, the fraud results in Kafka, MongoDB and S3, the accounts topic (the name
each transaction should carry), the simulator's ground truth and a reference: the final
values of a fault-free run of the same input. The comparison (:mod:`.compare`, with every
figure defined) is pure; :mod:`.read` does the I/O::

    python -m tools.reconcile --transactions_topic t --dead_letter_topic dl \\
        [--accounts_topic a] [--results_topic r] [--mongo_db db] [--s3_prefix s3://b/r] \\
        [--ground_truth_file gt.jsonl] [--reference ref.json | --snapshot ref.json]

prints one line of figures per sink and exits 1 unless every sink shows missing = duplicated
= extra = stale_names = wrong_names = differing = 0 and the ground truth holds. ``--snapshot``
writes this run's final values, to be another run's ``--reference``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.reconcile.compare import (
    SINKS,
    AccountVersion,
    KafkaRecord,
    Message,
    Observed,
    Outcome,
    Reconciliation,
    Reference,
    S3Line,
    SinkFigures,
    final_values,
    names_in_effect,
    outcome_of,
    reconcile,
    transaction_id_of,
)
from tools.reconcile.read import (
    Observation,
    Target,
    dead_letter_origins,
    observe,
    read_topic,
)

__all__ = [
    "SINKS", "AccountVersion", "KafkaRecord", "Message", "Observation", "Observed", "Outcome",
    "Reconciliation", "Reference", "S3Line", "SinkFigures", "Target", "check", "dead_letter_origins",
    "final_values", "main", "names_in_effect", "observe", "outcome_of", "read_topic",
    "reconcile", "run", "transaction_id_of",
]


def _truth(ground_truth_file: str | None) -> list[dict]:
    if not ground_truth_file:
        return []
    with open(ground_truth_file, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def check(target: Target, ground_truth_file: str | None = None,
          reference: Reference | None = None) -> tuple[Reconciliation, Reference]:
    """Reads ``target`` once; returns its reconciliation and its own final values."""
    truth = _truth(ground_truth_file)
    seen = observe(target, [t["transaction_id"] for t in truth if t.get("transaction_id")])
    result = reconcile(seen.messages, seen.dead_letter_origins, seen.observed,
                       seen.account_names, truth, seen.account_history, reference)
    return result, final_values(seen.observed, seen.dead_letter_origins)


def run(bootstrap: str, transactions_topic: str, dead_letter_topic: str, postgres_dsn: str,
        ground_truth_file: str | None = None, mongo_uri: str | None = None,
        mongo_db: str | None = None, accounts_topic: str | None = None, *,
        results_topic: str | None = None, s3_prefix: str | None = None,
        s3_args: list[str] | None = None, reference: Reference | None = None
        ) -> Reconciliation:
    """Reads everything and reconciles it (see the module docstring)."""
    target = Target(bootstrap, transactions_topic, dead_letter_topic, postgres_dsn,
                    accounts_topic, results_topic, mongo_uri, mongo_db, s3_prefix, s3_args)
    return check(target, ground_truth_file, reference)[0]


def print_result(result: Reconciliation, out=None) -> None:
    """The summary line, one line per sink, then a few examples of each problem."""
    out = out or sys.stdout
    print(result.line().split(" | ")[0], file=out)
    for figures in result.sinks.values():
        print(f"  {figures.line()}", file=out)
        for problem, examples in figures.examples.items():
            print(f"    {problem}: {', '.join(map(str, examples))}", file=out)
    for problem, examples in result.examples.items():
        print(f"  {problem}: {', '.join(map(str, examples))}", file=out)


def main(argv=None) -> None:
    from pipeline.options import KafkaOptions, MongoOptions, PostgresOptions

    defaults = PostgresOptions([])  # the job's own defaults (env, else the local stack)
    parser = argparse.ArgumentParser(prog="python -m tools.reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka_bootstrap", default=defaults.view_as(KafkaOptions).kafka_bootstrap)
    parser.add_argument("--transactions_topic", default="transactions")
    parser.add_argument("--dead_letter_topic", default="dead-letters")
    parser.add_argument("--accounts_topic", default="accounts",
                        help="account versions, to check each name as of its transaction "
                             "('' to compare with banking.accounts only)")
    parser.add_argument("--postgres_dsn", default=defaults.postgres_dsn)
    parser.add_argument("--results_topic", help="check the fraud results on this topic")
    parser.add_argument("--mongo_uri", default=defaults.view_as(MongoOptions).mongo_uri)
    parser.add_argument("--mongo_db", help="check the fraud results in <db>.transactions")
    parser.add_argument("--s3_prefix",
                        help="check the fraud results under this folder, e.g. "
                             "s3://riskpipe/fraudulent-transactions-result (the job's --s3_* "
                             "defaults reach it)")
    parser.add_argument("--ground_truth_file", help="the simulator's --ground-truth-file")
    parser.add_argument("--reference", help="final values of a fault-free run of the same "
                                            "input (a --snapshot file): counts differing")
    parser.add_argument("--snapshot", help="write this run's final values here")
    args = parser.parse_args(argv)
    target = Target(args.kafka_bootstrap, args.transactions_topic, args.dead_letter_topic,
                    args.postgres_dsn, args.accounts_topic or None, args.results_topic,
                    args.mongo_uri, args.mongo_db, args.s3_prefix)
    reference = Reference.from_json(Path(args.reference).read_text()) if args.reference else None
    result, finals = check(target, args.ground_truth_file, reference)
    if args.snapshot:
        Path(args.snapshot).write_text(finals.to_json())
    print_result(result)
    sys.exit(0 if result.ok else 1)
