"""The validator's batching flags: they reach the step, and bad values end with one line."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import main
from stack import config
from tests.test_validator_key import _validate_fn


def test_the_flags_reach_the_validating_step():
    options = PipelineOptions([
        "--validator_batch_size=7",
        "--validator_timeout_s=2.5", "--max_records=1",
    ])
    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    main.build(pipeline, options)  # builds the graph; connects to nothing
    fn = _validate_fn(pipeline)
    assert (fn.batch_size, fn.timeout_s) == (7, 2.5)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--validator_timeout_s=0", "argument --validator_timeout_s: must be > 0 seconds, got '0'"),
        ("--validator_timeout_s=inf", "argument --validator_timeout_s: must be a finite number of seconds, got 'inf'"),
        ("--validator_timeout_s=soon", "argument --validator_timeout_s: not a number of seconds: 'soon'"),
        ("--validator_batch_size=0", "argument --validator_batch_size: must be >= 1, got '0'"),
    ],
)
def test_a_bad_value_ends_the_job_with_a_line_naming_the_flag(flag, message):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.main", flag, "--no_preflight"],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(f"error: {message}")
    assert "Traceback" not in done.stderr
