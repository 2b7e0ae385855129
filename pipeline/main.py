"""The riskpipe job: Kafka → parse → join → score (rules, counterparties, model) → route →
validate → write.

Run it on the DirectRunner over a bounded slice of the topics (local debugging)::

    python -m pipeline.main --runner=DirectRunner --max_records=10000

or streaming on the local Flink cluster (`make up` starts it)::

    python -m pipeline.main --runner=FlinkRunner

Every default points at the local stack; `--help` lists the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    S3Options,
    StandardOptions,
)

from pipeline import metrics, preflight
from pipeline.domain.model import load_artifact
from pipeline.errors import ConfigurationError, RiskpipeError
from pipeline.io.kafka import ReadFromKafka, WriteDeadLetters
from pipeline.io.postgres import (
    RESULTS_LOOKUP_PATIENCE_S,
    WriteAttributedTransactions,
    lookup_factory,
)
from pipeline.options import (
    JoinOptions,
    KafkaOptions,
    ModelOptions,
    MongoOptions,
    PostgresOptions,
    ResultsOptions,
    RunOptions,
    ValidatorOptions,
)
from pipeline.runners import sdk_worker
from pipeline.runners.flags import with_runner_defaults
from pipeline.runners.savepoint import SavepointAwareFlinkRunner
from pipeline.transforms.attribute import AttributeTransactions
from pipeline.transforms.counterparties import ProfileCounterparties
from pipeline.transforms.decide import DecideFraud
from pipeline.transforms.model import ScoreWithModel
from pipeline.transforms.parse import ReadBankRecords
from pipeline.transforms.results import WriteFraudResults
from pipeline.transforms.validate import ValidateUnidentified

logger = logging.getLogger(__name__)

JOB_NAME = "transaction-attribution"
OPTION_GROUPS = (
    KafkaOptions, PostgresOptions, MongoOptions, ResultsOptions, ValidatorOptions,
    JoinOptions, ModelOptions, RunOptions,
)
# The figures printed after a bounded run, in the order of the graph.
SUMMARY_COUNTERS = (
    "kafka_records_read", "parsed", "dead_lettered", "joined", "expired_unjoined",
    "scored", "high_risk", "corrected", "counterparty_corrected", "model_alerts", "routed_bank_fraudulent", "validated_fraudulent",
    "postgres_rows_written", "mongo_rows_written", "kafka_records_written",
)


def s3_args(options: PipelineOptions) -> list[str]:
    """The ``--s3_*`` flags the job was given, for the S3 writers.

    On a remote SDK harness (Flink's EXTERNAL worker pool runs each worker in a thread)
    ``FileSystems`` knows no pipeline options, so S3 writers must get them explicitly.
    """
    given = options.view_as(S3Options).get_all_options(drop_default=True)
    return [
        f"--{name}" if value is True else f"--{name}={value}"
        for name, value in given.items()
        if name.startswith("s3_") and value not in (None, False)
    ]


def check_local_runner(options: PipelineOptions) -> None:
    """Refuses a local run on more than one worker: it would lose transactions.

    The FnApiRunner runs a stage on several workers by splitting its input, and it keeps
    none of the remainders a splittable DoFn defers (Beam's ``ParallelBundleManager`` merges
    only the workers' metrics and errors). The Kafka read defers the rest of a partition
    after every ``max_batch`` records, so on two workers it read 41,198 of a backlog's
    101,198 records and finished as if done. ``tests/runners/test_direct_runner_workers.py``
    shows the loss on Beam's runner alone.
    """
    runner = options.view_as(StandardOptions).runner
    workers = options.view_as(DirectOptions).direct_num_workers
    if runner in (None, "DirectRunner", "FnApiRunner") and workers != 1:
        raise ConfigurationError(
            f"runner: --direct_num_workers={workers} is not supported: the DirectRunner "
            "keeps no deferred reads on more than one worker and would skip most of each "
            "Kafka partition; use 1 (the default), or --runner=FlinkRunner with "
            "--parallelism to use more cores"
        )


def build(p: beam.Pipeline, options: PipelineOptions) -> None:
    """Adds the whole graph to ``p``: read → parse → attribute (join + rules) → decide →
    write, one labelled step per arrow of the README's architecture; with a fraud model
    (``--model_path``), attribute also computes the sender's features, and profile
    counterparties → score with the model come before decide."""
    kafka = options.view_as(KafkaOptions)
    dsn = options.view_as(PostgresOptions).postgres_dsn
    run = options.view_as(RunOptions)
    bounded = bool(run.bounded or run.max_records)
    lookups = lookup_factory(dsn)
    check_local_runner(options)

    def read(topic, metrics_name):
        # Metrics carry the role, not the topic, so the dashboard works for any topic names.
        return ReadFromKafka(
            kafka.kafka_bootstrap, [topic], kafka.consumer_group, start=kafka.start_offset,
            bounded=bounded, max_records=run.max_records, metrics_name=metrics_name,
        )

    if not kafka.transactions_topic:
        raise ConfigurationError("kafka: --transactions_topic must name a topic")
    inputs = p | "ReadBankRecords" >> ReadBankRecords(
        # --accounts_topic='' reads no accounts topic (the fraud PoC's transfers carry them).
        read(kafka.accounts_topic, "accounts") if kafka.accounts_topic else None,
        read(kafka.transactions_topic, "transactions"),
        input_format=kafka.input_format,
        accounts_first=bounded,
    )
    validator = options.view_as(ValidatorOptions)
    model_options = options.view_as(ModelOptions)
    model_path = model_options.model_path
    scored = (inputs["accounts"], inputs["transactions"]) | "AttributeTransactions" >> (
        AttributeTransactions(
            lookups, ttl=options.view_as(JoinOptions).join_ttl_s, features=bool(model_path)
        )
    )
    if model_path:  # the fraud model scores; without one the rules' score stands
        scored = (
            scored
            | "ProfileCounterparties" >> ProfileCounterparties(
                shards=model_options.counterparty_shards
            )
            | "ScoreWithModel" >> ScoreWithModel(load_artifact(model_path))
        )
    decisions = (
        scored
        | "DecideFraud" >> DecideFraud(
            ValidateUnidentified(
                validator.validator_url,
                validator.validator_api_key or None,
                batch_size=validator.validator_batch_size,
                timeout_s=validator.validator_timeout_s,
                lookup_factory=lookups,
            )
        )
    )
    # The step's serialized DoFn carries the key to the workers; the options are submitted
    # and stored with the job, so the key leaves them.
    validator.validator_api_key = None
    # Each stream of decisions is written where it is decided (DecideFraud says why);
    # Postgres keeps a row's newest version (processed_at) whichever write comes last.
    streams = {"Decided": decisions["decided"], "Validated": decisions["validated"]}
    batch_size = options.view_as(PostgresOptions).postgres_batch_size
    for name, rows in streams.items():
        rows | f"Write{name}ToPostgres" >> WriteAttributedTransactions(dsn, batch_size)
    results = options.view_as(ResultsOptions)
    mongo = options.view_as(MongoOptions)
    (
        [rows | f"Keep{name}Fraudulent" >> beam.Filter(lambda r: r.is_fraudulent)
         for name, rows in streams.items()]
        | "MergeFraudulent" >> beam.Flatten()
        | "WriteFraudResults" >> WriteFraudResults(
            kafka.kafka_bootstrap, kafka.fraud_results_topic, kafka.users_topic,
            mongo.mongo_uri, mongo.mongo_db, results.s3_bucket, results.results_window_s,
            # Waits out a Postgres restart: failing here would restart the whole job.
            lookup_factory(dsn, patience_s=RESULTS_LOOKUP_PATIENCE_S),
            s3_args=s3_args(options) or None,
        )
    )
    (
        (inputs["dead_letters"], decisions["dead_letters"])
        | "MergeDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(kafka.kafka_bootstrap, kafka.dead_letter_topic)
    )


def summary(result) -> dict:
    """The riskpipe counters of a finished run, by name: each step's committed value, else
    its attempted one (a runner that commits none, such as Flink, reports only attempts).

    The runner's report itself (step, committed, attempted) is logged in one line, so that
    a figure that looks wrong can be traced to what the runner said."""
    figures = dict.fromkeys(SUMMARY_COUNTERS, 0)
    reported: dict[str, list] = {}
    for counter in result.metrics().query()["counters"]:
        name = counter.key.metric.name
        if counter.key.metric.namespace == metrics.NAMESPACE and name in figures:
            figures[name] += counter.committed or counter.attempted or 0
            reported.setdefault(name, []).append(
                (counter.key.step, counter.committed, counter.attempted)
            )
    logger.info("counters as the runner reported them (step, committed, attempted): %s",
                reported)
    return figures


def check_options(options: PipelineOptions) -> None:
    """The flags' own checks, before any service is contacted: every group of riskpipe's
    options parsed (a bad value ends with argparse's line naming the flag), and the model
    artifact, when one is named, read and checked (``load_artifact``: one line)."""
    for group in OPTION_GROUPS:
        options.view_as(group)
    model_path = options.view_as(ModelOptions).model_path
    if model_path:
        load_artifact(model_path)


def parse_args(argv):
    """Splits riskpipe's own flags (--help, --no_preflight) from the pipeline's."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.main", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="Show the options and exit.")
    parser.add_argument(
        "--no_preflight", action="store_true",
        help="Skip the reachability checks of Kafka, PostgreSQL, MongoDB and S3.",
    )
    known, rest = parser.parse_known_args(argv)
    if known.help:
        print_help(parser)
        sys.exit(0)
    return known, rest


def print_help(parser: argparse.ArgumentParser) -> None:
    """Prints riskpipe's options, then the runner options that matter here."""
    for group in OPTION_GROUPS:
        group._add_argparse_args(parser.add_argument_group(group.__doc__.strip().rstrip(".")))
    runner = parser.add_argument_group("Runner (Beam's own flags; more in Beam's docs)")
    runner.add_argument(
        "--runner",
        help="DirectRunner (bounded, in this process; the default), FlinkRunner (streaming on "
        "$RISKPIPE_FLINK_MASTER, default 127.0.0.1:8081) or PrismRunner.",
    )
    runner.add_argument("--flink_master", help="host:port of Flink's REST API, or [local].")
    runner.add_argument("--s3_endpoint_url", help="S3 endpoint (env RISKPIPE_S3_ENDPOINT).")
    parser.print_help()


def run(argv=None) -> int:
    """Builds and runs the job; returns the process exit code."""
    known, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    options = PipelineOptions(with_runner_defaults(beam_args, JOB_NAME))
    standard = options.view_as(StandardOptions)
    on_flink = standard.runner == "FlinkRunner"  # normalised by with_runner_defaults
    check_local_runner(options)
    check_options(options)
    if not known.no_preflight:
        preflight.check_all(options)
    if not standard.streaming:
        # Local runners cannot run an unbounded read: read a bounded slice instead.
        options.view_as(RunOptions).bounded = True
    # Beam's FlinkRunner drops --savepoint_path on uber-jar submissions; this one keeps it.
    p = beam.Pipeline(
        runner=SavepointAwareFlinkRunner() if on_flink else None,
        options=options,
    )
    build(p, options)
    if not on_flink:
        sdk_worker.install_in_process()  # its SDK worker runs here: the pool's changes
    result = p.run()
    if standard.streaming and on_flink:
        job_name = options.get_all_options().get("job_name") or JOB_NAME
        logger.info("submitted %s to Flink; watch it in the Flink UI", job_name)
        return 0
    result.wait_until_finish()
    print(json.dumps({"job": JOB_NAME, "state": str(result.state), **summary(result)}))
    return 0


def main(argv=None) -> None:
    """Console entry point: configuration errors end with one line, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(run(argv))
    except ConfigurationError as error:
        print(f"riskpipe: error: {error}", file=sys.stderr)
        sys.exit(2)
    except RiskpipeError as error:
        print(f"riskpipe: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
