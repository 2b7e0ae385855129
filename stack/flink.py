"""Apache Flink standalone (one JobManager + one TaskManager), assembled from PyPI, no Docker.

Install (once, cached in ``<cache>/``):

- ``pip download`` the ``apache-flink-libraries`` sdist (lib/, opt/, plugins/ incl.
  metrics-prometheus, bin/bash-java-utils.jar; 232 MB) and the ``apache-flink`` wheel
  (bin/*.sh, conf/) of ``FLINK_VERSION``, without installing PyFlink (it pins another Beam);
  both are unpacked into ``<cache>/flink-<version>/`` (a FLINK_HOME);
- Beam's Flink job server jar (``stack/jobserver.py``).

Start: a generated ``config.yaml`` in ``.state/flink/conf`` (``FLINK_CONF_DIR``; the cached
FLINK_HOME is never modified) binds everything to 127.0.0.1 and keeps tmp, logs, pid files,
checkpoints and savepoints under ``.state/flink/``; then ``bin/jobmanager.sh start-foreground``
and ``bin/taskmanager.sh start-foreground`` (twice: two TaskManagers) each run as a detached
process of the stack (so pid files, logs and group kill work as for every service). All start
at once (a TaskManager retries until the JobManager answers); each gets its own Prometheus
reporter port (``-D metrics.reporter.prom.port``), so 9249 is always the JobManager and 9250
and 9251 the TaskManagers whatever the timing, and its own ``taskmanager.resource-id`` so
health means this TaskManager registered. Healthy: REST ``/overview`` shows the
TaskManagers with slots.

``down`` stops the TaskManager, the JobManager, and any Beam job-server JVM a FlinkRunner
submission left running with our jar. The Python SDK harness is the ``workerpool`` service
(``stack/workerpool.py``), which ``pipeline_args`` point at (EXTERNAL environment).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import uuid
import zipfile
from pathlib import Path

from pipeline.runners import flags
from stack import config, flink_rest, jobserver, process
from stack.base import Service, Status
from stack.errors import StackError

JM_MEMORY = "1024m"
TM_MEMORY = "2048m"
# Two TaskManagers (one JVM each): a job at parallelism 2 runs on both, as on a real cluster,
# and a TaskManager lost is half the cluster, not all of it. Together they hold at least as
# many slots as the machine has cores (the job's default parallelism, pipeline/runners/flags.py).
TASKMANAGERS = 2
TM_SLOTS = max(2, -(-(os.cpu_count() or 1) // TASKMANAGERS))
RESTART_ATTEMPTS = 10
RESTART_DELAY = "5s"
BLOB_CLEANUP_INTERVAL_S = 60
# Per-run scratch (blob caches, uploaded jars, spill files): emptied whenever no Flink process
# runs, so a day of job submissions does not fill the disk. Checkpoints and savepoints stay.
SCRATCH_DIRS = ("tmp", "web", "web-upload")
PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"

# What Flink's own conf/config.yaml passes to every JVM on Java 17 (module access).
JAVA_17_OPTS = " ".join(  # noqa: FLY002 - one flag a line reads better
    [
        "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
        "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
        "--add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED",
        "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
        "--add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED",
        "--add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED",
        "--add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED",
        "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "--add-opens=java.base/java.net=ALL-UNNAMED",
        "--add-opens=java.base/java.io=ALL-UNNAMED",
        "--add-opens=java.base/java.nio=ALL-UNNAMED",
        "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
        "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
        "--add-opens=java.base/java.text=ALL-UNNAMED",
        "--add-opens=java.base/java.time=ALL-UNNAMED",
        "--add-opens=java.base/java.util=ALL-UNNAMED",
        "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
        "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
        "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
    ]
)


# -- paths ---------------------------------------------------------------------------------
def flink_home() -> Path:
    """The cached FLINK_HOME assembled from PyPI (read-only for us once assembled)."""
    return config.cache_dir() / f"flink-{config.version('FLINK_VERSION')}"


def downloads_dir() -> Path:
    return config.cache_dir() / "downloads"


def job_server_jar() -> Path:
    """The Beam Flink job-server jar for ``--flink_job_server_jar`` (built on install)."""
    return jobserver.job_server_jar()


def state_dir() -> Path:
    return config.state_dir("flink")


def checkpoint_dir() -> Path:
    return state_dir() / "checkpoints"


def savepoint_dir() -> Path:
    return state_dir() / "savepoints"


def rest_url() -> str:
    return f"http://{config.HOST}:{config.port('FLINK')}"


def worker_pool_address() -> str:
    return f"{config.HOST}:{config.port('WORKER_POOL')}"


def pipeline_args(streaming: bool = True) -> list[str]:
    """FlinkRunner options submitting to the local cluster, SDK harness in the worker pool.

    The job runs detached (``--flink_submit_uber_jar`` uploads one jar over REST), so the
    submitting process may exit once it is submitted; the ``workerpool`` service must run.
    """
    return flags.flink_flags(
        f"{config.HOST}:{config.port('FLINK')}",
        str(job_server_jar()),
        worker_pool=worker_pool_address(),
        streaming=streaming,
    )


# -- install -------------------------------------------------------------------------------
def _pip_download(args: list[str], log_path: Path, what: str, say) -> None:
    jobserver.run_with_progress(
        [
            str(config.venv_python()),
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(downloads_dir()),
            *args,
        ],
        log_path=log_path,
        what=what,
        say=say,
        interesting=lambda line: (
            line.strip() if line.lstrip().startswith(("Downloading", "Saved")) else None
        ),
    )


def assemble_flink_home(log_path: Path, say) -> Path:
    """Downloads (once) and unpacks Flink's PyPI artifacts into ``flink_home()``."""
    version = config.version("FLINK_VERSION")
    home = flink_home()
    if (home / ".complete").exists():
        return home
    downloads_dir().mkdir(parents=True, exist_ok=True)
    sdist = downloads_dir() / f"apache_flink_libraries-{version}.tar.gz"
    if not sdist.exists():
        say(f"downloading apache-flink-libraries {version} sdist (232 MB) from PyPI …")
        _pip_download(
            ["--no-binary", ":all:", f"apache-flink-libraries=={version}"],
            log_path,
            "[flink] pip download apache-flink-libraries",
            say,
        )
    wheels = sorted(downloads_dir().glob(f"apache_flink-{version}-cp311-*.whl"))
    if not wheels:
        say(f"downloading apache-flink {version} wheel (bin/ and conf/) from PyPI …")
        _pip_download(
            [
                "--only-binary",
                ":all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                f"apache-flink=={version}",
            ],
            log_path,
            "[flink] pip download apache-flink",
            say,
        )
        wheels = sorted(downloads_dir().glob(f"apache_flink-{version}-cp311-*.whl"))
    if not sdist.exists() or not wheels:
        raise StackError(
            f"[flink] pip downloaded no Flink {version} artifacts; see {log_path}"
        )

    say(f"assembling FLINK_HOME in {home} …")
    partial = home.with_name(home.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "bin").mkdir(parents=True)
    (partial / "conf").mkdir()
    (partial / "log").mkdir()
    prefix = f"apache_flink_libraries-{version}/deps/"
    # Python < 3.11.4 (Debian 12's python3) has no extraction filters.
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            if not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix) :]
            wanted = relative.split("/", 1)[0] in ("lib", "opt", "plugins") and (
                member.isfile() or member.isdir()
            )
            if wanted or relative == "bin/bash-java-utils.jar":
                member.name = relative
                tar.extract(member, partial, **safe)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in wheel.namelist():
            for folder in ("bin", "conf"):
                if name.startswith(f"pyflink/{folder}/") and not name.endswith("/"):
                    target = partial / folder / Path(name).name
                    target.write_bytes(wheel.read(name))
    for script in (partial / "bin").iterdir():
        if script.suffix == ".sh" or script.name == "flink":
            script.chmod(0o755)
    reporter = (
        partial
        / "plugins"
        / "metrics-prometheus"
        / f"flink-metrics-prometheus-{version}.jar"
    )
    if not (partial / "bin" / "jobmanager.sh").exists() or not reporter.exists():
        raise StackError(f"[flink] the assembled FLINK_HOME in {partial} is incomplete")
    shutil.rmtree(home, ignore_errors=True)
    partial.rename(home)
    (home / ".complete").write_text(version + "\n")
    say(f"FLINK_HOME ready: {home}")
    return home


