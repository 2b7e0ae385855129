"""Security basics: local-only credentials stay in their documented places, services bind
to 127.0.0.1, and Postgres passwords never reach logs or errors.

The validator's API-key check (401 without the key) is tested in tests/validator
(test_validator_app.py::test_api_key_required_when_configured, test_validator_server.py).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stack.config
from pipeline.io.postgres import _redact
from validator.__main__ import build_parser

REPO = Path(__file__).resolve().parents[2]
# The only places the local stack's default credentials may be spelled out: credentials come
# from the environment, and the defaults work only against the local stack (README).
ALLOWED = {"pipeline/local_defaults.py", "stack/config.py", "docker-compose.yml"}
CREDENTIALS = (
    re.compile(r"riskpipe-secret"),  # S3 secret key
    re.compile(r"riskpipe-local-validator-key"),  # the validator's API key
    re.compile(r"://[^\s/:@'\"]+:[^\s/@'\"]+@"),  # a URI with user:password@
)
SCANNED_SUFFIXES = {".py", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".sh", ".env", ".json",
                    ".sql", ".conf", ".properties", ""}
SECRET = "secretpw"


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return [
        path for path in listed
        if not path.startswith(("tests/", "docs/")) and Path(path).suffix in SCANNED_SUFFIXES
        and (REPO / path).is_file()
    ]


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of what a file would use at run time: for Python its string literals
    except docstrings (comments and docs may show the documented defaults), else its lines."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return list(enumerate(text.splitlines(), 1))
    tree = ast.parse(text)
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_the_scan_sees_the_documented_defaults():
    """Guards the scan itself: it must find the defaults where they are allowed."""
    found = {
        path for path in ALLOWED
        if any(p.search(s) for _, s in _code_strings(REPO / path) for p in CREDENTIALS)
    }
    assert found == ALLOWED


def test_no_default_credentials_outside_the_documented_defaults():
    offenders = [
        f"{path}:{line}" for path in _project_files() if path not in ALLOWED
        for line, text in _code_strings(REPO / path)
        if any(p.search(text) for p in CREDENTIALS)
    ]
    assert offenders == []


def test_services_bind_to_localhost_by_default():
    assert stack.config.HOST == "127.0.0.1"
    assert build_parser().parse_args([]).host == "127.0.0.1"
    wildcard = [
        f"{path}:{line}" for path in _project_files()
        if path.startswith(("stack/", "validator/", "pipeline/", "simulator/"))
        and path.endswith(".py")
        for line, text in _code_strings(REPO / path) if text in ("0.0.0.0", "::")
    ]
    assert wildcard == []


@pytest.mark.parametrize("dsn", [
    f"postgresql://u:{SECRET}@127.0.0.1:1/x",
    f"postgres://user:{SECRET}@db.example:5432/riskpipe?sslmode=require",
    f"host=127.0.0.1 port=1 user=u password={SECRET} dbname=x",
    f"postgresql://u@127.0.0.1:1/x?password={SECRET}",
])
def test_redact_hides_the_password(dsn):
    assert SECRET not in _redact(dsn)


@pytest.mark.parametrize("dsn", [
    f"postgresql://u:{SECRET}@127.0.0.1:1/x",
    f"host=127.0.0.1 port=1 user=u password={SECRET} dbname=x",
])
def test_a_bad_dsn_run_does_not_print_the_password(dsn):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.main", f"--postgres_dsn={dsn}"], check=False, cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "127.0.0.1" in proc.stderr + proc.stdout  # it did report the failure
    assert SECRET not in proc.stdout + proc.stderr
