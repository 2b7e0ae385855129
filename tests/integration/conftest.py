"""Fixtures of the end-to-end tests: the whole stack the pipeline writes to."""

from __future__ import annotations

import pytest

PIPELINE_SERVICES = ("kafka", "postgres", "mongo", "s3", "validator")


@pytest.fixture(scope="session")
def pipeline_stack(stack_up) -> dict[str, dict]:
    """Kafka, Postgres, Mongo, S3 and the validator, running; their endpoints by name."""
    return stack_up(*PIPELINE_SERVICES)