# -- configuration -------------------------------------------------------------------------
def render_config() -> str:
    """conf/config.yaml (Flink 1.20 standard YAML; flat keys; values written as JSON)."""
    state = state_dir()
    settings = {
        "jobmanager.bind-host": config.HOST,
        "jobmanager.rpc.address": config.HOST,
        "jobmanager.rpc.port": config.port("FLINK_RPC"),
        "jobmanager.memory.process.size": JM_MEMORY,
        "jobmanager.execution.failover-strategy": "region",
        "taskmanager.bind-host": config.HOST,
        "taskmanager.host": config.HOST,
        "taskmanager.numberOfTaskSlots": TM_SLOTS,
        # Spread a job's subtasks over the TaskManagers instead of filling the first one.
        "cluster.evenly-spread-out-slots": True,
        "taskmanager.memory.process.size": TM_MEMORY,
        "parallelism.default": 1,
        "rest.address": config.HOST,
        "rest.bind-address": config.HOST,
        "rest.port": config.port("FLINK"),
        "blob.server.port": str(config.port("FLINK_BLOB")),
        "io.tmp.dirs": str(state / "tmp"),
        "env.pid.dir": str(state / "pid"),
        "env.log.dir": str(state / "log"),
        # Full logs go to env.log.dir (the web UI shows them); the service log gets warnings.
        "env.java.opts.all": f"{JAVA_17_OPTS} -Djava.io.tmpdir={state / 'tmp'} -Dconsole.log.level=WARN",
        "web.tmpdir": str(state / "web"),
        "web.upload.dir": str(state / "web-upload"),
        # A TaskManager keeps a finished job's jar (~160 MB) this long before deleting it
        # (default 1 h): a test run submits dozens of jobs.
        "blob.service.cleanup.interval": BLOB_CLEANUP_INTERVAL_S,
        "execution.checkpointing.interval": f"{flags.CHECKPOINT_INTERVAL_MS}ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": "2min",
        "execution.checkpointing.dir": checkpoint_dir().as_uri(),
        "execution.checkpointing.savepoint-dir": savepoint_dir().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": "hashmap",
        # A killed TaskManager: the job restarts once `stack up flink` brings one back.
        # Notice a dead TaskManager within ~10 s (two failed heartbeat RPCs), not 50 s.
        "heartbeat.interval": "5s",
        "heartbeat.timeout": "30s",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": RESTART_ATTEMPTS,
        "restart-strategy.fixed-delay.delay": RESTART_DELAY,
        "metrics.reporters": "prom",
        "metrics.reporter.prom.factory.class": PROMETHEUS_FACTORY,
        # Overridden per process on the command line (9249 JobManager, 9250 and 9251 TaskManagers).
        "metrics.reporter.prom.port": str(config.port("FLINK_JM_METRICS")),
    }
    lines = ["# Generated by stack/flink.py on every start; edit there."]
    lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


