"""Progress lines and polling, shared by the chaos runs and faults."""

from __future__ import annotations

import time

__all__ = ["say", "wait_until"]


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(what: str, predicate, timeout: float, interval: float = 1.0):
    """Polls ``predicate`` until it returns a truthy value (returned); TimeoutError after
    ``timeout`` seconds, quoting ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s: {what} (last: {value!r})")
        time.sleep(interval)
