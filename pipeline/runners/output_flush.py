"""Output that leaves an SDK worker while its bundle runs, cut only between elements.

A Beam Python SDK worker buffers a bundle's output and sends it to the runner when the bundle
ends or 10 MB have piled up. Beam's time-based alternative (``data_buffer_time_limit_ms``)
flushes from a timer thread while the bundle's thread may be half-way through writing an
element: the runner then receives half an element and fails the bundle (seen on Flink as
``CoderException: EOFException`` in ``BeamFnDataInboundObserver``, once the option was set).

:func:`install` makes every output stream of this process flush at most ``interval_ms``
after its oldest buffered byte, and only at an element boundary: the output operation calls
``maybe_flush()`` after each complete element, and that is where the flush happens. A stage
that is still producing sends its output at least every ``interval_ms``; the rest of a
bundle's output leaves when the bundle ends, as before.

The riskpipe worker pool (:mod:`pipeline.runners.worker_pool`) installs it in every SDK
worker it starts.
"""

from __future__ import annotations

import logging
import time

from apache_beam.runners.worker import data_plane

__all__ = ["install"]

logger = logging.getLogger(__name__)

_ORIGINAL_CREATE = data_plane.ClosableOutputStream.create


class _ElementBoundaryFlushStream(data_plane.SizeBasedBufferingClosableOutputStream):
    """Flushes by size (Beam's rule) or by the age of its oldest buffered byte."""

    interval_s = 0.02

    def __init__(self, close_callback=None, flush_callback=None):
        super().__init__(close_callback, flush_callback=flush_callback)
        self._since = None

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self.size() > self._size_flush_threshold or now - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        super().flush()
        self._since = None


def _create(close_callback, flush_callback, data_buffer_time_limit_ms):
    if flush_callback is None:  # a stream nobody flushes midway: Beam's own
        return _ORIGINAL_CREATE(close_callback, flush_callback, data_buffer_time_limit_ms)
    return _ElementBoundaryFlushStream(close_callback, flush_callback=flush_callback)


def install(interval_ms: int) -> None:
    """Output of this process leaves at least every ``interval_ms`` (> 0) between elements."""
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    _ElementBoundaryFlushStream.interval_s = interval_ms / 1000
    data_plane.ClosableOutputStream.create = staticmethod(_create)
    logger.info("output: flushed at element boundaries, at least every %d ms", interval_ms)


def uninstall() -> None:
    """Back to Beam's own output streams (for tests)."""
    data_plane.ClosableOutputStream.create = staticmethod(_ORIGINAL_CREATE)
