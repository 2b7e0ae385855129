"""Why a local run refuses ``--direct_num_workers`` other than 1 (``pipeline.main``).

The FnApiRunner on two workers drops what a splittable DoFn defers, as the Kafka read does
after every ``max_batch`` records. This shows it on Beam's runner alone, with an SDF that
emits one offset per bundle and defers the rest; if a Beam upgrade makes the two-worker
run complete, the guard can go.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.core import RestrictionProvider

from pipeline.errors import ConfigurationError
from pipeline.main import check_local_runner

OFFSETS = 6


class _Offsets(RestrictionProvider):
    def initial_restriction(self, element):
        return OffsetRange(0, OFFSETS)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return restriction.size()


class _OnePerBundle(beam.DoFn):
    def process(self, element, tracker=beam.DoFn.RestrictionParam(_Offsets())):
        position = tracker.current_restriction().start
        if tracker.try_claim(position):
            yield f"{element}:{position}"
            tracker.defer_remainder()


def _run(workers: int, check) -> None:
    """Runs the SDF over two elements on ``workers`` workers; ``check`` gets its output."""
    options = PipelineOptions(
        [], runner="FnApiRunner", direct_num_workers=workers, direct_running_mode="in_memory"
    )
    with beam.Pipeline(options=options) as p:
        read = p | beam.Create(["a", "b"]) | beam.ParDo(_OnePerBundle())
        assert_that(read, check)


def test_one_worker_reads_every_deferred_remainder():
    _run(1, equal_to([f"{e}:{i}" for e in "ab" for i in range(OFFSETS)]))


def test_two_workers_drop_the_deferred_remainders():
    def fewer(read):
        assert len(read) < 2 * OFFSETS, read

    _run(2, fewer)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_local_run_on_more_than_one_worker_is_refused(workers):
    options = PipelineOptions(["--runner=FnApiRunner", f"--direct_num_workers={workers}"])
    with pytest.raises(ConfigurationError, match="--direct_num_workers"):
        check_local_runner(options)


def test_one_worker_and_flink_are_accepted():
    check_local_runner(PipelineOptions(["--runner=FnApiRunner"]))
    check_local_runner(PipelineOptions(["--runner=FlinkRunner", "--direct_num_workers=2"]))
