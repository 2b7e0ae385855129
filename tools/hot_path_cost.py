"""The pure per-transaction cost of the job's hot path (parse → join and score → route → row).

Runs a seeded simulation generated in this process through :class:`tools.hot_path.HotPath`
with no Kafka and no PostgreSQL (the lookup finds nothing; accounts come from the topic),
and prints microseconds of process CPU time per transaction (not wall time: the machine may
be shared), the best of ``--repeat`` passes, with the collector paced as in the job's
workers (``--gc-default``: CPython's own thresholds):

    python -m tools.hot_path_cost --count 20000 --accounts 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from pipeline.runners import gc_pacing
from tools.hot_path import HotPath
from tools.seeded_input import SeededInput


def one_pass(messages, with_features: bool = False) -> tuple[float, int]:
    """CPU seconds spent on every message of ``messages`` and the number of transactions
    (``with_features``: the account step of the job with a fraud model)."""
    path = HotPath("postgresql://unused", with_features)
    path.lookup = lambda ids: {}
    histories: dict = {}

    def history_of(account_id):
        history = histories.get(account_id)
        if history is None:
            history = histories[account_id] = path.history()
        return history

    transactions = 0
    gc.collect()
    started = time.process_time()
    for produced, message in enumerate(messages):
        is_account = message.role == "accounts"
        record = path.parse(is_account, message.value)
        if record is None:
            continue
        if is_account:
            path.account(history_of(record.account_id), produced, record)
        else:
            transactions += 1
            path.transaction(history_of(record.account_id), produced, record)
    path.release(history_of)
    return time.process_time() - started, transactions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="transactions simulated")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts simulated")
    parser.add_argument("--seed", type=int, default=20261201, help="simulator seed")
    parser.add_argument("--repeat", type=int, default=3, help="passes; the fastest counts")
    parser.add_argument("--with-features", action="store_true",
                        help="with the sender's features, as the job with a --model_path")
    parser.add_argument("--gc-default", action="store_true",
                        help="CPython's own collector thresholds, not the job workers' "
                             "(pipeline.runners.gc_pacing)")
    args = parser.parse_args(argv)
    if not args.gc_default:
        gc_pacing.pace()  # as the job's workers
    with tempfile.TemporaryDirectory() as workdir:
        source = SeededInput.generate(seed=args.seed, count=args.count, workdir=Path(workdir),
                                      accounts=args.accounts)
    best, transactions = min(one_pass(source.messages, args.with_features)
                             for _ in range(args.repeat))
    print(json.dumps({"transactions": transactions, "cpu_seconds": round(best, 3),
                      "us_per_transaction": round(best / transactions * 1e6, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
