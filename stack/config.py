"""Where the local stack keeps things: pinned versions, folders, ports and credentials.

Everything here can be overridden from the environment, so two checkouts (or a CI job)
can run side by side:

- ``RISKPIPE_STATE_DIR``  data, logs, pid files and generated configs (default ``<repo>/.state``),
  one sub-folder per service;
- ``RISKPIPE_CACHE_DIR``  downloads that survive a fresh clone (default ``~/.cache/riskpipe``);
- ``RISKPIPE_<NAME>_PORT`` one port per service (see ``DEFAULT_PORTS``);
- ``RISKPIPE_PG_USER/PASSWORD/DB``, ``RISKPIPE_S3_*`` and ``RISKPIPE_VALIDATOR_API_KEY``
  credentials (local-only defaults; the validator's is the job's default key too).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from pipeline.local_defaults import LOCAL_VALIDATOR_API_KEY
from stack.errors import StackError

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

DEFAULT_PORTS = {
    "KAFKA": 9092,
    "KAFKA_CONTROLLER": 9093,
    "PG": 5432,
    "MONGO": 27017,
    "S3": 9000,
    "FLINK": 8081,
    "FLINK_RPC": 6123,
    "FLINK_BLOB": 6124,
    "FLINK_JM_METRICS": 9249,
    "FLINK_TM_METRICS": 9250,
    "FLINK_TM2_METRICS": 9251,
    "PROMETHEUS": 9090,
    "VALIDATOR": 8000,
    "WORKER_POOL": 50000,
}


@functools.cache
def versions() -> dict[str, str]:
    """Reads ``versions.env`` at the repo root, the one file that pins what we run."""
    path = REPO_ROOT / "versions.env"
    pinned = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip()
    return pinned


def version(key: str) -> str:
    """One pinned version, e.g. ``version("KAFKA_VERSION")``."""
    try:
        return versions()[key]
    except KeyError:
        raise StackError(
            f"{key} is not pinned in {REPO_ROOT / 'versions.env'}"
        ) from None


def venv_python() -> Path:
    """The project venv's python (``<repo>/.venv``), else the interpreter running the stack."""
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def state_dir(service: str) -> Path:
    """The folder holding one service's data, logs, pid file and generated configs."""
    base = Path(os.environ.get("RISKPIPE_STATE_DIR") or REPO_ROOT / ".state")
    return base.expanduser().resolve() / service


def cache_dir() -> Path:
    """The download cache, shared by every checkout on this machine."""
    base = os.environ.get("RISKPIPE_CACHE_DIR") or Path.home() / ".cache" / "riskpipe"
    return Path(base).expanduser().resolve()


def port(name: str) -> int:
    """The port of ``name`` (a key of ``DEFAULT_PORTS``), from ``RISKPIPE_<name>_PORT``."""
    variable = f"RISKPIPE_{name}_PORT"
    raw = os.environ.get(variable, str(DEFAULT_PORTS[name]))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{variable}={raw!r} is not a port number")
    return int(raw)


def env(name: str, default: str) -> str:
    """A ``RISKPIPE_<name>`` setting, e.g. ``env("PG_USER", "riskpipe")``."""
    return os.environ.get(f"RISKPIPE_{name}", default)


def pg_user() -> str:
    return env("PG_USER", "riskpipe")


def pg_password() -> str:
    return env("PG_PASSWORD", "riskpipe")


def pg_database() -> str:
    return env("PG_DB", "riskpipe")


def s3_access_key() -> str:
    return env("S3_ACCESS_KEY", "riskpipe")


def s3_secret_key() -> str:
    return env("S3_SECRET_KEY", "riskpipe-secret")


def s3_region() -> str:
    return env("S3_REGION", "us-east-1")


def s3_bucket() -> str:
    return env("S3_BUCKET", "riskpipe")


def validator_api_key() -> str:
    """The key the stack's validator requires (empty: none), the job's default key."""
    return env("VALIDATOR_API_KEY", LOCAL_VALIDATOR_API_KEY)
