"""The registry: every service the stack can run, in start order (``down`` stops in reverse).

The supervisor comes last: it restarts the supervised ones (worker pool, TaskManager,
validator) when they die, and ``down`` stops it first.

``TOOLS`` are what the stack installs but never runs (Prism: each PrismRunner job starts its
own); ``python -m stack install`` takes their names too.

To add a service (flink, mongo, validator...), write ``stack/<name>.py`` with a ``Service``
subclass (see ``stack/base.py`` and ``stack/s3.py`` for a short example) and list it here.
"""

from __future__ import annotations

from stack.base import Service
from stack.errors import StackError
from stack.flink import Flink
from stack.kafka import Kafka
from stack.mongo import Mongo
from stack.postgres import Postgres
from stack.prism import Prism
from stack.prometheus import Prometheus
from stack.s3 import s3_server
from stack.supervisor import Supervisor
from stack.validator import Validator
from stack.workerpool import WorkerPool

SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Kafka(),
        Postgres(),
        Mongo(),
        s3_server(),
        Prometheus(),
        WorkerPool(),
        Flink(),
        Validator(),
        # Last: `up` starts it once the rest runs, `down` stops it before the rest.
        Supervisor(),
    )
}


# Installed by `install` (all of them when it names nothing), never started.
TOOLS = {tool.name: tool for tool in (Prism(),)}


def select(names: list[str] | tuple[str, ...] | None) -> list[Service]:
    """The named services in registry order (all of them for None or an empty list)."""
    if not names:
        return list(SERVICES.values())
    unknown = sorted(set(names) - SERVICES.keys())
    if unknown:
        raise StackError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"
        )
    return [service for name, service in SERVICES.items() if name in names]


def select_installable(names: list[str] | None) -> list:
    """The named services and tools (all of both for None or an empty list)."""
    if not names:
        return [*SERVICES.values(), *TOOLS.values()]
    unknown = sorted(set(names) - SERVICES.keys() - TOOLS.keys())
    if unknown:
        raise StackError(
            f"unknown service(s) or tool(s) {', '.join(unknown)}; known: "
            f"{', '.join([*SERVICES, *TOOLS])}"
        )
    services = [service for name, service in SERVICES.items() if name in names]
    return [*services, *(tool for name, tool in TOOLS.items() if name in names)]


def supervised_units() -> list[Service]:
    """Every process the supervisor watches."""
    return [unit for service in SERVICES.values() for unit in service.supervised_units()]


def with_supervisor(names: list[str] | None) -> list[str] | None:
    """``names`` plus the supervisor when one of them is supervised (None: all, which has it).

    >>> with_supervisor(["kafka", "validator"])
    ['kafka', 'validator', 'supervisor']
    >>> with_supervisor(["kafka"]), with_supervisor(None)
    (['kafka'], None)
    """
    if not names or "supervisor" in names:
        return names
    if any(service.supervised_units() for service in select(names)):
        return [*names, "supervisor"]
    return list(names)
