"""Every timer of the job's graph has a name of its own.

The FnApiRunner (local runs and the bounded tests) keeps the timers a bundle writes in one
buffer per timer name for the whole pipeline: two stateful steps with a timer of the same
name receive each other's timers (docs/flink-notes.md, "Timers on the FnApiRunner"). When
the counterparty step's SETTLE timer shared the account step's name, its corrections were
lost on the FnApiRunner and 262 of 4,000 rows differed from the replay.
"""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.transforms.userstate import get_dofn_specs

from pipeline.domain.model import COMMITTED_MODEL_PATH
from pipeline.main import build
from pipeline.options import RunOptions
from pipeline.runners.flags import with_runner_defaults


def timer_names(*args: str) -> Counter:
    options = PipelineOptions(with_runner_defaults(["--runner=DirectRunner", *args], "riskpipe"))
    options.view_as(RunOptions).bounded = True
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    names: Counter = Counter()

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                _, timers = get_dofn_specs(node.transform.fn)
                names.update(timer.name for timer in timers)

    pipeline.visit(Visitor())
    return names


def test_no_two_timers_of_the_job_share_a_name():
    names = timer_names()
    assert names and max(names.values()) == 1, names


def test_no_two_timers_of_the_job_with_the_model_share_a_name():
    names = timer_names(f"--model_path={COMMITTED_MODEL_PATH}")
    steps = {"ts-gc", "ts-settle", "ts-counterparty-shard-gc", "ts-counterparty-shard-settle"}
    assert steps <= set(names), names
    assert max(names.values()) == 1, names
