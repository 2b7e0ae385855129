"""A circuit breaker guarding calls to one dependency (closed / open / half-open).

Shared by the validator client and anything else that calls a service which may be down::

    breaker = CircuitBreaker(failure_threshold=5, reset_timeout_s=30)
    if breaker.allow():
        try:
            call()
        except ServiceError:
            breaker.record_failure()
        else:
            breaker.record_success()
    else:
        wait(breaker.retry_after_s())

The breaker is thread-safe and clock-injectable, and knows nothing about HTTP or Beam.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Closed / open / half-open breaker guarding calls to one dependency.

    Closed: calls go through; ``failure_threshold`` consecutive failures open it.
    Open: calls are refused until ``reset_timeout_s`` has passed, then it is half-open.
    Half-open: one trial call goes through; its success closes the breaker, its failure
    opens it again for another ``reset_timeout_s``. ``clock`` is injectable for tests;
    ``name`` (the guarded dependency) only appears in logs.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "validator",
    ):
        if failure_threshold < 1:
            raise ValueError(
                f"CircuitBreaker: failure_threshold must be >= 1, got {failure_threshold}"
            )
        if reset_timeout_s < 0:
            raise ValueError(f"CircuitBreaker: reset_timeout_s must be >= 0, got {reset_timeout_s}")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open and past its reset timeout)."""
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
                return self.HALF_OPEN
            return self._state

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when it would now)."""
        with self._lock:
            if self._state != self.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may go ahead now; in half-open state, admits one trial."""
        with self._lock:
            now = self._clock()
            if self._state == self.CLOSED:
                return True
            if self._state == self.OPEN:
                if now - self._opened_at < self.reset_timeout_s:
                    return False
                self._transition(self.HALF_OPEN)
            # Half-open: one trial at a time; a trial whose caller never reported back
            # (it crashed) stops blocking others after reset_timeout_s.
            if self._trial_started is not None and now - self._trial_started < self.reset_timeout_s:
                return False
            self._trial_started = now
            return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._failures = 0
            self._trial_started = None
            if self._state != self.CLOSED:
                self._transition(self.CLOSED)

    def record_failure(self) -> None:
        """A call failed: count it, and open the breaker at the threshold or after a trial."""
        with self._lock:
            self._failures += 1
            self._trial_started = None
            if self._state == self.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                if self._state != self.OPEN:
                    self._transition(self.OPEN)

    def _transition(self, state: str) -> None:
        logger.info("%s circuit breaker: %s -> %s", self.name, self._state, state)
        self._state = state
