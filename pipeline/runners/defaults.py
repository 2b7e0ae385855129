"""Runner defaults for the local stack, added only where the user gave no flag.

``python -m pipeline.main --runner=FlinkRunner`` then means: stream to the standalone
cluster at 127.0.0.1:8081 with the cached job-server jar, a Beam worker pool as the SDK
harness (EXTERNAL environment, started by `make up`), and checkpoints every 10 s. With
``--flink_master=[local]`` the job runs on an embedded cluster instead, and the SDK
harness in this process (LOOPBACK), which must then stay alive while the job runs.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from pipeline.local_defaults import LOCAL_S3_ACCESS_KEY, LOCAL_S3_ENDPOINT, LOCAL_S3_SECRET_KEY
from pipeline.options import env

__all__ = ["job_server_jar", "with_runner_defaults"]

FLINK_VERSION = "1.20"
CHECKPOINT_INTERVAL_MS = 10_000


def _given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def job_server_jar() -> str | None:
    """The Beam Flink job-server jar: $RISKPIPE_FLINK_JOB_SERVER_JAR, else the stack's cache."""
    if os.environ.get("RISKPIPE_FLINK_JOB_SERVER_JAR"):
        return os.environ["RISKPIPE_FLINK_JOB_SERVER_JAR"]
    cache = Path(os.environ.get("RISKPIPE_CACHE_DIR") or Path.home() / ".cache" / "riskpipe")
    jars = sorted(glob.glob(str(cache / "**" / "beam-flink-job-server-*.jar"), recursive=True))
    return jars[-1] if jars else None


def _flink_defaults(argv: list[str]) -> list[str]:
    master = _value(argv, "--flink_master") or env("RISKPIPE_FLINK_MASTER", "127.0.0.1:8081")
    local = master in ("[local]", "[auto]")
    defaults = {
        "--flink_master": master,
        "--flink_version": FLINK_VERSION,
        "--streaming": None,
        "--checkpointing_interval": str(CHECKPOINT_INTERVAL_MS),
        # Finish open bundles before a checkpoint barrier. Otherwise a barrier that reaches a
        # stage fed only by Impulse (the readers' partition split) during a bundle parks the
        # bundle's output in operator state, and nothing flushes it: the job runs, checkpoints,
        # and never reads (2 of 6 submissions here). See docs/flink-notes.md.
        "--finish_bundle_before_checkpointing": None,
        "--environment_type": "LOOPBACK" if local else "EXTERNAL",
    }
    if not local:
        defaults["--flink_submit_uber_jar"] = None
        defaults["--environment_config"] = env("RISKPIPE_WORKER_POOL", "127.0.0.1:50000")
    jar = job_server_jar()
    if jar:
        defaults["--flink_job_server_jar"] = jar
    return [
        flag if value is None else f"{flag}={value}"
        for flag, value in defaults.items()
        if not _given(argv, flag)
    ]


def with_runner_defaults(argv: list[str], job_name: str) -> list[str]:
    """Returns ``argv`` plus the local-stack defaults for every flag it lacks."""
    argv = list(argv)
    defaults = {
        "--job_name": job_name,
        "--s3_endpoint_url": env("RISKPIPE_S3_ENDPOINT", LOCAL_S3_ENDPOINT),
        "--s3_access_key_id": env("RISKPIPE_S3_ACCESS_KEY", LOCAL_S3_ACCESS_KEY),
        "--s3_secret_access_key": env("RISKPIPE_S3_SECRET_KEY", LOCAL_S3_SECRET_KEY),
        "--s3_region_name": env("RISKPIPE_S3_REGION", "us-east-1"),
    }
    runner = (_value(argv, "--runner") or "DirectRunner").lower()
    if runner in ("directrunner", "direct"):
        # Beam's DirectRunner hands a graph with processing-time timers (the validation
        # step has one) to its legacy bundle-based runner, whose SDF support cannot run
        # the Kafka reader; the portable FnApiRunner runs it, locally and in-process.
        argv = [a for a in argv if not a.startswith("--runner")]
        defaults["--runner"] = "FnApiRunner"
    extra = [f"{flag}={value}" for flag, value in defaults.items() if not _given(argv, flag)]
    if runner in ("flinkrunner", "flink"):
        extra += _flink_defaults(argv)
    return argv + extra
