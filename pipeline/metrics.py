"""riskpipe's Beam metrics: one namespace, and counters that exist from the first bundle.

Every figure a user watches is a Beam metric in the ``riskpipe`` namespace; on Flink it
becomes ``flink_taskmanager_job_task_operator_riskpipe_<name>`` in Prometheus. A counter that
was never incremented does not exist there, so a dashboard would show "no data" instead
of 0: a DoFn calls :meth:`Counters.report_zero` in ``start_bundle``.

A DoFn counts per record, so :class:`Counters` counts in plain integers and hands the
bundle's counts to Beam once, in ``finish_bundle`` (:meth:`Counters.flush`): each Beam
counter update looks up the step's metrics container, about a quarter of a microsecond, and
the hot path counts four or five times per transaction.

>>> counters = Counters("parsed", "dead_lettered")
>>> counters.report_zero()                   # start_bundle
>>> counters.inc("parsed"); counters.inc("parsed", 2)
>>> counters.pending
{'parsed': 3, 'dead_lettered': 0}
>>> counters.flush()                         # finish_bundle
>>> counters.pending
{'parsed': 0, 'dead_lettered': 0}
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
    """A DoFn's counters by name: ``report_zero()`` in ``start_bundle`` makes them exist,
    ``inc()`` counts, ``flush()`` in ``finish_bundle`` reports the bundle's counts to Beam."""

    def __init__(self, *names: str):
        self._counters = {name: counter(name) for name in names}
        self.pending = dict.fromkeys(names, 0)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._counters)

    def inc(self, name: str, n: int = 1) -> None:
        self.pending[name] += n

    def report_zero(self) -> None:
        """Reports every counter at 0, so dashboards see a zero before the first event, and
        forgets what a failed bundle counted (its records are processed again)."""
        for name, each in self._counters.items():
            each.inc(0)
            self.pending[name] = 0

    def flush(self) -> None:
        """Reports what was counted since the last flush."""
        pending = self.pending
        for name, n in pending.items():
            if n:
                self._counters[name].inc(n)
                pending[name] = 0
