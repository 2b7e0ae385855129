"""Tests against a real `python -m validator` process (uvicorn) on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import requests

from validator.bench import run_bench, synthetic_requests
from validator.process import REPO_ROOT, ValidatorProcess, free_port, wait_until_healthy


def test_health_and_docs_are_open(server):
    health = requests.get(server.url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["api_key_required"] is True
    docs = requests.get(server.url + "/docs", timeout=5)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_validate_needs_the_key(server, make_payload, auth):
    assert (
        requests.post(server.url + "/validate", json=make_payload(), timeout=5).status_code == 401
    )
    wrong = {"X-API-Key": "nope"}
    assert (
        requests.post(
            server.url + "/validate", json=make_payload(), headers=wrong, timeout=5
        ).status_code
        == 401
    )
    response = requests.post(server.url + "/validate", json=make_payload(), headers=auth, timeout=5)
    assert response.status_code == 200
    assert response.json()["is_fraudulent_transaction"] is False


def test_poc_string_receiver_and_bad_json_string(server, make_payload, auth):
    ok = make_payload(receiver_details=json.dumps({"name": "Bo", "bank": "B", "bank_account": "X"}))
    assert (
        requests.post(server.url + "/validate", json=ok, headers=auth, timeout=5).json()["reasons"]
        == []
    )
    bad = requests.post(
        server.url + "/validate",
        json=make_payload(receiver_details="{oops"),
        headers=auth,
        timeout=5,
    )
    assert bad.status_code == 422
    assert bad.json()["message"].startswith(
        "invalid request: receiver_details: receiver_details is not valid JSON"
    )


def test_batch_and_its_limit(server, make_payload, auth):
    with requests.Session() as session:
        session.headers.update(auth)
        items = [make_payload(transaction_id=i) for i in range(50)]
        response = session.post(
            server.url + "/validate/batch", json={"transactions": items}, timeout=5
        )
        assert [r["transaction_id"] for r in response.json()["results"]] == list(range(50))
        too_many = session.post(
            server.url + "/validate/batch", json={"transactions": items + items[:1]}, timeout=5
        )
        assert too_many.status_code == 413
        assert "batch of 51 exceeds the limit of 50" in too_many.json()["message"]


def test_metrics_endpoint(server, make_payload, auth):
    requests.post(server.url + "/validate", json=make_payload(amount=None), headers=auth, timeout=5)
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert 'riskpipe_validator_requests_total{endpoint="/validate",outcome="invalid"}' in text
    assert "riskpipe_validator_validations_total" in text
    assert "riskpipe_validator_request_duration_seconds_bucket" in text


def test_bench_runs_against_the_server(server, auth):
    figures = run_bench(server.url, 400, batch_size=50, concurrency=2, api_key=auth["X-API-Key"])
    assert figures["batches"] == 8 and figures["validations_per_s"] > 0


def test_synthetic_requests_are_deterministic():
    assert synthetic_requests(50, seed=3) == synthetic_requests(50, seed=3)


def test_several_workers_share_the_settings(make_payload):
    with ValidatorProcess(
        api_key="k2", extra_args=["--workers", "2", "--max-batch-size", "3"]
    ) as server:
        body = {"transactions": [make_payload()] * 4}
        response = requests.post(
            server.url + "/validate/batch", json=body, headers={"X-API-Key": "k2"}, timeout=5
        )
        assert response.status_code == 413
        assert (
            requests.post(server.url + "/validate", json=make_payload(), timeout=5).status_code
            == 401
        )


def test_help_documents_every_flag():
    done = subprocess.run(
        [sys.executable, "-m", "validator", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    for flag in [
        "--host",
        "--port",
        "--config",
        "--api-key",
        "--workers",
        "--max-batch-size",
        "--max-body-bytes",
        "--log-level",
    ]:
        assert flag in done.stdout
    assert "RISKPIPE_VALIDATOR_PORT" in done.stdout


def test_port_defaults_to_environment(make_payload):
    port = free_port()
    env = {**os.environ, "RISKPIPE_VALIDATOR_PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RISKPIPE_VALIDATOR_API_KEY", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "validator", "--no-access-log"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process=child)
        response = requests.post(
            f"http://127.0.0.1:{port}/validate", json=make_payload(), timeout=5
        )
        assert response.status_code == 200
    finally:
        child.terminate()
        child.wait(timeout=10)


# -- the guard, over raw sockets: what the server reads before it answers ----------------------
BODY_LIMIT = 2000
# Long enough for a server on a busy machine; a server waiting for a body never answers.
ANSWER_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def small_body_server():
    """A real server requiring API_KEY, with request bodies of at most BODY_LIMIT bytes."""
    with ValidatorProcess(api_key="k3", extra_args=["--max-body-bytes", str(BODY_LIMIT)]) as server:
        yield server


def _exchange(url: str, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Sends a raw request (headers, then ``body``, which may be incomplete) and reads the
    answer to the end; a server that waited for the rest of the body would time out here."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    headers = dict(
        line.decode().lower().split(": ", 1) for line in header_block.split(b"\r\n") if line
    )
    return int(status_line.split()[1]), headers, payload


def _head(path: str, *lines: str) -> str:
    """Request line and headers, ending with the blank line."""
    return "\n".join([f"POST {path} HTTP/1.1", "Host: validator", *lines]) + "\n\n"


def test_without_the_key_a_huge_declared_body_is_never_read(small_body_server):
    head = _head("/validate/batch", "Content-Type: application/json", "Content-Length: 50000000")
    status, headers, payload = _exchange(small_body_server.url, head)  # no body byte sent
    assert status == 401
    assert headers["connection"] == "close"
    assert json.loads(payload)["message"] == "missing or invalid X-API-Key header"


def test_a_declared_body_over_the_limit_is_refused_unread(small_body_server):
    head = _head(
        "/validate", "X-API-Key: k3", "Content-Type: application/json",
        f"Content-Length: {BODY_LIMIT + 1}",
    )
    status, _, payload = _exchange(small_body_server.url, head, b"{")  # 1 of 2001 bytes
    assert status == 413
    assert json.loads(payload)["message"] == (
        f"request body of {BODY_LIMIT + 1} bytes exceeds the limit of {BODY_LIMIT} bytes; "
        "send smaller batches"
    )


def test_a_chunked_body_is_cut_off_at_the_limit(small_body_server):
    head = _head(
        "/validate/batch", "X-API-Key: k3", "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    chunk = b"x" * 900
    # Three chunks (2700 bytes) and no terminating chunk: only a cut-off answers at all.
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
    status, _, payload = _exchange(small_body_server.url, head, body)
    assert status == 413
    assert json.loads(payload)["message"] == (
        f"request body exceeds the limit of {BODY_LIMIT} bytes; send smaller batches"
    )


def test_a_chunked_body_within_the_limit_is_validated(small_body_server, make_payload):
    head = _head(
        "/validate", "X-API-Key: k3", "Content-Type: application/json",
        "Transfer-Encoding: chunked", "Connection: close",
    )
    data = json.dumps(make_payload()).encode()
    halves = (data[: len(data) // 2], data[len(data) // 2 :])
    body = b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n"
    status, _, payload = _exchange(small_body_server.url, head, body)
    assert status == 200
    assert json.loads(payload)["transaction_id"] == "t-1"


def test_body_limit_from_the_environment(make_payload):
    port = free_port()
    env = {
        **os.environ, "RISKPIPE_VALIDATOR_PORT": str(port), "PYTHONPATH": str(REPO_ROOT),
        "RISKPIPE_VALIDATOR_MAX_BODY_BYTES": "123",
    }
    env.pop("RISKPIPE_VALIDATOR_API_KEY", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "validator", "--no-access-log"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process=child)
        assert requests.get(url + "/health", timeout=5).json()["max_body_bytes"] == 123
        too_big = requests.post(url + "/validate", json=make_payload(sender_bank="B" * 200), timeout=5)
        assert too_big.status_code == 413
    finally:
        child.terminate()
        child.wait(timeout=10)


def test_a_bad_body_limit_stops_the_server_at_once():
    done = subprocess.run(
        [sys.executable, "-m", "validator", "--max-body-bytes", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "--max-body-bytes must be >= 1" in done.stderr
