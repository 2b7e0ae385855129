"""Detached processes with pid files: start, check, stop, and wait for a condition.

A service runs in its own session (so its process group is its own and it outlives the
``up`` that started it), writes stdout and stderr to one log file, and is remembered by a
pid file. ``stop`` signals the main process, waits for the whole group to exit, and kills
whatever is left.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from stack.errors import StackError

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25

# Processes started by this Python process: polled so that an exited one is reaped
# instead of lingering as a zombie that still looks alive.
_children: dict[int, subprocess.Popen] = {}


def start_detached(
    command: list[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Starts ``command`` in a new session, appending its output to ``log_path``.

    Args:
        user: run as this system user (only when we are root), e.g. ``postgres``.

    Returns:
        The pid, also written to ``pid_path``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(
            f"\n--- {time.strftime('%F %T')} starting: {' '.join(command)}\n".encode()
        )
        log.flush()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        except OSError as exc:
            raise StackError(f"cannot run {command[0]}: {exc}") from exc
    _children[proc.pid] = proc
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as exited)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(pid_path: Path) -> int | None:
    """The pid in ``pid_path`` if that process still runs; a stale file is removed."""
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    if is_alive(pid):
        return pid
    pid_path.unlink(missing_ok=True)
    return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Members may be zombies awaiting their parent (us); anything else is alive.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop(pid_path: Path, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Stops the process group recorded in ``pid_path``.

    Sends ``sig`` to the main process, waits up to ``timeout`` seconds for every process of
    its group to exit, then SIGKILLs the group.

    Returns:
        True if something was running.
    """
    pid = read_pid(pid_path)
    if pid is None:
        return False
    # start_detached gives each service a new session, so its group id is its own pid.
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid) and not _group_alive(pgid):
            break
        time.sleep(POLL_INTERVAL_S)
    else:
        logger.warning(
            "pid %d did not stop within %.0f s: killing its process group", pid, timeout
        )
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: not is_alive(pid), timeout=10, what=f"pid {pid} to die")
    _children.pop(pid, None)
    pid_path.unlink(missing_ok=True)
    return True


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
) -> None:
    """Polls ``condition`` until it is true; raises StackError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_taken(host: str, port: int, grace_s: float = 15.0) -> bool:
    """True if ``host:port`` still accepts connections after ``grace_s`` seconds.

    The grace covers a process that was just killed: Linux reports a killed multi-threaded
    process's leader as a zombie while its other threads still exit, holding its sockets.
    """
    deadline = time.monotonic() + grace_s
    while port_open(host, port):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.25)
    return False


def run(command: list[str], *, log_path: Path, what: str, **kwargs) -> None:
    """Runs an install/setup step to completion, appending its output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(
            f"\n--- {time.strftime('%F %T')} {what}: {' '.join(command)}\n".encode()
        )
        log.flush()
        try:
            result = subprocess.run(
                command, check=False, stdout=log, stderr=subprocess.STDOUT, **kwargs
            )
        except OSError as exc:
            raise StackError(f"{what} failed: cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}); see {log_path}")
