"""Fixtures of the validator tests: the shipped rules, request factories, clients, a server."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import yaml

# Starlette 1.x warns that its TestClient wants `httpx2`; the httpx one works the same.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from fastapi.testclient import TestClient

from validator.app import create_app
from validator.config import DEFAULT_CONFIG_PATH, ModelConfig, load_config, parse_config
from validator.model import FraudModel
from validator.process import ValidatorProcess
from validator.schemas import ValidationRequest

API_KEY = "test-key-123"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def config() -> ModelConfig:
    """The shipped rules.yaml."""
    return load_config()


@pytest.fixture(scope="session")
def raw_config() -> dict:
    """The shipped rules.yaml as a plain mapping (copy it before changing it)."""
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


@pytest.fixture
def config_with(raw_config) -> Callable[..., ModelConfig]:
    """Factory: the shipped config with some rules' settings replaced."""

    def make(threshold: float | None = None, **rules: dict) -> ModelConfig:
        data = copy.deepcopy(raw_config)
        if threshold is not None:
            data["threshold"] = threshold
        for name, settings in rules.items():
            data["rules"][name] = {**data["rules"].get(name, {}), **settings}
        return parse_config(data)

    return make


@pytest.fixture(scope="session")
def model(config) -> FraudModel:
    return FraudModel(config)


def base_payload(**overrides: Any) -> dict:
    """A harmless PoC-style request: nothing in it fires a rule."""
    payload = {
        "transaction_id": "t-1",
        "sender_bank_account": "DE001",
        "receiver_details": {"name": "Bo Receiver", "bank": "Bank B", "bank_account": "FR002"},
        "sender_bank": "Bank A",
        "amount": 123.45,
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def make_request() -> Callable[..., ValidationRequest]:
    """Factory: a validated request from :func:`base_payload` with overrides."""
    return lambda **overrides: ValidationRequest.model_validate(base_payload(**overrides))


@pytest.fixture
def client(config) -> TestClient:
    """In-process app without an API key."""
    return TestClient(create_app(config))


@pytest.fixture
def keyed_client(config) -> TestClient:
    """In-process app that requires API_KEY."""
    return TestClient(create_app(config, api_key=API_KEY, max_batch_size=10))


@pytest.fixture(scope="session")
def server() -> ValidatorProcess:
    """A real `python -m validator` on a free port, requiring API_KEY, batches up to 50."""
    with ValidatorProcess(api_key=API_KEY, extra_args=["--max-batch-size", "50"]) as process:
        yield process


@pytest.fixture
def make_payload() -> Callable[..., dict]:
    """Factory: a JSON request body from :func:`base_payload` with overrides."""
    return base_payload


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    """Headers carrying the API key of `keyed_client` and `server`."""
    return {"X-API-Key": API_KEY}
