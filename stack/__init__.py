"""riskpipe's local stack: the real services the tests and the demo need, as local processes.

No Docker here, so Kafka, PostgreSQL, an S3 server and Prometheus are installed once (apt,
Maven Central, pip) and run as detached processes bound to 127.0.0.1, with their state under
``.state/<service>/`` (see ``stack/config.py`` for every setting).

From the shell::

    .venv/bin/python -m stack up [service ...]      # install what is missing, start, wait
    .venv/bin/python -m stack status [service ...]  # table of health; non-zero if unhealthy
    .venv/bin/python -m stack down [service ...]
    .venv/bin/python -m stack install [service|tool ...]  # e.g. `install prism`, nothing started

From Python (tests)::

    import stack
    endpoints = stack.up(["kafka", "postgres"])   # idempotent; fast when already running
    endpoints["kafka"]["bootstrap_servers"]       # '127.0.0.1:9092'
    endpoints["postgres"]["dsn"]                  # 'postgresql://riskpipe:riskpipe@127.0.0.1:5432/riskpipe'
"""

from __future__ import annotations

from stack.base import Status
from stack.errors import StackError

__all__ = ["SERVICES", "StackError", "Status", "down", "install", "status", "up"]


def __getattr__(name: str):
    # The registry is built on first use, so that a bad setting (e.g. RISKPIPE_S3_SERVER)
    # surfaces as a StackError the CLI can print, not as an import-time traceback.
    if name == "SERVICES":
        from stack.services import SERVICES

        return SERVICES
    raise AttributeError(f"module 'stack' has no attribute {name!r}")


def select(services: list[str] | None):
    from stack.services import select as select_services

    return select_services(services)


def install(names: list[str] | None = None) -> None:
    """Fetches whatever the named services and tools (default: all) need, starting nothing."""
    from stack.services import select_installable

    for item in select_installable(names):
        if not item.is_installed():
            item.install()


def up(services: list[str] | None = None) -> dict[str, dict]:
    """Starts the named services (default: all) and waits until each is healthy.

    Returns:
        Service name -> its endpoints, e.g. ``{"kafka": {"bootstrap_servers": ...}}``.
    """
    return {
        service.name: (service.up(), service.endpoints())[1]
        for service in select(services)
    }


def down(services: list[str] | None = None) -> None:
    """Stops the named services (default: all), last started first."""
    for service in reversed(select(services)):
        service.down()


def status(services: list[str] | None = None) -> list[Status]:
    """One ``Status`` row per named service (default: all)."""
    return [service.status() for service in select(services)]
