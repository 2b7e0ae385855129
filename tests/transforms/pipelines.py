"""TestPipelines pinned to the runner each kind of test needs, and a counter reader.

Batch tests run on the FnApiRunner directly: the default DirectRunner would first try
to download the Prism runner from GitHub (and fall back to the FnApiRunner when offline).
TestStream tests need the BundleBasedDirectRunner, the only local runner that executes
TestStream in Python. Its counters are unreliable (each step reports only its first
bundle), so counters are checked on batch pipelines.
"""

from __future__ import annotations

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline


def batch_pipeline() -> BeamTestPipeline:
    """A TestPipeline on the FnApiRunner (bounded inputs, counters work)."""
    return BeamTestPipeline(runner="FnApiRunner")


def stream_pipeline() -> BeamTestPipeline:
    """A TestPipeline on the BundleBasedDirectRunner, for TestStream inputs and timers."""
    return BeamTestPipeline(runner="BundleBasedDirectRunner")


def run_and_count(pipeline: BeamTestPipeline) -> dict[str, int]:
    """Runs ``pipeline`` to the end and returns its non-zero ``riskpipe`` counters."""
    result = pipeline.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace("riskpipe"))
    return {c.key.metric.name: c.committed for c in query["counters"] if c.committed}
