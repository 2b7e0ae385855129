"""The one place riskpipe's runner flags are made, added only where the user gave none.

``python -m pipeline.main --runner=FlinkRunner`` then means: stream to the cluster at
``$RISKPIPE_FLINK_MASTER`` (default 127.0.0.1:8081) with the job-server jar, a Beam worker
pool as the SDK harness (EXTERNAL environment at ``$RISKPIPE_WORKER_POOL``), checkpoints
every ``CHECKPOINT_INTERVAL_MS`` and bundles finished before each checkpoint. With
``--flink_master=[local]`` the job runs on an embedded cluster and the SDK harness in this
process (LOOPBACK), which must then stay alive while the job runs.

``--runner=PrismRunner`` gets ``--prism_location`` of the Prism binary the local stack built
(``stack/prism.py``) or ``$RISKPIPE_PRISM_LOCATION``: without it Beam downloads a release
binary from GitHub. It also gets ``--experiments=prism_disable_sdf_split`` (``PRISM_NO_SPLITS``).

The local stack (``stack/flink.py``), the tests and docker-compose's submitter all take
their Flink flags from :func:`flink_flags`; versions come from ``versions.env``.

>>> "--finish_bundle_before_checkpointing" in flink_flags("127.0.0.1:8081", jar=None)
True
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pipeline.local_defaults import (
    LOCAL_S3_ACCESS_KEY,
    LOCAL_S3_ENDPOINT,
    LOCAL_S3_SECRET_KEY,
)

__all__ = [
    "CHECKPOINT_INTERVAL_MS",
    "PRISM_NO_SPLITS",
    "built_job_server_jar_name",
    "flink_flags",
    "job_server_jar",
    "pinned_version",
    "prism_binary_name",
    "prism_location",
    "with_runner_defaults",
]

# Prism splits any bundle that makes no progress between two of its progress requests, and a
# split of a stateful step's bundle releases the keys of the elements it hands back while the
# first part still holds them: the next bundle reads a key's state before that part commits
# it, and the key's updates are lost (tests/runners/test_prism_splits.py shows it on Beam's
# runner alone; apache/beam#35771 is the same split with timers). The Kafka reader declines
# runner splits anyway, so Prism loses nothing by making none.
PRISM_NO_SPLITS = "prism_disable_sdf_split"
# versions.env sits at the root of a checkout and of the Docker image, beside pipeline/.
VERSIONS_FILE = Path(__file__).resolve().parents[2] / "versions.env"
CHECKPOINT_INTERVAL_MS = int(os.environ.get("RISKPIPE_CHECKPOINT_INTERVAL_MS") or 10_000)
LOCAL_FLINK_MASTER = "127.0.0.1:8081"
# Bundles, measured on the local cluster (docs/flink-notes.md): large bundles for the stateful
# step's throughput (every bundle end commits state and waits for its sinks), a short bundle
# time because the runner runs a Python read only when the bundle holding it ends, and
# elements handed to the SDK every 4 KB instead of at the bundle's end. 150 ms since the
# Kafka read kept one consumer per partition and process and the validator was called per
# bundle's group: produce → row p50 under 300 ms at 200 tx/s and p99 under a second at 1,000
# (250 ms: 340 ms and about 1.2 s), for about a sixth less backlog rate
# (docs/flink-notes.md, "150 ms bundles").
# 4 KB, not 16 KB: at 200 tx/s a bundle's input to the account step rarely filled 16 KB and
# so waited for the bundle's end; produce → row p50 about 400 ms against 520, for about a
# sixth less backlog rate (docs/flink-notes.md, "Elements to the SDK every 4 KB").
MAX_BUNDLE_SIZE = 20_000
MAX_BUNDLE_TIME_MS = 150
DATA_BUFFER_SIZE_LIMIT = 4 * 1024
LOCAL_WORKER_POOL = "127.0.0.1:50000"
EMBEDDED_MASTERS = ("[local]", "[auto]")


@functools.cache
def _versions() -> dict[str, str]:
    pinned = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip()
    return pinned


def pinned_version(key: str) -> str:
    """One version pinned in ``versions.env``, e.g. ``pinned_version("FLINK_MINOR")``."""
    try:
        return _versions()[key]
    except FileNotFoundError:
        raise RuntimeError(f"versions.env not found at {VERSIONS_FILE}") from None
    except KeyError:
        raise RuntimeError(f"{key} is not pinned in {VERSIONS_FILE}") from None


def built_job_server_jar_name() -> str:
    """The file name of the job-server jar the stack builds (Maven Central has none for our
    Beam version; see ``versions.env``)."""
    return (
        f"beam-flink-job-server-{pinned_version('BEAM_JOB_SERVER_VERSION')}"
        f"-flink{pinned_version('FLINK_VERSION')}.jar"
    )


def official_job_server_jar_name() -> str:
    """The file name Maven Central's own job-server jar would have."""
    return (
        f"beam-runners-flink-{pinned_version('FLINK_MINOR')}-job-server-"
        f"{pinned_version('BEAM_VERSION')}.jar"
    )


