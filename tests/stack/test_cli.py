"""The ``python -m stack`` command line."""

import subprocess
import sys

from stack import config


def _stack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        check=False,
        cwd=config.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_status_exits_zero_when_up(stack_up):
    stack_up("kafka", "postgres")

    result = _stack("status", "kafka", "postgres")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka" in result.stdout and "healthy" in result.stdout


def test_up_of_running_services_is_fast_and_idempotent(stack_up):
    stack_up("kafka", "postgres")

    result = _stack("up", "kafka", "postgres")

    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stderr


def test_unknown_service_is_one_line_error(stack_up):
    result = _stack("status", "nope")

    assert result.returncode == 1
    from stack import SERVICES

    assert result.stderr.strip().splitlines() == [
        f"stack: error: unknown service(s) nope; known: {', '.join(SERVICES)}"
    ]


def test_urls_lists_the_web_uis(stack_up):
    stack_up("flink", "prometheus", "validator")
    result = _stack("urls")

    assert result.returncode == 0
    assert "http://127.0.0.1:8081" in result.stdout
    assert "http://127.0.0.1:8000/docs" in result.stdout


def test_install_takes_a_tool_and_prints_where_it_is():
    from stack.prism import Prism

    # A first build takes minutes on 2 busy cores; afterwards the binary is cached.
    result = _stack("install", "prism", timeout=900)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"prism: {Prism().binary}"
    assert Prism().binary.exists()
    usage = subprocess.run(
        [str(Prism().binary), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "job_port" in usage.stdout + usage.stderr


def test_install_of_an_unknown_name_is_one_line_error():
    result = _stack("install", "nope")

    assert result.returncode == 1
    assert result.stderr.strip().startswith("stack: error: unknown service(s) or tool(s) nope;")
