"""The fraud validator (``validator/``, FastAPI under uvicorn) as a stack service.

``python -m validator --host 127.0.0.1 --port $RISKPIPE_VALIDATOR_PORT`` (default 8000) with the
project venv, cwd the repo root. It requires an API key: ``RISKPIPE_VALIDATOR_API_KEY``, else
the local-only default the job also sends (``stack.config.validator_api_key``); it reaches the
server through the environment, never the command line (``ps`` shows that). It reads
``RISKPIPE_VALIDATOR_CONFIG`` like the CLI. Health: ``GET /health`` (open, like ``/metrics``,
which Prometheus, ``stack/prometheus.py``, scrapes).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

from stack import config
from stack.base import Service
from stack.errors import StackError


class Validator(Service):
    name = "validator"
    port_name = "VALIDATOR"
    start_timeout_s = 60.0
    supervised = True

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def command(self) -> list[str]:
        return [
            shutil.which("env") or "/usr/bin/env",
            "-C",
            str(config.REPO_ROOT),
            str(config.venv_python()),
            "-m",
            "validator",
            "--host",
            config.HOST,
            "--port",
            str(self.port),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(config.REPO_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        env["RISKPIPE_VALIDATOR_API_KEY"] = config.validator_api_key()
        return env

    def probe(self) -> None:
        with urllib.request.urlopen(self.url + "/health", timeout=2.0) as response:
            if response.status != 200:
                raise StackError(f"/health answered HTTP {response.status}")
            body = response.read()
        try:
            json.loads(body)
        except ValueError:
            raise StackError(f"/health answered non-JSON {body[:100]!r}") from None

    def endpoints(self) -> dict:
        return {"url": self.url, "address": self.address, "docs": self.url + "/docs"}
