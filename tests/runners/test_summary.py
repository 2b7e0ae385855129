"""The figures a bounded run prints (``pipeline.main.summary``), on Beam's local runner.

A counter two steps report is summed over both; the runner's report, step by step, is
logged beside it, so that a figure that looks wrong can be traced to the runner.
"""

from __future__ import annotations

import logging
import re

import apache_beam as beam

from pipeline.main import summary
from pipeline.metrics import counter


class _Count(beam.DoFn):
    def process(self, element):
        counter("parsed").inc()
        yield element


def test_a_counter_of_two_steps_is_summed_and_each_step_is_logged(caplog):
    p = beam.Pipeline(runner="FnApiRunner")
    (p | "Accounts" >> beam.Create(range(3)) | "ParseAccounts" >> beam.ParDo(_Count()))
    (p | "Transactions" >> beam.Create(range(5)) | "ParseTransactions" >> beam.ParDo(_Count()))
    result = p.run()
    result.wait_until_finish()
    with caplog.at_level(logging.INFO, logger="pipeline.main"):
        figures = summary(result)
    assert figures["parsed"] == 8
    assert figures["joined"] == 0  # never reported: shown as 0
    [line] = [r.getMessage() for r in caplog.records if "as the runner reported" in r.getMessage()]
    assert re.search(r"ParseAccounts[^(]*', 3, 3\)", line), line
    assert re.search(r"ParseTransactions[^(]*', 5, 5\)", line), line