def cache_dir() -> Path:
    """The download cache shared by every checkout: ``$RISKPIPE_CACHE_DIR`` or ~/.cache/riskpipe."""
    base = os.environ.get("RISKPIPE_CACHE_DIR") or Path.home() / ".cache" / "riskpipe"
    return Path(base).expanduser().resolve()


def job_server_jar() -> str | None:
    """``$RISKPIPE_FLINK_JOB_SERVER_JAR``, else the cached jar (Maven Central's if present, else
    the built one), else None: Beam then tries to download one."""
    if os.environ.get("RISKPIPE_FLINK_JOB_SERVER_JAR"):
        return os.environ["RISKPIPE_FLINK_JOB_SERVER_JAR"]
    for name in (official_job_server_jar_name(), built_job_server_jar_name()):
        if (cache_dir() / name).exists():
            return str(cache_dir() / name)
    return None


def parallelism() -> int:
    """The job's default parallelism: ``$RISKPIPE_FLINK_PARALLELISM``, else this machine's
    cores (the local stack gives its TaskManagers at least that many slots)."""
    return int(os.environ.get("RISKPIPE_FLINK_PARALLELISM") or os.cpu_count() or 1)


def prism_binary_name() -> str:
    """Where, under the cache, the stack builds Prism (``stack/prism.py``): one folder per
    Beam version, since Prism is built from the Go module of ``BEAM_VERSION``."""
    return f"prism-v{pinned_version('BEAM_VERSION')}/prism"


def prism_location() -> str | None:
    """``$RISKPIPE_PRISM_LOCATION``, else the stack's cached Prism binary, else None: Beam
    then downloads the release binary from GitHub (which fails offline)."""
    if os.environ.get("RISKPIPE_PRISM_LOCATION"):
        return os.environ["RISKPIPE_PRISM_LOCATION"]
    binary = cache_dir() / prism_binary_name()
    return str(binary) if binary.exists() else None


def flink_flags(
    master: str,
    jar: str | None,
    worker_pool: str = LOCAL_WORKER_POOL,
    streaming: bool = True,
) -> list[str]:
    """Every FlinkRunner flag riskpipe sets, for a job on ``master``.

    Args:
      master: ``host:port`` of Flink's REST API, or ``[local]`` for an embedded cluster.
      jar: the job-server jar (None: Beam downloads one, which fails offline).
      worker_pool: ``host:port`` of the Beam worker pool (EXTERNAL environment).
      streaming: a streaming job with checkpoints (False: a bounded batch job).
    """
    embedded = master in EMBEDDED_MASTERS
    flags = [
        "--runner=FlinkRunner",
        f"--flink_master={master}",
        f"--flink_version={pinned_version('FLINK_MINOR')}",
        # Finish open bundles before a checkpoint barrier. Otherwise a barrier that reaches a
        # stage fed only by Impulse (the readers' partition split) during a bundle parks the
        # bundle's output in operator state, and nothing flushes it: the job runs, checkpoints,
        # and never reads (2 of 6 submissions here). See docs/flink-notes.md.
        "--finish_bundle_before_checkpointing",
        f"--parallelism={parallelism()}",
        f"--max_bundle_size={MAX_BUNDLE_SIZE}",
        f"--max_bundle_time_mills={MAX_BUNDLE_TIME_MS}",
        f"--experiments=data_buffer_size_limit={DATA_BUFFER_SIZE_LIMIT}",
    ]
    if streaming:
        flags += ["--streaming", f"--checkpointing_interval={CHECKPOINT_INTERVAL_MS}"]
    if embedded:
        flags.append("--environment_type=LOOPBACK")
    else:
        # Detached: the job outlives the command that submitted it.
        flags += [
            "--flink_submit_uber_jar",
            "--environment_type=EXTERNAL",
            f"--environment_config={worker_pool}",
            # One SDK worker per slot the job uses: Python steps run on every core.
            f"--sdk_worker_parallelism={parallelism()}",
        ]
    if jar:
        flags.append(f"--flink_job_server_jar={jar}")
    return flags


