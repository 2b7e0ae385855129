"""Prometheus from the local stack: ready, and scraping Flink's reporters and the validator."""

import json
import time
import urllib.request

TIMEOUT_S = 30


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_ready(prometheus_url):
    assert _get(f"{prometheus_url}/-/ready")[0] == 200


def test_targets_include_flink_both_taskmanagers_and_validator(prometheus_url):
    expected = {
        "flink-jobmanager": "http://127.0.0.1:9249/metrics",
        "flink-taskmanager": "http://127.0.0.1:9250/metrics",
        "flink-taskmanager2": "http://127.0.0.1:9251/metrics",
        "validator": "http://127.0.0.1:8000/metrics",
    }
    targets, deadline = {}, time.monotonic() + TIMEOUT_S
    while targets != expected and time.monotonic() < deadline:
        body = json.loads(_get(f"{prometheus_url}/api/v1/targets")[1])
        targets = {
            t["labels"]["job"]: t["scrapeUrl"] for t in body["data"]["activeTargets"]
        }
        time.sleep(0.5)
    assert targets == expected
