"""Garbage collection paced for a stream of short-lived records.

CPython's cycle collector looks at its youngest generation after every 700 net
allocations, and at every object alive, the per-account state included, after every 100 of
those. A record passing through the job allocates a few dozen objects (the parsed record,
its features, the score, the row), so the collector ran every 10 to 20 records. Reference
counting frees almost all of them at once; the collector only finds cycles, and the job
makes few. :func:`pace` lets the youngest generation grow to 50,000 objects before a
collection: the same collector, cycles still found, far less often.

The SDK workers pace themselves (:func:`pipeline.runners.sdk_worker.install`), and so do
the benchmark's peers (``tools.baseline``, ``tools.quix_peer``), so the engines compare on
equal terms. Measured on the per-record code, ``python -m tools.hot_path_cost --count
50000`` against ``--gc-default`` (figures in ``docs/flink-notes.md``).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["YOUNG_THRESHOLD", "pace", "paced"]

YOUNG_THRESHOLD = 50_000  # net allocations between collections of the youngest generation


def pace() -> tuple[int, int, int]:
    """Paces this process's collector; returns the thresholds it had."""
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, previous[1], previous[2])
    return previous


@contextlib.contextmanager
def paced() -> Iterator[None]:
    """The collector paced while the block runs, as it was afterwards."""
    previous = pace()
    try:
        yield
    finally:
        gc.set_threshold(*previous)
