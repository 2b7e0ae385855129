"""CPU cost per transaction of the detection code, in-process: one JSON object.

    python -m tools.bench_detection                  # 100,000 simulated transactions
    python -m tools.bench_detection --count 50000 --batch 100

Measures process CPU time (not wall time: the machine is shared) over the simulator's
records, replayed as the job's pure code runs them (:mod:`tools.replay`):

- ``account_step``: :class:`~pipeline.domain.attribution.AccountHistory` per account — join,
  rules and the sender's features — and, inside it, the time spent in ``sender_vector`` and
  in the rules (``score_transaction``);
- ``counterparty_step``: :class:`~pipeline.domain.counterparty.CounterpartyHistory` for the
  rows with a counterparty (per transaction overall, and per row it handles);
- ``model``: the committed model's probabilities over batches of ``--batch`` rows, and the
  TreeSHAP reasons of the alerted rows.

All figures are microseconds per transaction of the whole stream unless named otherwise.
Beam's own costs (state, shuffles, RunInference's batching) are not in them: the Flink
benchmark (``python -m tools.bench_flink``) measures the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from pipeline.domain import attribution
from pipeline.domain.attribution import AccountHistory
from pipeline.domain.counterparty import NO_COUNTERPARTY_VECTOR, CounterpartyHistory
from pipeline.domain.model import COMMITTED_MODEL_PATH, FraudModel, load_artifact
from pipeline.records import AttributedTransaction
from simulator.generator import AccountEvent, SimConfig
from tools.replay import simulate


class _Timed:
    """Wraps a function and adds up the CPU time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        started = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - started


def account_step(events):
    """Runs the account step; its rows, and the CPU seconds of the step and its parts."""
    vector, rules = _Timed(attribution.sender_vector), _Timed(attribution.score_transaction)
    attribution.sender_vector, attribution.score_transaction = vector, rules
    try:
        histories: dict[str, AccountHistory] = {}
        rows = []
        started = time.process_time()
        for produced, event in enumerate(events):
            if type(event) is AccountEvent:
                history = histories.setdefault(event.account.account_id, AccountHistory())
                out = history.add_version(produced, event.account)
                first = None
            else:
                history = histories.setdefault(event.transaction.account_id, AccountHistory())
                out = history.add_transaction(produced, event.transaction)
                first = event.transaction.transaction_id
            for row in out:
                rows.append((row, row.transaction.transaction_id != first))
                first = None
        total = time.process_time() - started
    finally:
        attribution.sender_vector, attribution.score_transaction = vector.fn, rules.fn
    return rows, total, vector.seconds, rules.seconds


def counterparty_step(rows):
    """Runs the counterparty step over the account step's rows; final rows and CPU seconds."""
    attributed = [
        AttributedTransaction(row.transaction, None, row.risk_score, row.risk_reasons,
                              features=row.features, correction=correction)
        for row, correction in rows
    ]
    histories: dict[str, CounterpartyHistory] = {}
    final = {}
    handled = 0
    started = time.process_time()
    for row in attributed:
        cp = row.transaction.counterparty_account_id
        if cp is None:
            final[row.transaction_id] = row.features + NO_COUNTERPARTY_VECTOR
            continue
        handled += 1
        for out in histories.setdefault(cp, CounterpartyHistory()).add(row):
            final[out.transaction_id] = out.features
    return final, time.process_time() - started, handled


def model_cost(X: np.ndarray, model: FraudModel, batch: int):
    """CPU seconds of scoring ``X`` in batches, and of explaining the alerted rows."""
    scoring = explaining = 0.0
    alerts = 0
    for start in range(0, len(X), batch):
        part = X[start:start + batch]
        began = time.process_time()
        p = model.probabilities(part)
        scoring += time.process_time() - began
        hit = p >= model.threshold
        if hit.any():
            began = time.process_time()
            for i, shares in zip(np.flatnonzero(hit), model.contributions(part[hit])):
                model.reason(p[i], part[i], shares)
            explaining += time.process_time() - began
            alerts += int(hit.sum())
    return scoring, explaining, alerts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_detection", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="transactions (default 100000)")
    parser.add_argument("--seed", type=int, default=11, help="simulator seed (default 11)")
    parser.add_argument("--batch", type=int, default=200,
                        help="rows per model call (RunInference batches 50-500; default 200)")
    args = parser.parse_args(argv)
    sim = simulate(SimConfig(seed=args.seed, ground_truth_all=True), args.count)
    n = len(sim.truth)
    rows, account_s, vector_s, rules_s = account_step(sim.events)
    final, counterparty_s, handled = counterparty_step(rows)
    X = np.array([final[i] for i in sim.truth], dtype=np.float64)
    model = FraudModel(load_artifact(COMMITTED_MODEL_PATH))
    scoring_s, explaining_s, alerts = model_cost(X, model, args.batch)

    def per(seconds, count=n):
        return round(seconds / count * 1e6, 2)

    print(json.dumps({
        "transactions": n, "rows_from_account_step": len(rows),
        "account_step_us": per(account_s),
        "sender_features_us": per(vector_s), "rules_us": per(rules_s),
        "counterparty_step_us": per(counterparty_s),
        "counterparty_step_us_per_row_handled": per(counterparty_s, max(handled, 1)),
        "rows_with_counterparty": handled,
        "model_scoring_us": per(scoring_s), "model_batch": args.batch,
        "model_reasons_us": per(explaining_s), "alerts": alerts,
        "detection_total_us": per(vector_s + counterparty_s + scoring_s + explaining_s),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
