"""Beam's Flink job server jar: found on Maven Central or built from ``stack/jobserver/pom.xml``.

The FlinkRunner needs a job-server jar (``--flink_job_server_jar``): with
``--flink_submit_uber_jar`` it copies the pipeline into it and uploads it to the cluster's REST
API (no JVM on our side); without it, or with ``--flink_master=[local]``, it runs
``java -jar <jar>`` as a child of the submitting Python process.

Maven Central publishes no ``beam-runners-flink-<FLINK_MINOR>-job-server`` for our
``BEAM_VERSION`` (checked once per install with ``mvn dependency:get``; preferred if it ever
appears), so ``install`` builds one: ``beam-runners-flink-1.19:<BEAM_JOB_SERVER_VERSION>`` with
flink-* forced to ``FLINK_VERSION``, shaded with ``FlinkJobServerDriver`` as main class
(~160 MB; 20–40 s with a warm ``~/.m2``, a few minutes cold). Either jar is cached in
``<cache>/`` and ``job_server_jar()`` returns its path.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.runners import flags
from stack import config, process
from stack.errors import StackError

logger = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent / "jobserver" / "pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


def official_job_server_jar() -> Path:
    """Where Maven Central's own job server would be cached (if it existed)."""
    return config.cache_dir() / flags.official_job_server_jar_name()


def built_job_server_jar() -> Path:
    """Where the jar built from ``stack/jobserver/pom.xml`` is cached (the job looks there
    too: ``pipeline.runners.flags.job_server_jar``)."""
    return config.cache_dir() / flags.built_job_server_jar_name()


def job_server_jar() -> Path:
    """The job-server jar to pass as ``--flink_job_server_jar`` (may not exist yet)."""
    official = official_job_server_jar()
    return official if official.exists() else built_job_server_jar()


def job_server_jar_installed() -> bool:
    return official_job_server_jar().exists() or built_job_server_jar().exists()


def run_with_progress(
    command: list[str],
    *,
    log_path: Path,
    what: str,
    say: Callable[[str], None],
    heartbeat_s: float = 15.0,
    interesting: Callable[[str], str | None] = lambda line: None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Runs an install step, logging its output and printing progress while it runs.

    Args:
        say: prints one progress line.
        interesting: maps an output line to a progress message (or None to stay quiet).
        env: the step's environment (None: ours).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"\n--- {time.strftime('%F %T')} {what}: {' '.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                cwd=cwd,
                env=env,
            )
        except OSError as exc:
            raise StackError(f"{what} failed: cannot run {command[0]}: {exc}") from exc
        done = threading.Event()
        step = what.split("] ", 1)[-1]  # say() adds the "[service]" prefix itself

        def tick() -> None:
            while not done.wait(heartbeat_s):
                say(f"{step}: still running ({time.monotonic() - started:.0f} s)")

        threading.Thread(target=tick, daemon=True).start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                message = interesting(line)
                if message:
                    say(f"{step}: {message}")
            proc.wait()
        finally:
            done.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise StackError(f"{what} failed (exit {proc.returncode}); see {log_path}")
    say(f"{what.split('] ', 1)[-1]}: done in {time.monotonic() - started:.1f} s")


def _maven_progress(line: str) -> str | None:
    # "[INFO] --- maven-shade-plugin:3.5.1:shade (default) @ beam-flink-job-server ---"
    if "[INFO] --- " in line:
        return line.split("[INFO] --- ", 1)[1].split(" @ ")[0].strip()
    return None


def install(
    log_path: Path, say: Callable[[str], None], try_official: bool = True
) -> Path:
    """Caches a job-server jar (official if Maven Central has one, else built); returns it."""
    if job_server_jar_installed():
        return job_server_jar()
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError(
            "[flink] needs java (17+) and mvn on PATH: apt-get install -y openjdk-17-jdk-headless maven"
        )
    cache = config.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    minor, beam = config.version("FLINK_MINOR"), config.version("BEAM_VERSION")
    artifact = f"org.apache.beam:beam-runners-flink-{minor}-job-server:{beam}"
    if try_official:
        say(f"checking Maven Central for {artifact} …")
        get = [
            "mvn",
            "-B",
            "-q",
            "-U",
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={cache}",
            "-Dmdep.stripVersion=false",
        ]
        # copy needs a project; run it against our pom (it only reads the repositories).
        try:
            process.run(
                [*get, "-f", str(POM)],
                log_path=log_path,
                what=f"[flink] mvn copy {artifact}",
            )
        except StackError:
            say(f"{artifact} is not on Maven Central: building our own job server")
        else:
            fetched = cache / f"beam-runners-flink-{minor}-job-server-{beam}.jar"
            if fetched.exists():
                say(f"using Maven Central's job server {fetched}")
                return fetched
    target = built_job_server_jar()
    build = cache / "beam-flink-job-server-build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    shutil.copy(POM, build / "pom.xml")
    jobserver_version = config.version("BEAM_JOB_SERVER_VERSION")
    flink = config.version("FLINK_VERSION")
    say(
        f"building the Beam job server jar (beam-runners-flink-1.19 {jobserver_version}, "
        f"Flink {flink}) with mvn in {build}; 20-40 s with a warm ~/.m2 (log: {log_path})"
    )
    run_with_progress(
        [
            "mvn",
            "-B",
            "package",
            "-f",
            str(build / "pom.xml"),
            f"-Dbeam.version={jobserver_version}",
            f"-Dflink.version={flink}",
        ],
        log_path=log_path,
        what="[flink] mvn package job server",
        say=say,
        interesting=_maven_progress,
    )
    built = (
        build / "target" / f"beam-flink-job-server-{jobserver_version}-flink{flink}.jar"
    )
    if not built.exists():
        raise StackError(f"[flink] mvn built no {built.name}; see {log_path}")
    partial = target.with_suffix(".jar.partial")
    shutil.copy(built, partial)
    partial.replace(target)
    shutil.rmtree(build, ignore_errors=True)
    say(f"job server jar: {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def job_server_pids() -> list[int]:
    """Java processes running one of our cached job-server jars (left by FlinkRunner runs)."""
    jars = {str(official_job_server_jar()), str(built_job_server_jar())}
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "java" and jars.intersection(argv):
            pids.append(int(cmdline.parent.name))
    return pids


def stop_job_servers(timeout: float = 15.0) -> int:
    """Stops every job-server JVM running our jar (SIGTERM, then SIGKILL); returns how many."""
    pids = job_server_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process.is_alive(pid) for pid in pids):
        time.sleep(process.POLL_INTERVAL_S)
    for pid in pids:
        if process.is_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return len(pids)