class _FlinkProcess(Service):
    """The JobManager or the TaskManager: one foreground JVM under ``.state/flink``."""

    name = "flink"
    start_timeout_s = 120.0

    def __init__(self, role: str, script: str, port_name: str, metrics_port_name: str):
        self.role = role
        self.script = script
        self.port_name = port_name
        self.metrics_port_name = metrics_port_name

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.role}.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / f"{self.role}.pid"

    @contextlib.contextmanager
    def _lock(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / f".lock-{self.role}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def say(self, message: str, *args) -> None:
        super().say(f"{self.role}: {message}", *args)

    @property
    def unit(self) -> str:
        return f"{self.name}-{self.role}"

    def prepare(self) -> None:
        metrics_port = config.port(self.metrics_port_name)
        if process.port_taken(config.HOST, metrics_port):
            raise StackError(
                f"[flink] {self.role} metrics port {metrics_port} is taken; stop that process "
                f"or set RISKPIPE_{self.metrics_port_name}_PORT"
            )

    def command(self) -> list[str]:
        return [
            str(flink_home() / "bin" / self.script),
            "start-foreground",
            "-D",
            f"metrics.reporter.prom.port={config.port(self.metrics_port_name)}",
        ]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLINK_HOME": str(flink_home()),
            "FLINK_CONF_DIR": str(self.state_dir / "conf"),
        }

    @property
    def metrics_url(self) -> str:
        return f"http://{config.HOST}:{config.port(self.metrics_port_name)}/metrics"


