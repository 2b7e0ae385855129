"""Command-line options of the riskpipe job, one PipelineOptions class per concern.

Every default points at the local stack (`make up`) and can be overridden by a flag or
by the environment variable named in its help. Credentials are read from the
environment; the defaults work only against the local stack.
"""

from __future__ import annotations

import argparse
import os

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.domain.shapes import INPUT_FORMATS
from pipeline.local_defaults import (
    LOCAL_KAFKA_BOOTSTRAP,
    LOCAL_MONGO_URI,
    LOCAL_PG_DSN,
    LOCAL_VALIDATOR_API_KEY,
    LOCAL_VALIDATOR_URL,
)

__all__ = [
    "JoinOptions",
    "KafkaOptions",
    "ModelOptions",
    "MongoOptions",
    "PostgresOptions",
    "ResultsOptions",
    "RunOptions",
    "ValidatorOptions",
    "env",
]



def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def env(name: str, default: str) -> str:
    """The value of environment variable ``name``, or ``default`` when unset or empty."""
    return os.environ.get(name) or default


class KafkaOptions(PipelineOptions):
    """Where the job reads accounts and transactions, and writes its Kafka outputs."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--kafka_bootstrap",
            default=env("RISKPIPE_KAFKA_BOOTSTRAP", LOCAL_KAFKA_BOOTSTRAP),
            help="Kafka bootstrap servers, host:port[,host:port] (env RISKPIPE_KAFKA_BOOTSTRAP).",
        )
        parser.add_argument(
            "--accounts_topic",
            default="accounts",
            help="Topic of accounts; '' reads none (the fraud PoC's transfers carry their "
            "users; other accounts then come only from banking.accounts).",
        )
        parser.add_argument(
            "--transactions_topic", default="transactions", help="Topic of transactions."
        )
        parser.add_argument(
            "--input_format",
            choices=INPUT_FORMATS,
            default="auto",
            help="Shape of the input records: riskpipe's own; flinksql, the Flink SQL risk "
            "job's (topics accounts and bank_transactions, capitalised vocabularies, "
            "datetime_occured); poc, the Kafka Connect fraud PoC's (one topic, "
            "bank-transactions, a transfer with both users); or auto, each message "
            "recognised by its keys. See docs/input-formats.md.",
        )
        parser.add_argument(
            "--dead_letter_topic",
            default="dead-letters",
            help="Topic that receives every record the job could not process, with the reason.",
        )
        parser.add_argument(
            "--fraud_results_topic",
            default="fraudulent-transactions-result",
            help="Topic of fraudulent transactions (sender and receiver ids).",
        )
        parser.add_argument(
            "--users_topic", default="users", help="Topic of the users involved in fraud."
        )
        parser.add_argument(
            "--consumer_group",
            default="riskpipe",
            help="Kafka consumer group; its committed offsets are where a restarted job resumes.",
        )
        parser.add_argument(
            "--start_offset",
            choices=("committed", "earliest", "latest"),
            default="committed",
            help="Where to start reading: the group's committed offsets (falling back to "
            "earliest), the earliest, or the latest offsets.",
        )


class PostgresOptions(PipelineOptions):
    """The account table of record and the attributed-transactions sink."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--postgres_dsn",
            default=env("RISKPIPE_PG_DSN", LOCAL_PG_DSN),
            help="PostgreSQL DSN holding the banking schema (env RISKPIPE_PG_DSN).",
        )
        parser.add_argument(
            "--postgres_batch_size",
            type=int,
            default=1000,
            help="Rows per upsert statement into banking.attributed_transactions.",
        )


class MongoOptions(PipelineOptions):
    """The MongoDB results sink."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--mongo_uri",
            default=env("RISKPIPE_MONGO_URI", LOCAL_MONGO_URI),
            help="MongoDB URI for the fraud results (env RISKPIPE_MONGO_URI).",
        )
        parser.add_argument(
            "--mongo_db",
            default="fraudulent_transactions_db",
            help="Database with the `transactions` and `users` collections.",
        )


class ResultsOptions(PipelineOptions):
    """The S3 results sink (endpoint and keys use Beam's own --s3_* flags)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--s3_bucket",
            default=env("RISKPIPE_S3_BUCKET", "riskpipe"),
            help="Bucket of the fraud results, one folder per topic (env RISKPIPE_S3_BUCKET).",
        )
        parser.add_argument(
            "--results_window_s",
            type=int,
            default=60,
            help="Length in seconds of the windows that become S3 files.",
        )


class ValidatorOptions(PipelineOptions):
    """The fraud-validation service that decides `unidentified` transactions."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--validator_url",
            default=env("RISKPIPE_VALIDATOR_URL", LOCAL_VALIDATOR_URL),
            help="Base URL of the fraud validator (env RISKPIPE_VALIDATOR_URL).",
        )
        parser.add_argument(
            "--validator_api_key",
            default=env("RISKPIPE_VALIDATOR_API_KEY", LOCAL_VALIDATOR_API_KEY),
            help="Key sent to the validator in the X-API-Key header (env "
            "RISKPIPE_VALIDATOR_API_KEY; prefer it, flags show in `ps`). The default is the "
            "local stack's key; an empty value sends none.",
        )
        parser.add_argument(
            "--validator_batch_size", type=_positive_int, default=200,
            help="Transactions per call at most. The transactions a bundle hands the "
            "validating step are sent at once, in calls of up to this many.",
        )
        parser.add_argument(
            "--validator_timeout_s", type=_positive_seconds, default=5.0,
            help="Timeout of one call.",
        )


class JoinOptions(PipelineOptions):
    """How long a transaction waits for its account before it is scored unjoined."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--join_ttl_s",
            type=int,
            default=60,
            help="Seconds a transaction waits for its account before it goes on unjoined "
            "(a LEFT JOIN).",
        )


class ModelOptions(PipelineOptions):
    """The fraud model that scores every transaction; without one the rules' score stands."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--model_path",
            default=env("RISKPIPE_MODEL_PATH", ""),
            help="Folder of a model artifact (model.json + model.txt, see models/README.md), "
            "e.g. models/fraud-lgbm-v1, committed with this code. "
            "With one, the job adds the counterparty step and scores with the model "
            "(RunInference); it costs throughput (README, 'Detection'). Default: none (env "
            "RISKPIPE_MODEL_PATH), the explainable rules alone.",
        )
        parser.add_argument(
            "--counterparty_shards",
            type=_positive_int,
            default=64,
            help="With a model: how many keys the counterparty step spreads the counterparty "
            "ids over. Each key holds the recent inflows of all its counterparties in one "
            "state value and runs once per bundle, so fewer keys cost less per row and more "
            "keys keep each value smaller: keep counterparties / shards to a few thousand "
            "(a counterparty keeps up to 32 settled inflows, about 1 KB each). A savepoint "
            "restores only with the same count. Default 64.",
        )


class RunOptions(PipelineOptions):
    """Bounded runs for local debugging on the DirectRunner."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--bounded",
            action="store_true",
            default=None,
            help="Read to the end offsets seen at start, then stop. The default on the "
            "DirectRunner, which cannot run an unbounded read.",
        )
        parser.add_argument(
            "--max_records",
            type=int,
            default=None,
            help="Stop after about this many records per topic (implies --bounded).",
        )
