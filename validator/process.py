"""Runs ``python -m validator`` as a child process and waits until it answers.

Used by the benchmark, the integration tests and anything else that needs a real
server on a free port:

>>> with ValidatorProcess(api_key="k") as server:          # doctest: +SKIP
...     requests.get(server.url + "/health").json()["status"]
'ok'
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import requests

logger = logging.getLogger(__name__)

__all__ = ["ValidatorProcess", "free_port", "wait_until_healthy"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_POLL_INTERVAL_S = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until_healthy(
    url: str, timeout_s: float = 20.0, process: subprocess.Popen | None = None
) -> None:
    """Polls ``url + '/health'`` until it answers 200.

    Raises:
        RuntimeError: if ``process`` exits first or nothing answers within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"validator exited with status {process.returncode} before answering"
            )
        try:
            if requests.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"validator at {url} did not answer /health within {timeout_s}s")
        time.sleep(_POLL_INTERVAL_S)


class ValidatorProcess:
    """A ``python -m validator`` child on 127.0.0.1 and a free port; a context manager.

    Args:
        api_key: passed through ``RISKPIPE_VALIDATOR_API_KEY`` (not on the command line).
        extra_args: more command-line flags (``["--config", path]``...).
        port: a fixed port; a free one when None.
        cpus: CPU numbers to pin the server to (``os.sched_setaffinity``), e.g. ``{0}``.
        startup_timeout_s: how long to wait for ``/health``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        cpus: set[int] | None = None,
        startup_timeout_s: float = 20.0,
    ):
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        self.api_key = api_key
        self.extra_args = list(extra_args)
        self.cpus = cpus
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        fd, log_path = tempfile.mkstemp(prefix="validator-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_path)

    def start(self, wait: bool = True) -> ValidatorProcess:
        """Starts the server; with ``wait`` returns once ``/health`` answers."""
        env = dict(os.environ)
        env.pop("RISKPIPE_VALIDATOR_API_KEY", None)
        if self.api_key:
            env["RISKPIPE_VALIDATOR_API_KEY"] = self.api_key
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "validator", "--host", self.host, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*cmd, "--no-access-log", *self.extra_args],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.cpus:
            # Pinned from here rather than in preexec_fn (unsafe with threads); the child
            # is still importing when this runs.
            os.sched_setaffinity(self.process.pid, self.cpus)
        if wait:
            try:
                wait_until_healthy(self.url, self.startup_timeout_s, self.process)
            except RuntimeError as exc:
                self.stop()
                raise RuntimeError(f"{exc}; log:\n{self.log_text()}") from None
        return self

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