class _JobManager(_FlinkProcess):
    def __init__(self):
        super().__init__("jobmanager", "jobmanager.sh", "FLINK", "FLINK_JM_METRICS")

    def prepare(self) -> None:
        for name in ("FLINK_RPC", "FLINK_BLOB"):
            if process.port_taken(config.HOST, config.port(name)):
                raise StackError(
                    f"[flink] port {config.port(name)} is taken; stop that process or set "
                    f"RISKPIPE_{name}_PORT"
                )
        super().prepare()

    def probe(self) -> None:
        flink_rest.overview(timeout=3.0)


class _TaskManager(_FlinkProcess):
    """Started with a fresh ``taskmanager.resource-id`` each time, so that health means *this*
    TaskManager registered (a killed one stays listed until its heartbeat times out).
    Supervised: the supervisor starts a new one when it dies."""

    supervised = True

    def __init__(self, number: int = 1):
        # The first keeps the plain names (taskmanager.log, FLINK_TM_METRICS); then "taskmanager2"...
        suffix = "" if number == 1 else str(number)
        port_name = "FLINK_TM_METRICS" if number == 1 else f"FLINK_TM{number}_METRICS"
        super().__init__(f"taskmanager{suffix}", "taskmanager.sh", port_name, port_name)

    @property
    def resource_id_path(self) -> Path:
        return self.state_dir / f"{self.role}.resource-id"

    def prepare(self) -> None:
        # base.up already refuses a taken FLINK_TM_METRICS port (our port_name).
        self.resource_id_path.write_text(f"riskpipe-tm-{uuid.uuid4().hex[:12]}\n")

    def command(self) -> list[str]:
        resource_id = self.resource_id_path.read_text().strip()
        return [*super().command(), "-D", f"taskmanager.resource-id={resource_id}"]

    def probe(self) -> None:
        try:
            resource_id = self.resource_id_path.read_text().strip()
        except OSError:
            raise StackError("the stack started no TaskManager") from None
        registered = flink_rest.request("GET", "/taskmanagers", timeout=3.0)[
            "taskmanagers"
        ]
        mine = [tm for tm in registered if tm["id"] == resource_id]
        if not mine or mine[0].get("slotsNumber", 0) < 1:
            raise StackError(f"TaskManager {resource_id} not registered with slots yet")


