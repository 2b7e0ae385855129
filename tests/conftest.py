"""Shared fixtures: tests ask for the real services they need; the local stack starts them.

``stack.up`` is idempotent and takes well under a second when a service already runs, so a
test never skips for a missing service: it starts it (the first time may install it).

Services stay up after the session for fast re-runs (``python -m stack down`` stops them);
``pytest --stack-down`` stops, at the end of the session, the ones the session started.

Every test that needs a service is marked ``services``: by the fixtures it uses, by the
folder it lives in, or by hand. ``make test-unit`` runs the others (``-m "not services"``)
with ``RISKPIPE_NO_SERVICES=1``, under which starting a service fails the test at once with
a message saying to mark it, so the fast path never waits for a broker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import stack
from validator.process import ValidatorProcess

# Fixtures that start services, and folders whose tests all need them.
SERVICE_FIXTURES = {"stack_up", "kafka_broker", "server", "flink"}
SERVICE_FOLDERS = {"e2e", "integration", "reliability", "stack"}
# Folders whose tests share the Flink cluster or stop, kill and restart shared services:
# `make test` runs them one at a time, after the others (which run on every core).
SERIAL_FOLDERS = {"e2e", "stack"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        if SERVICE_FIXTURES & set(item.fixturenames) or folder in SERVICE_FOLDERS:
            item.add_marker(pytest.mark.services)
        if folder in SERIAL_FOLDERS:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _no_services_in_unit_runs(request, monkeypatch):
    """Under RISKPIPE_NO_SERVICES, a test that starts a service fails with a clear message."""
    if not os.environ.get("RISKPIPE_NO_SERVICES"):
        return

    def refuse(*_args, **_kwargs):
        pytest.fail(
            f"{request.node.nodeid} starts a service: mark it @pytest.mark.services "
            "(make test runs it; make test-unit must not need one)"
        )

    monkeypatch.setattr(stack, "up", refuse)
    monkeypatch.setattr(ValidatorProcess, "__enter__", refuse)
    monkeypatch.setattr(ValidatorProcess, "start", refuse, raising=False)


def pytest_addoption(parser):
    parser.addoption(
        "--stack-down",
        action="store_true",
        help="stop the local-stack services this test session started",
    )


@pytest.fixture(scope="session")
def stack_up(request):
    """Factory: ``stack_up("kafka", "postgres")`` starts those services, returns their endpoints.

    The result maps service name -> endpoints, as ``stack.up`` returns it.
    """
    started: list[str] = []

    def start(*services: str) -> dict[str, dict]:
        stopped = [
            row.service
            for row in stack.status(list(services))
            if row.state == "stopped"
        ]
        endpoints = stack.up(list(services))
        started.extend(name for name in stopped if name not in started)
        return endpoints

    yield start
    if request.config.getoption("--stack-down") and started:
        stack.down(started)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_up) -> str:
    """``host:port`` of a running Kafka broker with the project's topics created."""
    return stack_up("kafka")["kafka"]["bootstrap_servers"]


@pytest.fixture(scope="session")
def postgres_config(stack_up) -> dict:
    """Host, port, user, password, database, ``dsn`` and ``sqlalchemy_url`` of a migrated DB."""
    return stack_up("postgres")["postgres"]


@pytest.fixture(scope="session")
def postgres_dsn(postgres_config) -> str:
    """``postgresql://user:password@127.0.0.1:5432/riskpipe``, schema migrated."""
    return postgres_config["dsn"]


@pytest.fixture(scope="session")
def s3_config(stack_up) -> dict:
    """S3 endpoint, credentials and bucket; keys named like Beam's ``--s3_*`` options, plus
    ``endpoint_url``, ``bucket`` and ``pipeline_args`` (the ``--s3_...=`` flags)."""
    return stack_up("s3")["s3"]


@pytest.fixture(scope="session")
def prometheus_url(stack_up) -> str:
    """``http://127.0.0.1:9090`` of a running Prometheus scraping Flink and the validator."""
    return stack_up("prometheus")["prometheus"]["url"]


@pytest.fixture(scope="session")
def flink(stack_up) -> dict:
    """A standalone Flink cluster (JobManager + TaskManager) and the Beam worker pool.

    Keys: ``flink_master``, ``rest_url``, ``job_server_jar``, ``worker_pool``,
    ``metrics_urls`` (jobmanager/taskmanager), ``checkpoint_dir``, ``savepoint_dir`` and
    ``pipeline_args`` (FlinkRunner, uber-jar submission, EXTERNAL environment, ``--streaming``).
    """
    return stack_up("workerpool", "flink")["flink"]


@pytest.fixture(scope="session")
def validator_url(stack_up) -> str:
    """``http://127.0.0.1:8000`` of a running fraud validator (``python -m validator``)."""
    return stack_up("validator")["validator"]["url"]
