"""Detection quality of a seeded simulation through the job on the DirectRunner.

    python -m tools.evaluate                 # `make evaluate`
    python -m tools.evaluate --count 50000 --event-rate 0.05 --seed 3

The simulator writes ``--count`` transactions with injected fraud (every scenario) and a
ground-truth row for each of them to fresh topics; the whole job runs over them
(FnApiRunner, bounded, in-process); then, against the ground truth's ``is_fraud``:

- ``final``: the ``is_fraudulent`` the job wrote to banking.attributed_transactions
  (the bank's label, else the validator's verdict for ``unidentified`` ones);
- ``risk_score``: ``risk_score >= scoring.THRESHOLD`` alone.

Each gets precision, recall, F1 and the alert rate, over every transaction and over the ones
the bank did not label fraudulent (``unlabelled``: the fraud only riskpipe can find; the
bank's own labels make the first figures look better than detection is), with recall per
fraud scenario. A table goes to stderr, one JSON object to stdout.

Event time: the simulator's default pace (100 transactions per second of event time)
makes every account transact every ~10 s, which fires the velocity signals on ordinary
customers. The default here, 0.05/s with 1000 accounts, is about 4 transactions per
account per day, a retail bank's pace; ``--event-rate`` changes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter

import psycopg2

import stack
from pipeline.domain.scoring import THRESHOLD
from tools.bench_data import SERVICES, SeededTopics
from tools.bench_fnapi import run_pipeline


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4)}


def _population(transactions: list[dict], rows: dict[str, tuple]) -> dict:
    """Each predictor's precision, recall, F1, alert rate and recall per scenario."""
    predictors = {
        "final": lambda row: bool(row[1]),
        "risk_score": lambda row: row[0] >= THRESHOLD,
    }
    scenarios = Counter(t["scenario"] for t in transactions if t["is_fraud"])
    out: dict = {"transactions": len(transactions),
                 "fraud": sum(t["is_fraud"] for t in transactions),
                 "fraud_by_scenario": dict(scenarios)}
    for name, predict in predictors.items():
        counts = Counter()
        caught = Counter()
        for t in transactions:
            row = rows.get(t["transaction_id"])
            predicted = row is not None and predict(row)
            counts[(t["is_fraud"], predicted)] += 1
            if t["is_fraud"] and predicted:
                caught[t["scenario"]] += 1
        alerts = counts[(True, True)] + counts[(False, True)]
        out[name] = {
            **_prf(counts[(True, True)], counts[(False, True)], counts[(True, False)]),
            "alert_rate": round(alerts / len(transactions), 5) if transactions else 0.0,
            "recall_by_scenario": {s: round(caught[s] / n, 4) for s, n in scenarios.items()},
        }
    return out


def evaluate(truth: list[dict], rows: dict[str, tuple]) -> dict:
    """Scores ``rows`` (transaction_id -> (risk_score, is_fraudulent, validated_by)).

    Twice: over every transaction, and over those the bank did not label fraudulent
    (``unlabelled``: ground truth's ``bank_labelled`` false), the fraud only riskpipe can find.
    """
    transactions = [t for t in truth if t.get("kind") == "transaction"]
    out = _population(transactions, rows)
    out["missing_rows"] = sum(t["transaction_id"] not in rows for t in transactions)
    out["unlabelled"] = _population(
        [t for t in transactions if not t.get("bank_labelled")], rows
    )
    # where the final verdicts came from
    out["validated_by"] = dict(Counter(row[2] for row in rows.values()))
    return out


def table(result: dict) -> str:
    lines = [
        (
            f"{result['transactions']} transactions, {result['fraud']} fraudulent "
            f"(event rate {result['event_rate']}/s, seed {result['seed']}), "
            f"risk threshold {THRESHOLD}"
        ),
    ]
    unlabelled = result["unlabelled"]
    for title, population in (
        ("every transaction", result),
        (f"the {unlabelled['fraud']} fraudulent the bank did not label", unlabelled),
    ):
        lines.append("")
        lines.append(title)
        lines.append(f"{'predictor':<12} {'precision':>9} {'recall':>7} {'F1':>7} "
                     f"{'alerts':>7} {'TP':>6} {'FP':>6} {'FN':>6}")
        for name in ("final", "risk_score"):
            m = population[name]
            lines.append(f"{name:<12} {m['precision']:>9.3f} {m['recall']:>7.3f} "
                         f"{m['f1']:>7.3f} {m['alert_rate']:>7.2%} "
                         f"{m['tp']:>6} {m['fp']:>6} {m['fn']:>6}")
    lines.append("")
    lines.append(f"{'recall by scenario (not labelled)':<34} {'n':>5} {'final':>7} {'risk':>7}")
    for scenario, n in sorted(unlabelled["fraud_by_scenario"].items()):
        lines.append(
            f"{scenario:<34} {n:>5} {unlabelled['final']['recall_by_scenario'][scenario]:>7.3f} "
            f"{unlabelled['risk_score']['recall_by_scenario'][scenario]:>7.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=20_000, help="transactions (default 20000)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--event-rate", type=float, default=0.05,
                        help="transactions per second of event time (default 0.05)")
    parser.add_argument("--fraud-rate", type=float, default=0.01,
                        help="share of injected fraud (default 0.01)")
    parser.add_argument("--keep", action="store_true", help="keep topics and rows afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    bench = SeededTopics(stack.up(SERVICES), prefix="evaluate")
    try:
        sim = bench.simulate(args.count, args.seed, args.accounts,
                             "--event-rate", str(args.event_rate),
                             "--fraud-rate", str(args.fraud_rate))
        run = run_pipeline(bench, "evaluate")
        ids = bench.ids
        with psycopg2.connect(bench.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT transaction_id, risk_score, is_fraudulent, validated_by "
                        "FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                        (ids,))
            rows = {r[0]: r[1:] for r in cur.fetchall()}
        result = {"seed": args.seed, "event_rate": args.event_rate,
                  "accounts": args.accounts, "threshold": THRESHOLD,
                  "simulated_fraud_by_scenario": sim["fraud"]["by_scenario"],
                  "pipeline_seconds": run["seconds"], "pipeline_counters": run,
                  **evaluate(bench.truth, rows)}
    finally:
        if not args.keep:
            bench.cleanup()
    print(table(result), file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
