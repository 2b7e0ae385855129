"""Runner defaults: what `--runner=FlinkRunner` adds, and that a user's flag always wins."""

from __future__ import annotations

from pipeline.runners.flags import with_runner_defaults


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


def test_the_local_stack_submits_with_the_same_flink_flags():
    from stack import flink as stack_flink

    stack_args = _flags(stack_flink.pipeline_args())
    job_args = _flags(with_runner_defaults(["--runner=FlinkRunner"], "transaction-attribution"))
    for name, value in stack_args.items():
        if name != "--flink_job_server_jar":  # the stack names its jar even before it is built
            assert job_args.get(name, "absent") == value, name
    assert "--finish_bundle_before_checkpointing" in stack_args


def test_runner_names_are_normalised_once():
    for given in ("--runner=flink", "--runner=FlinkRunner", "--runner=flinkrunner"):
        flags = _flags(with_runner_defaults([given], "transaction-attribution"))
        assert flags["--runner"] == "FlinkRunner" and "--streaming" in flags
    flags = _flags(with_runner_defaults(["--runner", "prism"], "transaction-attribution"))
    assert flags["--runner"] == "PrismRunner" and "prism" not in flags


def test_prism_makes_no_dynamic_split_whatever_other_experiments_are_given():
    # Why: tests/runners/test_prism_splits.py.
    args = with_runner_defaults(["--runner=prism"], "transaction-attribution")
    assert "--experiments=prism_disable_sdf_split" in args
    args = with_runner_defaults(
        ["--runner=prism", "--experiments=use_runner_v2"], "transaction-attribution"
    )
    assert "--experiments=prism_disable_sdf_split" in args and "--experiments=use_runner_v2" in args
    args = with_runner_defaults(
        ["--runner=prism", "--experiments=prism_disable_sdf_split"], "transaction-attribution"
    )
    assert args.count("--experiments=prism_disable_sdf_split") == 1


def test_prism_runs_on_the_stacks_binary_once_it_is_built(tmp_path, monkeypatch):
    from pipeline.runners.flags import prism_binary_name

    monkeypatch.delenv("RISKPIPE_PRISM_LOCATION", raising=False)
    monkeypatch.setenv("RISKPIPE_CACHE_DIR", str(tmp_path))
    flags = _flags(with_runner_defaults(["--runner=prism"], "transaction-attribution"))
    assert flags["--runner"] == "PrismRunner"
    assert "--prism_location" not in flags  # not built: Beam fetches its release binary
    binary = tmp_path / prism_binary_name()
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"")
    flags = _flags(with_runner_defaults(["--runner=prism"], "transaction-attribution"))
    assert flags["--prism_location"] == str(binary)
    assert "--streaming" not in flags and "--environment_type" not in flags


def test_a_prism_location_from_the_environment_or_the_command_line_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKPIPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RISKPIPE_PRISM_LOCATION", "/opt/prism/prism")
    flags = _flags(with_runner_defaults(["--runner=PrismRunner"], "transaction-attribution"))
    assert flags["--prism_location"] == "/opt/prism/prism"
    argv = ["--runner=PrismRunner", "--prism_location=/elsewhere/prism"]
    flags = _flags(with_runner_defaults(argv, "transaction-attribution"))
    assert flags["--prism_location"] == "/elsewhere/prism"


def test_the_stack_builds_prism_where_the_job_looks_for_it(tmp_path, monkeypatch):
    from pipeline.runners.flags import cache_dir, pinned_version, prism_binary_name
    from stack.prism import Prism

    monkeypatch.setenv("RISKPIPE_CACHE_DIR", str(tmp_path))
    assert Prism().binary == cache_dir() / prism_binary_name()
    assert Prism().version == f"v{pinned_version('BEAM_VERSION')}"
