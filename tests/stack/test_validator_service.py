"""The fraud validator as a local-stack service."""

from __future__ import annotations

import json
import urllib.request


def test_health(validator_url):
    with urllib.request.urlopen(f"{validator_url}/health", timeout=5) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body.get("status") == "ok"


def test_metrics_for_prometheus(validator_url):
    with urllib.request.urlopen(f"{validator_url}/metrics", timeout=5) as response:
        assert response.status == 200
