"""The CLI without services: flags, dry runs, pacing, summary, ground-truth file, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator import bench
from simulator.__main__ import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def run_main(capsys, *argv) -> tuple[int, dict | None, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return status, json.loads(lines[-1]) if lines else None, err


def test_every_flag_has_help():
    for action in build_parser()._actions:
        assert action.help, action.dest


def test_dry_run_prints_one_json_summary(capsys, tmp_path):
    truth = tmp_path / "truth.jsonl"
    status, summary, err = run_main(
        capsys,
        "--seed",
        "5",
        "--count",
        "3000",
        "--accounts",
        "100",
        "--dry-run",
        "--bad-rate",
        "0.02",
        "--fraud-rate",
        "0.02",
        "--ground-truth-file",
        str(truth),
    )
    assert status == 0
    assert summary["seed"] == 5 and summary["start_time"] == "2025-01-06T12:00:00+00:00"
    assert summary["messages"]["transactions"] == 3000
    assert summary["transactions"] + summary["bad"]["messages"] == 3000
    assert summary["accounts"]["initial"] + summary["accounts"]["late"] == 100
    assert summary["fraud"]["transactions"] == sum(
        summary["fraud"]["by_scenario"].values()
    )
    assert summary["delivery_failures"] == 0 and summary["rate_tps"] > 0
    assert "simulator: sent=3000" in err  # the final progress line
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    assert (
        rows[-1]["kind"] == "summary"
        and rows[-1]["transactions"] == summary["transactions"]
    )
    kinds = {r["kind"] for r in rows[:-1]}
    assert kinds == {"transaction", "bad", "late_account"}
    assert sum(r["kind"] == "bad" for r in rows) == summary["bad"]["messages"]
    assert (
        sum(r.get("is_fraud") is True for r in rows) == summary["fraud"]["transactions"]
    )
    assert summary["ground_truth_rows"] == len(rows) - 1


def test_seeded_runs_are_identical_across_processes(tmp_path):
    outputs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.jsonl"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "simulator",
                "--seed",
                "9",
                "--count",
                "2000",
                "--accounts",
                "50",
                "--dry-run",
                "--quiet",
                "--ground-truth-all",
                "--bad-rate",
                "0.05",
                "--ground-truth-file",
                str(path),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        outputs.append(
            [
                line
                for line in path.read_text().splitlines()
                if '"kind":"summary"' not in line
            ]
        )
    assert outputs[0] == outputs[1] and len(outputs[0]) > 2000


def test_unseeded_run_starts_now_and_reports_its_seed(capsys):
    before = time.time()
    status, summary, _ = run_main(
        capsys, "--count", "10", "--accounts", "10", "--dry-run"
    )
    assert status == 0 and isinstance(summary["seed"], int)
    from datetime import datetime

    assert abs(datetime.fromisoformat(summary["start_time"]).timestamp() - before) < 30


def test_tps_paces_the_run(capsys):
    started = time.monotonic()
    status, summary, _ = run_main(
        capsys,
        "--seed",
        "1",
        "--count",
        "300",
        "--tps",
        "200",
        "--accounts",
        "20",
        "--dry-run",
        "--quiet",
    )
    elapsed = time.monotonic() - started
    assert status == 0 and summary["messages"]["transactions"] == 300
    assert 1.3 < elapsed and summary["rate_tps"] < 230


def test_duration_stops_the_run_and_drains_late_accounts(capsys):
    started = time.monotonic()
    status, summary, _ = run_main(
        capsys,
        "--seed",
        "1",
        "--duration",
        "1.5",
        "--tps",
        "500",
        "--accounts",
        "100",
        "--late-account-rate",
        "0.2",
        "--dry-run",
        "--quiet",
    )
    assert status == 0 and 1.4 < time.monotonic() - started < 10
    assert 500 < summary["messages"]["transactions"] < 1000
    assert summary["accounts"]["late"] == 20


def test_unreachable_kafka_is_one_clear_line(capsys):
    status, summary, err = run_main(
        capsys,
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--connect-timeout",
        "1",
        "--count",
        "5",
        "--accounts",
        "5",
    )
    assert status == 3 and summary is None
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(
        "simulator: error: cannot reach Kafka at 127.0.0.1:1 within 1s"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--fraud-rate", "2"],
        ["--count", "-1"],
        ["--fraud-scenarios", "bogus"],
        ["--accounts", "1"],
        ["--count", "5", "--duration", "5"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_bench_without_kafka_prints_json(capsys):
    assert bench.main(["--count", "2000", "--no-kafka"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generate"]["tps"] > 0 and result["generate_serialize"]["tps"] > 0
    assert "generate_produce" not in result
