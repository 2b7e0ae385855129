"""The model path's flags: --counterparty_shards reaches the counterparty step, and a bad
value ends with one line."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from pipeline import main
from pipeline.domain.model import COMMITTED_MODEL_PATH
from pipeline.transforms.counterparties import _KeyAndGroupFn
from stack import config


def _shards(*flags: str) -> list[int]:
    options = PipelineOptions([f"--model_path={COMMITTED_MODEL_PATH}", "--max_records=1", *flags])
    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    main.build(pipeline, options)  # builds the graph; connects to nothing
    found = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo) and isinstance(node.transform.fn,
                                                                     _KeyAndGroupFn):
                found.append(node.transform.fn._shards)

    pipeline.visit(Visitor())
    return found


def test_the_shard_count_reaches_the_counterparty_step():
    assert _shards() == [64]
    assert _shards("--counterparty_shards=4096") == [4096]


def test_a_bad_shard_count_ends_the_job_with_a_line_naming_the_flag():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.main", "--counterparty_shards=0", "--no_preflight"],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "error: argument --counterparty_shards: must be >= 1, got '0'")
    assert "Traceback" not in done.stderr
