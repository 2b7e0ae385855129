"""Tests against a real `python -m validator` process (uvicorn) on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
