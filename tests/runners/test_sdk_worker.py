"""The SDK worker changes of the riskpipe worker pool, under Beam's own gRPC SDK harness.

The FnApiRunner in ``multi_threading`` mode runs its SDK harness in this process over real
gRPC data and state channels (as Flink's workers do), so the changes apply to it once
installed here: state cache sizing, pipelined state commits, output flushed between
elements. The join-and-score step must give the same rows with them as without them.
"""

from __future__ import annotations

import gc
import sys
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker import statecache, statesampler
from apache_beam.testing.util import assert_that, equal_to

from factories import T0, account, transaction
from pipeline.runners import gc_pacing, sdk_worker
from pipeline.transforms.attribute import AttributeTransactions, _History
from pipeline.transforms.counterparties import ADD, _Change, _Shard

ACCOUNTS = [account(account_id=f"a{i}", account_name=f"Name {i}") for i in range(20)]
TRANSACTIONS = [
    transaction(transaction_id=f"t{i:04d}", account_id=f"a{i % 20}",
                datetime_occurred=T0 + timedelta(minutes=i % 97), amount=10.0 + i % 13)
    for i in range(600)
]


def run_the_step() -> None:
    """Joins every transaction to its account's name, on the multi-threaded FnApiRunner."""
    options = PipelineOptions(direct_running_mode="multi_threading", direct_num_workers=2)
    with beam.Pipeline(runner="FnApiRunner", options=options) as pipeline:
        accounts = pipeline | "Accounts" >> beam.Create(ACCOUNTS)
        transactions = pipeline | "Transactions" >> beam.Create(TRANSACTIONS)
        rows = (accounts, transactions) | AttributeTransactions(ttl=timedelta(minutes=10))
        assert_that(
            rows | beam.Map(lambda r: (r.transaction_id, r.account_name)) | beam.Distinct(),
            equal_to([(t.transaction_id, f"Name {int(t.account_id[1:])}") for t in TRANSACTIONS]),
        )


@pytest.fixture
def installed(monkeypatch):
    """The changes installed; yields the list of pipelined commits made."""
    commits = []
    pipelined = sdk_worker._commit_pipelined

    def counted(context):
        commits.append(len(context._all_states))
        pipelined(context)

    monkeypatch.setattr(sdk_worker, "_commit_pipelined", counted)
    sdk_worker.install(pipelined_commits=True, output_interval_ms=5)
    yield commits
    sdk_worker.uninstall()


def test_the_step_runs_the_same_with_the_changes_installed(installed):
    run_the_step()
    assert sum(installed) >= 20  # every account's state went through the pipelined commit


def test_a_history_in_the_cache_weighs_about_the_same_without_the_module_walk(installed):
    history = _History()
    for txn in TRANSACTIONS[:40]:
        history.add_transaction(0, txn)
    changes = [_Change((ADD, (i,), i, 0, 0)) for i in range(5)]
    values = ([history], [], [history, _History()], [(1, "a")], [_WithReferents([history])],
              changes, [*changes, (1, "a")])
    assert all(statecache.get_deep_size(value) > 0 for value in values)
    sdk_worker.uninstall()
    beam_weights = [statecache.get_deep_size(value) for value in values]
    sdk_worker.install()
    assert [statecache.get_deep_size(value) for value in values] == beam_weights


def test_a_journal_is_weighed_by_its_snapshot_which_counts_the_changes_after_it(installed):
    """Beam weighs a bag again after every append: a counterparty shard's journal is weighed
    by its first value alone, whose weight grows with the changes it holds after it."""
    shard = _Shard()
    short = [shard]
    weight_alone = statecache.get_deep_size(short)
    shard.applied = 1000
    long = [shard, *(_Change((ADD, (i,), i, 0, 0)) for i in range(1000))]
    assert statecache.get_deep_size(long) == sys.getsizeof(long) + sys.getsizeof(shard)
    assert statecache.get_deep_size(long) > weight_alone + 1000 * 1000  # ~1,200 a change


class _WithReferents(statecache.CacheAware):
    """A cached value that names what else to weigh."""

    def __init__(self, referents):
        self.referents = referents

    def get_referents_for_cache(self):
        return self.referents


def test_the_collector_is_paced_while_installed_and_as_before_after():
    before = gc.get_threshold()
    sdk_worker.install()
    try:
        assert gc.get_threshold() == (gc_pacing.YOUNG_THRESHOLD, before[1], before[2])
    finally:
        sdk_worker.uninstall()
    assert gc.get_threshold() == before


def test_paced_restores_the_thresholds_it_found():
    gc.set_threshold(1234, 7, 9)
    try:
        with gc_pacing.paced():
            assert gc.get_threshold() == (gc_pacing.YOUNG_THRESHOLD, 7, 9)
        assert gc.get_threshold() == (1234, 7, 9)
    finally:
        gc.set_threshold(700, 10, 10)


def sampler_periods_of_a_run(monkeypatch) -> set:
    """The sampling periods of the state samplers the step's bundles started."""
    periods = set()
    start = statesampler.StateSampler.start

    def recorded(self):
        periods.add(self.sampling_period_ms)
        start(self)

    monkeypatch.setattr(statesampler.StateSampler, "start", recorded)
    run_the_step()
    return periods


def test_a_bundles_state_sampler_sleeps_briefly_so_its_end_does_not_wait(installed, monkeypatch):
    # Beam's sampler sleeps up to 200 ms and the bundle's end joins it.
    assert sampler_periods_of_a_run(monkeypatch) == {sdk_worker.SAMPLER_PERIOD_MS}
    sdk_worker.uninstall()
    assert sampler_periods_of_a_run(monkeypatch) == {statesampler.DEFAULT_SAMPLING_PERIOD_MS}
    sdk_worker.install()
