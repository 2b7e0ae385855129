"""riskpipe's Beam metrics: one namespace, and counters that exist from the first bundle.

Every figure a user watches is a Beam metric in the ``riskpipe`` namespace; on Flink it
becomes ``flink_taskmanager_job_task_operator_riskpipe_<name>`` in Prometheus. A counter that
was never incremented does not exist there, so a dashboard would show "no data" instead
of 0: a DoFn calls :meth:`Counters.report_zero` in ``start_bundle``.

>>> counters = Counters("parsed", "dead_lettered")
>>> counters.report_zero()
>>> counters.inc("parsed")
>>> sorted(counters.names)
['dead_lettered', 'parsed']
"""

from __future__ import annotations

from apache_beam.metrics import Metrics

__all__ = ["NAMESPACE", "Counters", "counter", "gauge"]

NAMESPACE = "riskpipe"


def counter(name: str):
    """The riskpipe counter ``name``."""
    return Metrics.counter(NAMESPACE, name)


def gauge(name: str):
    """The riskpipe gauge ``name``."""
    return Metrics.gauge(NAMESPACE, name)


class Counters:
    """A DoFn's counters by name; ``report_zero()`` in ``start_bundle`` makes them exist."""

    def __init__(self, *names: str):
        self._counters = {name: counter(name) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._counters)

    def inc(self, name: str, n: int = 1) -> None:
        self._counters[name].inc(n)

    def report_zero(self) -> None:
        """Reports every counter at 0, so dashboards see a zero before the first event."""
        for each in self._counters.values():
            each.inc(0)
