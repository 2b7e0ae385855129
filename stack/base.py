"""The shape every service of the local stack shares, and the generic up/down/status logic.

A concrete service (``stack/kafka.py``, ``stack/postgres.py``, ...) subclasses ``Service`` and
fills in a few hooks:

- ``is_installed`` / ``install``  fetch binaries once (apt, mvn, pip, go...), idempotent;
- ``prepare``                     write configs, initialise data folders (every start);
- ``command``                     the foreground command that runs the server;
- ``probe``                       a protocol-level health check, raising on failure;
- ``after_start``                 idempotent setup needing a live server (topics, bucket,
                                  migrations); also runs on every ``up`` of a running service;
- ``endpoints``                   what clients need: addresses, DSNs, credentials.

``supervised = True`` puts a service's process under the supervisor (``stack/supervisor.py``):
``up`` marks it wanted (``<name>.wanted`` beside its pid file), ``down`` unmarks it before
stopping it, and the supervisor restarts a wanted process that died. Both hold the service's
lock, so a restart never races a ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from stack import config, process, supervision
from stack.errors import StackError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """One row of the status table."""

    service: str
    state: str  # healthy | unhealthy | stopped
    address: str
    log: Path
    detail: str = ""
    pid: int | None = None
    restarts: supervision.Restarts | None = None  # None: not supervised

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


class Service:
    """A server run as a detached local process; subclass and fill in the hooks."""

    name: str = ""
    port_name: str = ""  # key of config.DEFAULT_PORTS; empty for a service without a port
    start_timeout_s: float = 90.0
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 30.0
    run_as: str | None = None  # system user to run as, when root
    supervised: bool = False  # the supervisor restarts it when its process dies

    # -- hooks -----------------------------------------------------------------------------
    def is_installed(self) -> bool:
        return True

    def install(self) -> None:
        """Fetches what the service needs; called only when ``is_installed`` is false."""

    def prepare(self) -> None:
        """Writes configs and initialises data before each start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The environment of the server process (None: inherit ours)."""
        return None

    def probe(self) -> None:
        """Raises if the service does not answer its protocol correctly."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Idempotent setup against the running service (topics, buckets, migrations)."""

    def endpoints(self) -> dict:
        return {"address": self.address}

    # -- derived ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return config.port(self.port_name)

    @property
    def address(self) -> str:
        return f"{config.HOST}:{self.port}" if self.port_name else "-"

    @property
    def unit(self) -> str:
        """The process's name in the supervisor's records (a service may run several)."""
        return self.name

    def supervised_units(self) -> list[Service]:
        """The processes of this service the supervisor watches."""
        return [self] if self.supervised else []

    @property
    def state_dir(self) -> Path:
        return config.state_dir(self.name)

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def install_log_path(self) -> Path:
        return self.state_dir / "install.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def wanted_path(self) -> Path:
        """Present from ``up`` to ``down``: the process should run (its content: when)."""
        return self.pid_path.with_suffix(".wanted")

    def mark_wanted(self) -> None:
        """Marks the process wanted (``up`` does): the supervisor restarts it if it dies."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.wanted_path.write_text(f"{time.time_ns()}\n")

    def wanted_since(self) -> str | None:
        """The mark ``up`` left, None after ``down`` (a new mark means a new ``up``)."""
        try:
            return self.wanted_path.read_text().strip()
        except OSError:
            return None

    def say(self, message: str, *args) -> None:
        """A progress line, e.g. ``[kafka] fetching jars with mvn…``."""
        logger.info(f"[{self.name}] {message}", *args)

    def check(self) -> str | None:
        """None if healthy, else why not (one line)."""
        try:
            self.probe()
        # A probe fails in many ways (refused, timeout, protocol, psql); all mean unhealthy.
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None

    @contextlib.contextmanager
    def _lock(self):
        """Serialises up/down of this service across processes (CLI, pytest workers)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> str:
        """Installs, starts and waits for the service; returns "started" or "running"."""
        with self._lock():
            if self.supervised:
                self.mark_wanted()
            pid = process.read_pid(self.pid_path)
            if pid is not None and self.check() is None:
                self.after_start()
                return "running"
            self._start_locked(pid)
            return "started"

    def revive(self, why: str) -> int | None:
        """Starts the process again if it is wanted and not running (the supervisor's call).

        Writes ``why`` to the service's log first. Returns the new pid, None when there was
        nothing to do (``down`` unmarked it, or it runs); raises StackError if it fails.
        """
        with self._lock():
            if self.wanted_since() is None or process.read_pid(self.pid_path) is not None:
                return None
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as log:
                log.write(f"\n--- {time.strftime('%F %T')} supervisor: {why}\n")
            return self._start_locked(None)

    def _start_locked(self, pid: int | None) -> int:
        """Starts (unless ``pid`` runs) and waits until healthy; the caller holds the lock."""
        if pid is None and self.port_name and process.port_taken(config.HOST, self.port):
            raise StackError(
                f"[{self.name}] port {self.port} is already taken by a process the stack did "
                f"not start; stop it or set RISKPIPE_{self.port_name}_PORT"
            )
        if pid is None:
            if not self.is_installed():
                self.install()
            self.prepare()
            self.say("starting (log: %s)", self.log_path)
            pid = process.start_detached(
                self.command(),
                log_path=self.log_path,
                pid_path=self.pid_path,
                env=self.environment(),
                cwd=self.state_dir,
                user=self.run_as,
            )
        self._wait_healthy(pid)
        self.after_start()
        return pid

    def _wait_healthy(self, pid: int) -> None:
        last_error = ["not checked yet"]

        def ready() -> bool:
            if not process.is_alive(pid):
                raise StackError(
                    f"[{self.name}] exited during startup; see {self.log_path}"
                )
            last_error[0] = self.check()
            return last_error[0] is None

        try:
            process.wait_until(
                ready, timeout=self.start_timeout_s, what=f"{self.name} health"
            )
        except StackError as exc:
            if "exited during startup" in str(exc):
                raise
            raise StackError(
                f"[{self.name}] not healthy after {self.start_timeout_s:.0f} s "
                f"({last_error[0]}); see {self.log_path}"
            ) from None

    def down(self) -> bool:
        """Stops the service (and its supervision); True if it was running."""
        with self._lock():
            self.wanted_path.unlink(missing_ok=True)
            stopped = process.stop(
                self.pid_path, sig=self.stop_signal, timeout=self.stop_timeout_s
            )
        if stopped:
            self.say("stopped")
        return stopped

    def status(self) -> Status:
        pid = process.read_pid(self.pid_path)
        problem = self.check()
        if problem is None:
            state, detail = "healthy", "" if pid else "not started by the stack"
        elif pid is None:
            state, detail = "stopped", ""
        else:
            state, detail = "unhealthy", problem
        return Status(
            self.name, state, self.address, self.log_path, detail, pid, self.restarts()
        )

    def restarts(self) -> supervision.Restarts | None:
        """What the supervisor did to this service's processes; None if it is not supervised."""
        units = self.supervised_units()
        if not units:
            return None
        record = supervision.load()
        return supervision.combined([record.get(unit.unit) for unit in units])