class Flink(Service):
    """The cluster (JobManager + TaskManager); ``down`` also ends stray job-server JVMs.

    ``.jobmanager`` and ``.taskmanager`` are the two processes, each with ``up()``/``down()``
    (e.g. a recovery test kills the TaskManager, then ``stack.up(["flink"])`` restarts it).
    """

    name = "flink"
    port_name = "FLINK"
    start_timeout_s = 120.0

    def __init__(self):
        self.jobmanager = _JobManager()
        self.taskmanagers = [_TaskManager(n) for n in range(1, TASKMANAGERS + 1)]
        self.taskmanager = self.taskmanagers[0]

    @property
    def pid_path(self) -> Path:
        return self.jobmanager.pid_path

    @property
    def log_path(self) -> Path:
        return self.jobmanager.log_path

    def is_installed(self) -> bool:
        return (
            flink_home() / ".complete"
        ).exists() and jobserver.job_server_jar_installed()

    def install(self) -> None:
        if shutil.which("java") is None:
            raise StackError(
                "[flink] needs java 17 on PATH: apt-get install -y openjdk-17-jre-headless"
            )
        assemble_flink_home(self.install_log_path, self.say)
        jobserver.install(self.install_log_path, self.say)

    def prepare(self) -> None:
        state = self.state_dir
        self._empty_scratch()
        for sub in (
            "tmp",
            "pid",
            "log",
            "web",
            "web-upload",
            "checkpoints",
            "savepoints",
        ):
            (state / sub).mkdir(parents=True, exist_ok=True)
        conf = state / "conf"
        conf.mkdir(exist_ok=True)
        for source in (flink_home() / "conf").iterdir():
            if source.is_file() and source.name != "config.yaml":
                shutil.copy(source, conf / source.name)
        with tempfile.NamedTemporaryFile("w", dir=conf, delete=False) as tmp:
            tmp.write(render_config())
        Path(tmp.name).replace(conf / "config.yaml")

    def probe(self) -> None:
        for taskmanager in self.taskmanagers:
            taskmanager.probe()

    def supervised_units(self) -> list[Service]:
        return [unit for tm in self.taskmanagers for unit in tm.supervised_units()]

    def up(self) -> str:
        with self._lock():
            if self._pids_alive() and self.check() is None:
                for taskmanager in self.taskmanagers:
                    taskmanager.mark_wanted()
                return "running"
            if not self.is_installed():
                self.install()
            if process.read_pid(self.jobmanager.pid_path) is None:
                self.prepare()
            # Both at once: the TaskManager keeps retrying until the JobManager answers (its
            # metrics port is fixed per process, so the start order does not matter); this
            # saves the ~5 s a JobManager takes to come up.
            processes = [self.jobmanager, *self.taskmanagers]
            with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
                started = [pool.submit(p.up) for p in processes]
                for future in started:
                    future.result()
            return "started"

    def _empty_scratch(self) -> None:
        """Deletes the scratch directories' contents, only when no Flink process runs."""
        if any(process.read_pid(p.pid_path) for p in (self.jobmanager, *self.taskmanagers)):
            return
        for sub in SCRATCH_DIRS:
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)

    def _pids_alive(self) -> bool:
        return all(
            process.read_pid(p.pid_path) for p in (self.jobmanager, *self.taskmanagers)
        )

    def down(self) -> bool:
        with self._lock():
            stopped = False
            for taskmanager in self.taskmanagers:
                stopped = taskmanager.down() or stopped
            stopped = self.jobmanager.down() or stopped
            self._empty_scratch()
            if jobserver.stop_job_servers():
                self.say("stopped leftover Beam job-server JVM(s)")
                stopped = True
        return stopped

    def status(self) -> Status:
        jm_pid = process.read_pid(self.jobmanager.pid_path)
        tm_pids = [process.read_pid(tm.pid_path) for tm in self.taskmanagers]
        tm_pid = all(tm_pids) or None
        problem = self.check()
        if problem is None and jm_pid and not tm_pid:
            problem = "a taskmanager is not running"
        if problem is None:
            state = "healthy"
            detail = "" if jm_pid and tm_pid else "not started by the stack"
        elif jm_pid is None and not any(tm_pids):
            state, detail = "stopped", ""
        else:
            state = "unhealthy"
            missing = [
                r for r, p in (("jobmanager", jm_pid), *((tm.role, pid) for tm, pid in
                                                       zip(self.taskmanagers, tm_pids)))
                if not p
            ]
            detail = problem
            if missing and "not running" not in problem:
                detail = f"{' and '.join(missing)} not running; {problem}"
        return Status(
            self.name, state, self.address, self.log_path, detail, jm_pid, self.restarts()
        )

    def endpoints(self) -> dict:
        return {
            "flink_master": self.address,
            "rest_url": rest_url(),
            "flink_version": config.version("FLINK_VERSION"),
            "flink_home": str(flink_home()),
            "conf_dir": str(self.state_dir / "conf"),
            "job_server_jar": str(job_server_jar()),
            "worker_pool": worker_pool_address(),
            "metrics_urls": {
                "jobmanager": self.jobmanager.metrics_url,
                **{tm.role: tm.metrics_url for tm in self.taskmanagers},
            },
            "checkpoint_dir": checkpoint_dir().as_uri(),
            "savepoint_dir": savepoint_dir().as_uri(),
            "jobmanager_pid": process.read_pid(self.jobmanager.pid_path),
            "taskmanager_pid": process.read_pid(self.taskmanager.pid_path),
            "taskmanager_pids": [process.read_pid(tm.pid_path) for tm in self.taskmanagers],
            "pipeline_args": pipeline_args(),
        }


def metrics_text(url: str, timeout: float = 5.0) -> str:
    """The Prometheus exposition text served at ``url``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()
