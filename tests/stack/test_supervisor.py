"""The supervisor restarts a crashed validator or worker pool, and never what `down` stopped.

Every test runs its own instances: a state folder under tmp_path and free ports, so the
shared stack is never touched. Waits are wait-untils on the real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

import stack
from stack import config, process, supervision, supervisor
from stack.base import Service
from stack.errors import StackError
from validator.process import free_port

# A restarted validator imports FastAPI, a worker pool Apache Beam: seconds each; the bound
# is for a busy 2-core machine.
BACK_WITHIN_S = 90.0


@pytest.fixture
def own_stack(tmp_path, monkeypatch):
    """This test's own state folder and ports; whatever it started is stopped at the end."""
    monkeypatch.setenv("RISKPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RISKPIPE_VALIDATOR_PORT", str(free_port()))
    monkeypatch.setenv("RISKPIPE_WORKER_POOL_PORT", str(free_port()))
    monkeypatch.delenv("RISKPIPE_VALIDATOR_API_KEY", raising=False)
    yield tmp_path / "state"
    stack.down(["workerpool", "validator", "supervisor"])


def _pid(name: str) -> int | None:
    return process.read_pid(stack.SERVICES[name].pid_path)


def _kill(pid: int) -> None:
    """SIGKILL of the process group, as a crash of the whole service would be."""
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    process.wait_until(lambda: not process.is_alive(pid), timeout=15, what=f"pid {pid} to die")


def _back(name: str, old_pid: int) -> float:
    """Seconds until the service runs under a new pid and answers its health check."""
    killed_at = time.monotonic()
    service = stack.SERVICES[name]

    def healthy_again() -> bool:
        pid = _pid(name)
        return pid is not None and pid != old_pid and service.check() is None

    process.wait_until(healthy_again, timeout=BACK_WITHIN_S, what=f"{name} to be back")
    return time.monotonic() - killed_at


def _restarts(unit: str) -> supervision.Restarts:
    """The supervisor's record of ``unit`` once it has counted a restart (it writes the
    record right after the restarted process turned healthy)."""
    process.wait_until(
        lambda: supervision.load().get(unit, supervision.Restarts()).count > 0,
        timeout=30, what=f"the supervisor to record a restart of {unit}",
    )
    return supervision.load()[unit]


def _status(*names: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "stack", "status", *names],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    return done.stdout


def test_the_stack_validator_requires_the_local_key(own_stack):
    url = stack.up(["validator"])["validator"]["url"]
    body = {"transactions": []}
    assert requests.post(url + "/validate/batch", json=body, timeout=5).status_code == 401
    key = {"X-API-Key": config.validator_api_key()}
    assert requests.post(url + "/validate/batch", json=body, headers=key, timeout=5).ok
    assert requests.get(url + "/health", timeout=5).json()["api_key_required"] is True


def test_up_of_a_supervised_service_starts_the_supervisor(own_stack):
    done = subprocess.run(
        [sys.executable, "-m", "stack", "up", "validator"],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _pid("supervisor") is not None
    assert "supervisor  healthy" in done.stdout


@pytest.mark.parametrize("name", ["validator", "workerpool"])
def test_a_killed_service_is_restarted(own_stack, name):
    stack.up([name, "supervisor"])
    old = _pid(name)
    _kill(old)
    seconds = _back(name, old)
    print(f"\n{name} back and healthy {seconds:.1f} s after SIGKILL")
    record = _restarts(name)
    assert (record.count, record.gave_up, record.error) == (1, False, "")
    log = stack.SERVICES[name].log_path.read_text()
    assert f"supervisor: {name} (pid {old}) is gone; restart 1 " in log
    assert "restarting in 0 s" in (own_stack / "supervisor" / "supervisor.log").read_text()
    row = next(line for line in _status(name).splitlines() if line.startswith(name))
    assert " healthy " in row and f" 1 (last {record.last.split()[-1]}) " in row


def test_down_is_not_undone_and_leaves_no_process(own_stack):
    stack.up(["validator", "workerpool", "supervisor"])
    pids = {name: _pid(name) for name in ("validator", "workerpool", "supervisor")}
    stack.down(["validator"])
    polls = supervisor.polls_done()
    process.wait_until(
        lambda: supervisor.polls_done() >= polls + 3, timeout=30, what="3 supervisor polls"
    )
    assert _pid("validator") is None and not process.is_alive(pids["validator"])
    assert not process.port_open(config.HOST, config.port("VALIDATOR"))
    stack.down(["workerpool", "validator", "supervisor"])
    assert [name for name, pid in pids.items() if process.is_alive(pid)] == []
    assert not process.port_open(config.HOST, config.port("WORKER_POOL"))
    # What `python -m stack down` (make down) checks before it exits 0: a supervisor just
    # stopped must not look healthy by its last heartbeat.
    states = {row.service: row.state for row in stack.status(list(pids))}
    assert states == {name: "stopped" for name in pids}


class _CrashAtStart(Service):
    """A service whose process exits at once: every restart fails."""

    name = "crasher"
    start_timeout_s = 10.0
    supervised = True

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit(3)"]

    def probe(self) -> None:
        raise StackError("never healthy")


def test_a_crash_loop_is_paced_then_given_up(own_stack, monkeypatch):
    monkeypatch.setattr(supervision, "RESTART_LIMIT", 3)
    crasher = _CrashAtStart()
    crasher.mark_wanted()  # as `up` would, before its start failed
    stop = threading.Event()
    loop = threading.Thread(target=supervisor.supervise, args=(stop, [crasher]), daemon=True)
    started = time.monotonic()
    loop.start()
    try:
        process.wait_until(
            lambda: supervision.load().get("crasher", supervision.Restarts()).gave_up,
            timeout=60, what="the supervisor to give up",
        )
        given_up_after = time.monotonic() - started
        record = supervision.load()["crasher"]
        assert record.count == 3
        assert "exited during startup" in record.error
        # Restarts at once, then after 1 s and 2 s: paced, not a tight loop.
        assert given_up_after >= 3.0
        assert crasher.log_path.read_text().count("supervisor: crasher") == 3
        crasher.mark_wanted()  # a new `up`: a new budget
        process.wait_until(
            lambda: supervision.load()["crasher"].count > 3, timeout=30, what="a new attempt"
        )
        assert not supervision.load()["crasher"].gave_up
    finally:
        stop.set()
        loop.join(timeout=30)


def test_the_chaos_fault_kills_the_pool_and_the_supervisor_brings_it_back(own_stack):
    """The part of `make chaos FAULTS=workerpool_kill` that needs no Flink job."""
    from tools.chaos import FAULTS, kill_workerpool

    assert FAULTS["workerpool_kill"].replays  # the job restores a checkpoint afterwards
    stack.up(["workerpool", "supervisor"])
    old, new, seconds = kill_workerpool(timeout_s=BACK_WITHIN_S)
    assert new != old and not process.is_alive(old)
    assert _pid("workerpool") == new and stack.SERVICES["workerpool"].check() is None
    assert _restarts("workerpool").count == 1
    print(f"\nworker pool {old} -> {new} in {seconds:.1f} s")
