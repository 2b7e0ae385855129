"""The supervisor: restarts a crashed worker pool, validator or Flink TaskManager by itself.

``python -m stack supervise`` runs it in the foreground; as a stack service (``supervisor``,
last in the registry) ``stack up`` starts it detached and ``stack down`` stops it first.
Every :data:`POLL_S` it checks the pid of each supervised process (a service with
``supervised = True``; for Flink, the TaskManager). A process that ``up`` marked wanted and
``down`` did not unmark, and whose pid is gone, is started again with the service's own start
logic (``Service.revive``: prepare, command, wait until healthy) under the service's lock, so
``down`` wins any race: it unmarks the process before it stops it. Restarts follow the policy
of :mod:`stack.supervision` (at once, then 1, 2, 4, 8 s; at most 5 within 5 minutes, then it
gives up until the next ``stack up``), each one written to the service's log and to the
supervisor's, and counted in ``stack status``.

Only dead processes are restarted; a process that runs but fails its health check is left to
a person (``stack status`` shows it unhealthy). A restarted process inherits the supervisor's
environment, i.e. that of the ``stack up`` which started the supervisor.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from stack import config, process, supervision
from stack.base import Service
from stack.errors import StackError

__all__ = ["POLL_S", "Supervisor", "main", "polls_done", "supervise"]

logger = logging.getLogger(__name__)

# How often the pids are checked: a dead process is noticed within this long.
POLL_S = 1.0
# The supervisor is unhealthy when its heartbeat is older than this.
HEARTBEAT_STALE_S = 10.0


class Supervisor(Service):
    """The supervisor as a detached process of the stack (no port; health: its heartbeat)."""

    name = "supervisor"
    start_timeout_s = 30.0
    stop_timeout_s = 15.0

    def command(self) -> list[str]:
        return [
            shutil.which("env") or "/usr/bin/env",
            "-C",
            str(config.REPO_ROOT),
            str(config.venv_python()),
            "-m",
            "stack",
            "supervise",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(config.REPO_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def prepare(self) -> None:
        # A new supervisor counts from zero.
        supervision.save({})
        heartbeat_path().unlink(missing_ok=True)

    def down(self) -> bool:
        stopped = super().down()
        # Its last heartbeat is fresh for a few more seconds: without it, a supervisor just
        # stopped would still look healthy, and `make down` would report it running.
        heartbeat_path().unlink(missing_ok=True)
        return stopped

    def probe(self) -> None:
        try:
            age = time.time() - heartbeat_path().stat().st_mtime
        except OSError:
            raise StackError("no heartbeat yet") from None
        if age > HEARTBEAT_STALE_S:
            raise StackError(f"last heartbeat {age:.0f} s ago")

    def endpoints(self) -> dict:
        return {"heartbeat": str(heartbeat_path()), "restarts": str(supervision.record_path())}


class _Watcher:
    """Watches one process: notices its death, paces and counts its restarts."""

    def __init__(self, unit: Service, record_lock: threading.Lock):
        self.unit = unit
        self.record_lock = record_lock
        self.mark: str | None = None  # the `up` whose budget this is
        self.recent: collections.deque[float] = collections.deque()
        self.gave_up = False
        self.due: float | None = None  # when the pending restart may start
        self.last_pid: int | None = None
        self.thread: threading.Thread | None = None

    def poll(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        mark = self.unit.wanted_since()
        if mark is None:  # down, or never up: not ours to start
            self.due = None
            return
        if mark != self.mark:  # a new `up`: a new budget
            self.mark, self.gave_up, self.due = mark, False, None
            self.recent.clear()
            self._update(gave_up=False, error="")
        pid = process.read_pid(self.unit.pid_path)
        if pid is not None:
            self.last_pid = pid
            return
        if self.gave_up:
            return
        now = time.monotonic()
        while self.recent and now - self.recent[0] > supervision.RESTART_WINDOW_S:
            self.recent.popleft()
        if self.due is None:
            self._schedule(now)
        if self.due is not None and now >= self.due:
            self.due = None
            self.recent.append(now)
            self.thread = threading.Thread(
                target=self._restart, name=f"restart-{self.unit.unit}", daemon=True
            )
            self.thread.start()

    def _schedule(self, now: float) -> None:
        gone = f"pid {self.last_pid}" if self.last_pid else "its process"
        if len(self.recent) >= supervision.RESTART_LIMIT:
            self.gave_up = True
            logger.error(
                "%s: %s is gone again after %d restarts within %.0f s; giving up (run "
                "`python -m stack up %s` once it is fixed)",
                self.unit.unit, gone, len(self.recent), supervision.RESTART_WINDOW_S,
                self.unit.name,
            )
            self._update(gave_up=True)
            return
        delay = supervision.restart_delay_s(len(self.recent))
        logger.warning("%s: %s is gone; restarting in %.0f s", self.unit.unit, gone, delay)
        self.due = now + delay

    def _restart(self) -> None:
        restart = len(self.recent)
        why = (
            f"{self.unit.unit} (pid {self.last_pid}) is gone; restart {restart} "
            f"(at most {supervision.RESTART_LIMIT} within {supervision.RESTART_WINDOW_S:.0f} s)"
        )
        started = time.monotonic()
        try:
            pid = self.unit.revive(why)
        # A failed start has many causes (port taken, exits at once, never healthy); each is
        # recorded and the next poll tries again after the backoff.
        except Exception as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            logger.error("%s: restart %d failed: %s", self.unit.unit, restart, message)
            self._update(count_one=True, error=message)
            return
        if pid is None:  # `down` got there first, or something else started it
            return
        self.last_pid = pid
        logger.info(
            "%s: restarted as pid %d, healthy after %.1f s",
            self.unit.unit, pid, time.monotonic() - started,
        )
        self._update(count_one=True, error="")

    def _update(self, count_one: bool = False, **changes) -> None:
        with self.record_lock:
            record = supervision.load()
            current = record.get(self.unit.unit, supervision.Restarts())
            if count_one:
                changes["count"] = current.count + 1
                changes["last"] = time.strftime("%Y-%m-%d %H:%M:%S")
            record[self.unit.unit] = dataclasses.replace(current, **changes)
            supervision.save(record)


def heartbeat_path() -> Path:
    """Rewritten after every poll with the number of polls done."""
    return config.state_dir("supervisor") / "heartbeat"


def polls_done() -> int:
    """How many polls the running supervisor has done (0 before the first)."""
    try:
        return int(heartbeat_path().read_text())
    except (OSError, ValueError):
        return 0


def supervise(stop: threading.Event, units: list[Service]) -> None:
    """Watches ``units`` (``stack.services.supervised_units()``) until ``stop`` is set."""
    record_lock = threading.Lock()
    watchers = [_Watcher(unit, record_lock) for unit in units]
    heartbeat = heartbeat_path()
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    logger.info("supervising %s (poll every %.0f s)", ", ".join(u.unit for u in units), POLL_S)
    polls = 0
    while True:
        for watcher in watchers:
            watcher.poll()
        polls += 1
        heartbeat.write_text(f"{polls}\n")  # its age: liveness; its count: polls done
        if stop.wait(POLL_S):
            break
    logger.info("supervisor stopping")


def main(units: list[Service]) -> int:
    """``python -m stack supervise``: supervises ``units`` until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervise(stop, units)
    return 0
