"""The job on the FnApiRunner, bounded, in this process, over a :class:`SeededTopics`.

    figures = run_pipeline(data, "pipeline")     # the whole job: Kafka → … → sinks
    figures = run_join_only(data, "join")        # read → parse → join and score → count
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.io.kafka import ReadFromKafka
from pipeline.io.postgres import lookup_factory
from pipeline.main import build, summary
from pipeline.options import RunOptions
from pipeline.runners import sdk_worker
from pipeline.transforms.attribute import AttributeTransactions
from pipeline.transforms.parse import ParseAccounts, ParseTransactions, ReadRecords
from tools.bench_data import SeededTopics

__all__ = ["run_join_only", "run_pipeline"]


def _timed(p: beam.Pipeline) -> tuple[float, dict]:
    """Runs ``p`` to the end; its wall time and riskpipe counters."""
    sdk_worker.install_in_process()  # as pipeline.main does for a runner in this process
    started = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    return time.perf_counter() - started, {"state": str(result.state), **summary(result)}


def run_pipeline(data: SeededTopics, group: str, *extra: str) -> dict:
    """The whole job, bounded; wall time from ``run()`` to the end, and transactions/s
    (joined transactions over that time)."""
    options = PipelineOptions(data.job_args(group, *extra))
    options.view_as(RunOptions).bounded = True
    p = beam.Pipeline(options=options)
    build(p, options)
    wall, figures = _timed(p)
    return {
        "seconds": round(wall, 3),
        "transactions_per_s": round(figures["joined"] / wall, 1),
        "records_per_s": round(figures["kafka_records_read"] / wall, 1),
        **figures,
    }


def run_join_only(data: SeededTopics, group: str, *extra: str) -> dict:
    """Read → parse → join and score → count: the stateful step without decisions and sinks."""
    options = PipelineOptions(data.job_args(group, *extra))
    p = beam.Pipeline(options=options)

    def read(topic, parse):
        return ReadRecords(
            ReadFromKafka(data.bootstrap, [topic], f"{data.prefix}{group}",
                          start="earliest", bounded=True),
            parse,
        )

    accounts = p | "ReadAccounts" >> read(data.topics["accounts"], ParseAccounts())
    transactions = p | "ReadTransactions" >> read(
        data.topics["transactions"], ParseTransactions())
    (
        (accounts.records, transactions.records)
        | "AttributeTransactions" >> AttributeTransactions(lookup_factory(data.dsn))
        | "Count" >> beam.combiners.Count.Globally()
    )
    wall, figures = _timed(p)
    return {"seconds": round(wall, 3), "joined": figures["joined"],
            "transactions_per_s": round(figures["joined"] / wall, 1)}


if __name__ == "__main__":
    raise SystemExit(
        "tools.bench_fnapi is a library, not a command: it is used by python -m tools.bench, python -m tools.evaluate"
    )
