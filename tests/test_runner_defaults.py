"""Runner defaults: what `--runner=FlinkRunner` adds, and that a user's flag always wins."""

from __future__ import annotations

from pipeline.runners.defaults import with_runner_defaults


def _flags(argv: list[str]) -> dict[str, str | None]:
    out = {}
    for arg in argv:
        name, _, value = arg.partition("=")
        out[name] = value if _ else None
    return out


def test_flink_defaults_stream_to_the_local_cluster_and_finish_bundles_before_checkpoints():
    flags = _flags(with_runner_defaults(["--runner=FlinkRunner"], "transaction-attribution"))
    assert flags["--flink_master"] == "127.0.0.1:8081"
    assert flags["--environment_type"] == "EXTERNAL"
    assert "--streaming" in flags and "--flink_submit_uber_jar" in flags
    assert int(flags["--checkpointing_interval"]) > 0
    # Without it a checkpoint can park the readers' first output for good (a job that never reads).
    assert "--finish_bundle_before_checkpointing" in flags
    assert flags["--job_name"] == "transaction-attribution"


def test_a_given_flag_is_never_overridden():
    argv = ["--runner=FlinkRunner", "--flink_master=[local]", "--checkpointing_interval=500",
            "--job_name=mine"]
    flags = _flags(with_runner_defaults(argv, "transaction-attribution"))
    assert flags["--flink_master"] == "[local]"
    assert flags["--environment_type"] == "LOOPBACK"  # the embedded cluster runs the SDK here
    assert flags["--checkpointing_interval"] == "500"
    assert flags["--job_name"] == "mine"
    assert "--flink_submit_uber_jar" not in flags


def test_direct_runner_means_the_portable_fn_api_runner():
    flags = _flags(with_runner_defaults([], "transaction-attribution"))
    assert flags["--runner"] == "FnApiRunner"
    assert "--streaming" not in flags and "--finish_bundle_before_checkpointing" not in flags