def env(name: str, default: str) -> str:
    """The value of environment variable ``name``, or ``default`` when unset or empty."""
    return os.environ.get(name) or default


def _name(arg: str) -> str:
    return arg.split("=", 1)[0]


def _given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            return argv[i + 1]
    return None


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` (``--flag=value`` or ``--flag value``)."""
    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == flag:
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def runner_name(argv: list[str]) -> str:
    """The runner ``argv`` asks for, normalised: ``FlinkRunner``, ``PrismRunner``,
    ``FnApiRunner`` (what ``DirectRunner`` or no flag means here) or the name as given.

    >>> runner_name(["--runner=flink"]), runner_name([]), runner_name(["--runner", "Prism"])
    ('FlinkRunner', 'FnApiRunner', 'PrismRunner')
    """
    given = (_value(argv, "--runner") or "DirectRunner").strip()
    known = {
        "flink": "FlinkRunner", "flinkrunner": "FlinkRunner",
        "prism": "PrismRunner", "prismrunner": "PrismRunner",
        "direct": "FnApiRunner", "directrunner": "FnApiRunner",
        "fnapi": "FnApiRunner", "fnapirunner": "FnApiRunner",
    }
    return known.get(given.lower(), given)


def with_runner_defaults(argv: list[str], job_name: str) -> list[str]:
    """Returns ``argv`` with the runner normalised and every default flag it lacks added.

    ``DirectRunner`` means the portable FnApiRunner: Beam's DirectRunner hands a graph with
    processing-time timers (the validation step has one) to its legacy bundle-based runner,
    whose SDF support cannot run the Kafka reader.
    """
    runner = runner_name(argv)
    argv = _without(argv, "--runner")
    defaults = [
        f"--runner={runner}",
        f"--job_name={job_name}",
        f"--s3_endpoint_url={env('RISKPIPE_S3_ENDPOINT', LOCAL_S3_ENDPOINT)}",
        f"--s3_access_key_id={env('RISKPIPE_S3_ACCESS_KEY', LOCAL_S3_ACCESS_KEY)}",
        f"--s3_secret_access_key={env('RISKPIPE_S3_SECRET_KEY', LOCAL_S3_SECRET_KEY)}",
        f"--s3_region_name={env('RISKPIPE_S3_REGION', 'us-east-1')}",
    ]
    if runner == "FlinkRunner":
        master = _value(argv, "--flink_master") or env("RISKPIPE_FLINK_MASTER", LOCAL_FLINK_MASTER)
        defaults += flink_flags(
            master, job_server_jar(), env("RISKPIPE_WORKER_POOL", LOCAL_WORKER_POOL)
        )
    elif runner == "PrismRunner":
        defaults.append(f"--experiments={PRISM_NO_SPLITS}")
        if prism_location():
            defaults.append(f"--prism_location={prism_location()}")
    return argv + [flag for flag in defaults if not _given(argv, _name(flag))
                   or (_name(flag) == "--experiments" and not _has_experiment(argv, flag))]


def _has_experiment(argv: list[str], flag: str) -> bool:
    """Whether ``argv`` already sets the experiment ``flag`` names (experiments add up)."""
    name = flag.split("=", 2)[1]
    return any(a.startswith(f"--experiments={name}=") or a == f"--experiments={name}"
               for a in argv)
