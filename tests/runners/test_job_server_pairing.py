"""The Python SDK (``BEAM_VERSION``) against the Flink job server of ``BEAM_JOB_SERVER_VERSION``.

The two are released apart (Maven Central has no job server of the SDK's version; see
``docs/flink-notes.md``, "SDK and job server versions"), and the job server of 2.62 does not
read a pipeline's ``requirements``: a feature the SDK and the runner disagree on would not
be refused, it would misbehave. So:

- a probe pipeline (``tests/runners/pairing_probe.py``) that uses every Beam feature the
  job relies on runs on the real FlinkRunner with the stack's job-server jar, on an
  embedded Flink (``--flink_master=[local]``, LOOPBACK: the SDK harness is this process;
  the shared cluster is not touched), streaming with checkpoints like the job; each test
  below checks one feature's output;
- the job's own pipeline proto is compared with the probe's: every requirement, transform
  URN, state kind, timer domain, ParDo capability, windowing and coder the job uses must be
  one the probe exercised, so a change to the job that needs a new feature fails here until
  the probe covers it;
- the URNs the runner must translate itself (Impulse, GroupByKey, Flatten, Reshuffle) are
  checked against what the jar's portable translators accept.

Runs in about a minute (the job server's JVM and a Flink mini cluster start).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import stack
from pipeline.main import build as build_job
from pipeline.runners.flags import job_server_jar, pinned_version, with_runner_defaults
from tests.runners import pairing_probe as probe

# The job server's JVM and an embedded Flink: needs the stack's jar (built by `stack install
# flink`) and java, not the cluster.
pytestmark = pytest.mark.services

HERE = Path(__file__).resolve().parent
PER_KEY = probe.SIZE // probe.KEYS
READS = probe.SIZE // probe.CHUNK
# The probe's own settings over the job's Flink flags: checkpoints often enough to come
# during its few seconds (finalization follows them), and sources that end once idle, so
# that a streaming job with checkpoints finishes.
PROBE_FLAGS = ("--checkpointing_interval=1000", "--shutdown_sources_after_idle_ms=5000")


def flink_args(*extra: str) -> list[str]:
    """The job's own FlinkRunner flags for an embedded cluster, with ``extra`` first."""
    return with_runner_defaults(
        ["--runner=FlinkRunner", "--flink_master=[local]", *extra], "riskpipe-pairing-probe"
    )


def proto_of(build, args: list[str]):
    options = PipelineOptions(args)
    p = beam.Pipeline(options=options)
    build(p, options)
    return p.to_runner_api()


@pytest.fixture(scope="module")
def jar() -> str:
    stack.install(["flink"])  # builds the job-server jar once; cached afterwards
    found = job_server_jar()
    assert found, "no job-server jar after `stack install flink`"
    return found


@pytest.fixture(scope="module")
def probe_run(jar, tmp_path_factory):
    """The probe, run once on the FlinkRunner: (its output folder, its counters)."""
    out = tmp_path_factory.mktemp("probe")
    args = flink_args(*PROBE_FLAGS)
    assert f"--flink_job_server_jar={jar}" in args
    p = beam.Pipeline(options=PipelineOptions(args))
    probe.build(p, str(out))
    result = p.run()
    result.wait_until_finish()
    assert str(result.state) == "DONE", result.state
    counters = {
        c.key.metric.name: c.committed or c.attempted
        for c in result.metrics().query()["counters"]
        if c.key.metric.namespace == probe.NAMESPACE
    }
    logging.getLogger(__name__).info("probe counters: %s", counters)
    return out, counters


def finals(out: Path) -> dict[int, dict]:
    found = probe.read_lines(out, "final")
    assert len(found) == probe.KEYS, found
    return {line["key"]: line for line in found}


def fired(out: Path, timer: str) -> dict[int, list[int]]:
    """Key → how many positions it had seen at each firing of ``timer``."""
    by_key: dict[int, list[int]] = {}
    for line in probe.read_lines(out, "fired"):
        if line["timer"] == timer:
            by_key.setdefault(line["key"], []).append(line["seen"])
    return by_key


def test_the_splittable_read_checkpoints_itself_and_reads_every_position_once(probe_run):
    out, counters = probe_run
    positions = sorted(p for line in finals(out).values() for p in line["positions"])
    assert positions == list(range(probe.SIZE))
    # One call per chunk: every call but the last deferred the rest of the range.
    assert counters["probe_reads"] == READS


def test_tagged_outputs_flatten_and_the_keyed_shuffle_keep_each_key_apart(probe_run):
    out, _ = probe_run
    for key, line in finals(out).items():
        assert line["positions"] == list(range(key, probe.SIZE, probe.KEYS))


def test_bag_and_read_modify_write_state_keep_values_of_custom_coders(probe_run):
    out, _ = probe_run
    for key, line in finals(out).items():
        assert line["labels"] == [f"key-{key}"]
        assert line["total"] == sum(range(key, probe.SIZE, probe.KEYS))


def test_event_time_timers_follow_the_watermark_of_the_splittable_read(probe_run):
    """``early`` (BASE + 5 s) fires while positions are still being read: the manual
    watermark estimator moved event time on. ``end`` fires after the last one."""
    out, _ = probe_run
    early, end = fired(out, "early"), fired(out, "end")
    assert sorted(early) == sorted(end) == list(range(probe.KEYS))
    for key in range(probe.KEYS):
        assert len(early[key]) == 1 and early[key][0] < PER_KEY, early
        assert end[key] == [PER_KEY], end


def test_a_processing_time_timer_fires_and_a_cleared_one_never_does(probe_run):
    out, _ = probe_run
    tick = fired(out, "tick")
    assert {key: len(seen) for key, seen in tick.items()} == dict.fromkeys(range(probe.KEYS), 1)
    assert fired(out, "cleared") == {}


def test_bundle_finalization_calls_back_for_every_read(probe_run):
    """The runner finalizes a bundle once a checkpoint covers it (the job commits Kafka
    offsets then); the last ones with the final checkpoint as the job ends."""
    out, _ = probe_run
    finalized = sorted(int(path.name) for path in (out / "finalized").iterdir())
    assert finalized == list(range(0, probe.SIZE, probe.CHUNK))


def test_counters_reach_the_runner(probe_run):
    _, counters = probe_run
    assert counters["probe_positions"] == probe.SIZE


def test_the_probe_exercises_every_feature_the_job_uses():
    job = probe.features(proto_of(build_job, flink_args()))
    exercised = probe.features(proto_of(lambda p, _: probe.build(p, "unused"), flink_args()))
    missing = sorted(job - exercised)
    assert not missing, (
        f"the job uses {missing}, which the pairing probe does not exercise: add it to "
        "tests/runners/pairing_probe.py (see docs/flink-notes.md, SDK and job server versions)"
    )


def test_the_job_server_translates_what_the_runner_must_execute(jar):
    listed = subprocess.run(
        ["java", "-cp", jar, str(HERE / "FlinkKnownUrns.java")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    streaming = {line.split(" ", 1)[1] for line in listed.stdout.splitlines()
                 if line.startswith("streaming ")}
    assert streaming, listed.stdout
    job = probe.runner_primitives(proto_of(build_job, flink_args()))
    unknown = sorted(job - streaming)
    assert not unknown, (
        f"the Flink job server {pinned_version('BEAM_JOB_SERVER_VERSION')} does not translate "
        f"{unknown}; it knows {sorted(streaming)}"
    )
