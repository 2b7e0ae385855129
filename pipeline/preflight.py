"""Checks, before a job is submitted, that every dependency it names can be reached.

A job that starts against a wrong broker address or a missing bucket fails minutes later
deep inside a worker. These checks fail at once with one line that names the setting::

    check_all(options)   # raises ConfigurationError("kafka: cannot reach ... (--kafka_bootstrap)")

The fraud validator is the exception: while it is down, transactions wait for it, so an
unreachable validator is a warning, not an error. A validator that answers but refuses the
job's API key is an error: every unidentified transaction would be decided for review.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from pipeline.errors import ConfigurationError
from pipeline.options import (
    KafkaOptions,
    MongoOptions,
    PostgresOptions,
    ResultsOptions,
    ValidatorOptions,
)

logger = logging.getLogger(__name__)

__all__ = [
    "check_all",
    "check_kafka",
    "check_mongo",
    "check_postgres",
    "check_s3",
    "check_validator",
]

TIMEOUT_S = 5


def check_kafka(bootstrap: str, topics: list[str]) -> None:
    """Raises unless the broker answers and every topic exists."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would otherwise print its own connection errors to stderr.
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": TIMEOUT_S * 1000, "log_level": 0}
    )
    try:
        metadata = admin.list_topics(timeout=TIMEOUT_S)
    except Exception as error:  # confluent-kafka raises KafkaException with a code
        raise ConfigurationError(
            f"kafka: cannot reach {bootstrap} (--kafka_bootstrap): {error}"
        ) from error
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise ConfigurationError(
            f"kafka: topic(s) {', '.join(missing)} do not exist on {bootstrap}; "
            "create them (`make up` creates the default ones)"
        )


def check_postgres(dsn: str) -> None:
    """Raises unless PostgreSQL answers and the banking tables exist."""
    import psycopg2

    from pipeline.io.postgres import _redact, connect

    try:
        conn = connect(dsn)
    except psycopg2.Error as error:
        raise ConfigurationError(
            f"postgres: cannot connect to {_redact(dsn)} (--postgres_dsn): "
            f"{str(error).strip().splitlines()[0]}"
        ) from error
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT to_regclass('banking.accounts'), "
                "to_regclass('banking.attributed_transactions')"
            )
            if None in cursor.fetchone():
                raise ConfigurationError(
                    f"postgres: the banking schema is missing in {_redact(dsn)}; "
                    "apply migrations/ (`make up` does)"
                )
    finally:
        conn.close()


def check_mongo(uri: str) -> None:
    """Raises unless a MongoDB server answers ``ping`` at ``uri``."""
    import pymongo
    import pymongo.errors

    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigurationError(
            f"mongo: invalid URI {uri!r} (--mongo_uri): expected mongodb://host:port"
        )
    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=TIMEOUT_S * 1000)
    except (pymongo.errors.ConfigurationError, ValueError) as error:
        raise ConfigurationError(f"mongo: invalid URI (--mongo_uri): {error}") from error
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as error:
        reason = str(error).split(" (configured timeouts")[0].split(", Timeout:")[0]
        raise ConfigurationError(f"mongo: cannot reach {uri} (--mongo_uri): {reason}") from error
    finally:
        client.close()


def check_s3(bucket: str, endpoint_url: str, access_key: str, secret_key: str, region: str):
    """Raises unless the bucket exists at the S3 endpoint."""
    import boto3
    import botocore.config
    import botocore.exceptions

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=botocore.config.Config(
            connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1}
        ),
    )
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as error:
        raise ConfigurationError(
            f"s3: bucket {bucket!r} not found at {endpoint_url} (--s3_bucket): {error}"
        ) from error
    except botocore.exceptions.BotoCoreError as error:
        raise ConfigurationError(
            f"s3: cannot reach {endpoint_url} (--s3_endpoint_url): {error}"
        ) from error


def check_validator(url: str, api_key: str | None) -> None:
    """Warns when the validator does not answer; raises when it refuses ``api_key``.

    The key is tried with an empty batch (no transaction is judged) and never printed.
    """
    base = url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        logger.warning(
            "validator at %s does not answer (%s); unidentified transactions will wait for it",
            url, error,
        )
        return
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(
        f"{base}/validate/batch",
        data=json.dumps({"transactions": []}).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            given = "refused the API key" if api_key else "requires an API key"
            raise ConfigurationError(
                f"validator: {url} {given} (--validator_api_key, env "
                "RISKPIPE_VALIDATOR_API_KEY); every unidentified transaction would go to review"
            ) from None
        logger.warning("validator at %s answered an empty batch with HTTP %d", url, error.code)
    except (urllib.error.URLError, OSError) as error:
        logger.warning("validator at %s did not answer an empty batch (%s)", url, error)


def check_all(options) -> None:
    """Runs every check for the job's options; raises ConfigurationError on the first."""
    kafka = options.view_as(KafkaOptions)
    # An empty --accounts_topic reads no accounts topic.
    topics = [t for t in (kafka.accounts_topic, kafka.transactions_topic) if t]
    check_kafka(kafka.kafka_bootstrap, topics)
    check_postgres(options.view_as(PostgresOptions).postgres_dsn)
    check_mongo(options.view_as(MongoOptions).mongo_uri)
    s3 = options.get_all_options()
    check_s3(
        options.view_as(ResultsOptions).s3_bucket,
        s3["s3_endpoint_url"],
        s3["s3_access_key_id"],
        s3["s3_secret_access_key"],
        s3["s3_region_name"],
    )
    validator = options.view_as(ValidatorOptions)
    check_validator(validator.validator_url, validator.validator_api_key or None)
