"""The local Flink cluster: REST, Prometheus reporters, and a Beam job on the worker pool."""

from __future__ import annotations

import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from stack import flink_rest
from stack.flink import metrics_text

ELEMENTS = 10


def test_overview_reports_a_taskmanager_with_free_slots(flink):
    overview = flink_rest.overview(base_url=flink["rest_url"])
    assert overview["flink-version"] == "1.20.5"
    assert overview["taskmanagers"] >= 1
    assert overview["slots-available"] >= 1


def test_endpoints(flink):
    assert flink["flink_master"] == "127.0.0.1:8081"
    assert Path(flink["job_server_jar"]).is_file()
    args = flink["pipeline_args"]
    assert "--runner=FlinkRunner" in args and "--streaming" in args
    assert f"--environment_config={flink['worker_pool']}" in args


@pytest.mark.parametrize(
    ("role", "prefix"),
    [("jobmanager", "flink_jobmanager_"), ("taskmanager", "flink_taskmanager_")],
)
def test_prometheus_reporters(flink, role, prefix):
    """9249 is the JobManager's reporter and 9250 the TaskManager's, whatever the timing."""
    text = metrics_text(flink["metrics_urls"][role])
    assert f"\n{prefix}" in f"\n{text}"
    other = "flink_taskmanager_" if role == "jobmanager" else "flink_jobmanager_"
    assert f"\n{other}" not in f"\n{text}"


def _count_pipeline(p: beam.Pipeline) -> None:
    # Defined inside a function so the pickler ships the DoFn by value: the worker pool
    # cannot import this test module (tests/ is not a package).
    class Count(beam.DoFn):
        def __init__(self):
            self.seen = Metrics.counter("stack_test", "seen")

        def process(self, element):
            self.seen.inc()
            yield element

    _ = (
        p
        | "Create" >> beam.Create(range(ELEMENTS))
        | "Double" >> beam.Map(lambda n: n * 2)
        | "Count" >> beam.ParDo(Count())
    )


def test_bounded_beam_job_finishes_on_the_cluster(flink):
    job_name = f"stack-test-{uuid.uuid4().hex[:8]}"
    args = [a for a in flink["pipeline_args"] if a != "--streaming"]
    args += [f"--job_name={job_name}"]
    p = beam.Pipeline(options=PipelineOptions(args))
    _count_pipeline(p)
    result = p.run()
    result.wait_until_finish(duration=180_000)

    job_id = flink_rest.wait_for_job_id(
        job_name, timeout=30, base_url=flink["rest_url"]
    )
    assert (
        flink_rest.wait_for_job_state(
            # The job takes seconds; the wait is generous for a slow host. Runs that hung here
            # were the worker pool stopping the other TaskManager's worker (docs/flink-notes.md).
            job_id, "FINISHED", timeout=240, base_url=flink["rest_url"]
        )
        == "FINISHED"
    )
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_name("seen"))[
        "counters"
    ]
    # The uber-jar job service reads Beam's metrics from the Flink job's accumulators.
    assert [c.attempted for c in counters] == [ELEMENTS], counters
