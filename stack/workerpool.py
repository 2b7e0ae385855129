"""The Beam SDK worker pool: the SDK harness of Flink jobs (``--environment_type=EXTERNAL``).

``python -m pipeline.runners.worker_pool --service_port=50000`` under the project venv (Beam's
``worker_pool_main`` with workers whose stdout is not a forgotten pipe, and a state cache;
see that module). cwd is the repo root and PYTHONPATH holds it, so the job's own modules
(``pipeline.*``) import in the workers (nothing is staged: the workers run this checkout's
code and the venv's packages).

Note: the pool listens on ``[::]:<port>``, i.e. on ALL interfaces — Beam's servicer has no
way to bind 127.0.0.1 only. Health: a TCP connect to 127.0.0.1:<port>.
Port: ``RISKPIPE_WORKER_POOL_PORT`` (default 50000).
"""

from __future__ import annotations

import os
import shutil
import signal

from stack import config, process
from stack.base import Service
from stack.errors import StackError


class WorkerPool(Service):
    name = "workerpool"
    port_name = "WORKER_POOL"
    start_timeout_s = 60.0
    supervised = True
    # SIGINT: the pool stops its server and its atexit hook ends the workers.
    stop_signal = signal.SIGINT
    stop_timeout_s = 15.0

    def command(self) -> list[str]:
        # `env -C` changes to the repo root and execs, so the pid stays the pool's.
        return [
            shutil.which("env") or "/usr/bin/env",
            "-C",
            str(config.REPO_ROOT),
            str(config.venv_python()),
            "-m",
            "pipeline.runners.worker_pool",
            f"--service_port={self.port}",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(
            [str(config.venv_python().parent), env.get("PATH", "")]
        )
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(config.REPO_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def probe(self) -> None:
        if not process.port_open(config.HOST, self.port, timeout=1.0):
            raise StackError(f"nothing accepts connections on {self.address}")

    def endpoints(self) -> dict:
        return {
            "address": self.address,
            "environment_args": [
                "--environment_type=EXTERNAL",
                f"--environment_config={self.address}",
            ],
        }
