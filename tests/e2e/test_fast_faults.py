"""The fast faults of `make chaos`, scaled down, on the standalone Flink cluster.

One seeded input is generated once for the module and run first without a fault (the
reference); each fast fault then runs the job over the same input, paced at 100 messages/s,
injects the fault after a completed checkpoint, restores the service, and reconciles every
sink (:mod:`tools.reconcile`) against the reference: nothing missing, duplicated, extra,
misattributed or different from the fault-free run. The full set, at full length, is
`make chaos`.
"""

from __future__ import annotations

import pytest

from tools.chaos import FAULTS, REFERENCE, run_fault, table
from tools.seeded_input import SeededInput

FAST = [name for name, fault in FAULTS.items() if fault.fast]
SCALE = 0.34  # a 30 s outage lasts about 10 s here
COUNT = 1_500  # 15 s of input at 100/s
SEED = 20261123
RESULT_SINKS = ("postgres", "kafka", "mongo", "s3")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The input and the reference run's final values."""
    workdir = tmp_path_factory.mktemp("fast-faults")
    source = SeededInput.generate(SEED, COUNT, workdir)
    reference = run_fault(REFERENCE, source=source, tps=100, scale=SCALE, settle_s=180.0,
                          workdir=workdir)
    print("\n" + table([reference]))
    assert reference.ok and reference.finals is not None, table([reference])
    return source, reference, workdir


def test_the_fast_set_is_what_the_issue_asks_for():
    assert {"postgres_stop_30s", "validator_down_60s", "job_cancel_resume_checkpoint"} <= set(FAST)


@pytest.mark.parametrize("name", FAST)
def test_fault_changes_nothing_in_any_sink(services, world, name):
    source, reference, workdir = world
    result = run_fault(FAULTS[name], source=source, tps=100, scale=SCALE, settle_s=180.0,
                       workdir=workdir, reference=reference.finals)
    print("\n" + table([result]))
    assert not result.error, table([result])
    assert result.produced > 0 and result.in_postgres > 0 and result.dead_lettered > 0
    assert set(result.sinks) == {*RESULT_SINKS, "dead_letters"}
    for sink, figures in result.sinks.items():
        assert figures.missing == 0 and not figures.duplicated and figures.extra == 0, sink
        assert not figures.stale_names and not figures.wrong_names, (sink, table([result]))
        if sink in RESULT_SINKS:
            assert figures.differing == 0, (sink, table([result]))
            assert figures.found == reference.sinks[sink].found > 0
    assert result.ok, table([result])
