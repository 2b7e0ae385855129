"""The fast faults of `make chaos`, scaled down, on the standalone Flink cluster.

Each runs a seeded simulation paced at 100 transactions/s while the job streams it, injects
the fault after a completed checkpoint, restores the service, and reconciles every sink
(:mod:`tools.reconcile`): nothing missing, nothing duplicated, nothing misattributed.
The full set, at full length, is `make chaos`.
"""

from __future__ import annotations

import pytest

from tools.chaos import FAULTS, run_fault, table

FAST = [name for name, fault in FAULTS.items() if fault.fast]
SCALE = 0.34  # a 30 s outage lasts about 10 s here
COUNT = 1_500  # 15 s of simulation at 100/s


def test_the_fast_set_is_what_the_issue_asks_for():
    assert {"postgres_stop_30s", "validator_down_60s", "job_cancel_resume_checkpoint"} <= set(FAST)


@pytest.mark.parametrize("name", FAST)
def test_fault_loses_and_doubles_nothing(services, name, tmp_path):
    result = run_fault(FAULTS[name], seed=20261123 + FAST.index(name), count=COUNT, tps=100,
                       scale=SCALE, settle_s=180.0, workdir=tmp_path)
    print("\n" + table([result]))
    assert not result.error, table([result])
    assert result.produced > 0 and result.in_postgres > 0
    assert result.missing == 0 and result.duplicated == 0, table([result])
    assert result.missing_in_mongo == 0, table([result])
    # Only after a replay may a row keep an earlier account name (a known limitation,
    # docs/flink-notes.md: the replay read the transaction before the update preceding it).
    assert result.wrong - result.tolerated == 0, table([result])
    assert result.ok, table([result])
    assert result.dead_lettered > 0  # the simulation's malformed messages, each accounted for
