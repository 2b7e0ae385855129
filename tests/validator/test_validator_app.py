"""HTTP tests of every endpoint, in process through FastAPI's TestClient."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from validator.app import create_app
from validator.guard import RequestGuard


def test_poc_request_with_receiver_as_json_string(client, make_payload):
    receiver = {"name": "Bo", "bank": "Bank B", "bank_account": "FR2"}
    response = client.post("/validate", json=make_payload(receiver_details=json.dumps(receiver)))
    assert response.status_code == 200
    assert response.json() == {
        "is_fraudulent_transaction": False,
        "score": 0.0,
        "reasons": [],
        "transaction_id": "t-1",
    }
    as_object = client.post("/validate", json=make_payload(receiver_details=receiver))
    assert as_object.json() == response.json()


def test_fraudulent_verdict_with_reasons(client, make_payload):
    body = make_payload(amount=25_000, sender_bank="Offshore Trust Ltd", receiver_details=None)
    result = client.post("/validate", json=body).json()
    assert result["is_fraudulent_transaction"] is True
    assert result["score"] == 1.0
    assert result["reasons"] == [
        "large_amount",
        "round_amount",
        "watched_sender_bank",
        "receiver_missing",
    ]


def test_optional_pipeline_fields_are_used(client, make_payload):
    body = make_payload(
        currency="USD",
        transaction_type="transfer",
        risk_score=100,
        account_created_at="2026-03-01T00:00:00Z",
        datetime_occurred="2026-03-02T10:00:00Z",
    )
    result = client.post("/validate", json=body).json()
    assert result["reasons"] == ["pipeline_risk", "new_account"]
    assert result["score"] == 0.55 and result["is_fraudulent_transaction"]


def test_numeric_transaction_id_is_echoed_as_is(client, make_payload):
    assert (
        client.post("/validate", json=make_payload(transaction_id=42)).json()["transaction_id"]
        == 42
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"receiver_details": "{not json"}, "receiver_details"),
        ({"receiver_details": "[1, 2]"}, "receiver_details"),
        ({"amount": "a lot"}, "amount"),
        ({"amount": None}, "amount"),
        ({"risk_score": 101}, "risk_score"),
        ({"currency": "EURO"}, "currency"),
        ({"datetime_occurred": "yesterday"}, "datetime_occurred"),
        ({"sender_bank_account": ""}, "sender_bank_account"),
    ],
)
def test_invalid_field_gives_422_naming_it(client, make_payload, overrides, field):
    response = client.post("/validate", json=make_payload(**overrides))
    assert response.status_code == 422
    body = response.json()
    assert body["message"].startswith(f"invalid request: {field}")
    assert body["detail"][0]["field"] == field


@pytest.mark.parametrize("missing", ["transaction_id", "sender_bank_account", "amount"])
def test_missing_required_field_is_named(client, make_payload, missing):
    body = make_payload()
    del body[missing]
    response = client.post("/validate", json=body)
    assert response.status_code == 422
    assert f"{missing}: Field required" in response.json()["message"]


def test_body_that_is_not_json(client):
    response = client.post(
        "/validate", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["message"].startswith("invalid request: body: JSON decode error")


def test_batch_answers_in_order(client, make_payload):
    items = [
        make_payload(transaction_id=f"t{i}", amount=1000.5 + 10_000 * (i % 2)) for i in range(5)
    ]
    response = client.post("/validate/batch", json={"transactions": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["transaction_id"] for r in results] == ["t0", "t1", "t2", "t3", "t4"]
    assert [r["reasons"] for r in results] == [[], ["large_amount"], [], ["large_amount"], []]


def test_empty_batch(client):
    assert client.post("/validate/batch", json={"transactions": []}).json() == {"results": []}


def test_batch_item_error_names_its_index(client, make_payload):
    items = [make_payload(), make_payload(amount="x"), make_payload(receiver_details="{")]
    response = client.post("/validate/batch", json={"transactions": items})
    assert response.status_code == 422
    message = response.json()["message"]
    assert "transactions[1].amount" in message and "transactions[2].receiver_details" in message


def test_batch_without_transactions_key(client):
    response = client.post("/validate/batch", json={"items": []})
    assert response.status_code == 422
    assert "transactions: Field required" in response.json()["message"]


def test_batch_over_the_limit_is_413(keyed_client, make_payload, auth):
    ok = keyed_client.post(
        "/validate/batch", json={"transactions": [make_payload()] * 10}, headers=auth
    )
    assert ok.status_code == 200
    response = keyed_client.post(
        "/validate/batch", json={"transactions": [make_payload()] * 11}, headers=auth
    )
    assert response.status_code == 413
    assert response.json()["message"] == (
        "transactions: batch of 11 exceeds the limit of 10; split it into smaller batches"
    )


@pytest.mark.parametrize("path", ["/validate", "/validate/batch"])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_api_key_required_when_configured(keyed_client, make_payload, auth, path, headers):
    body = make_payload() if path == "/validate" else {"transactions": [make_payload()]}
    response = keyed_client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["message"]
    assert keyed_client.post(path, json=body, headers=auth).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json", "/metrics"])
def test_open_endpoints_need_no_key(keyed_client, path):
    assert keyed_client.get(path).status_code == 200


def test_health(keyed_client):
    assert keyed_client.get("/health").json() == {
        "status": "ok",
        "rules_version": 1,
        "threshold": 0.5,
        "max_batch_size": 10,
        "max_body_bytes": 2 * 1024 * 1024,
        "api_key_required": True,
    }


def test_docs_and_openapi_describe_the_api(client):
    assert "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/validate", "/validate/batch", "/health"} <= set(spec["paths"])
    request_schema = spec["components"]["schemas"]["ValidationRequest"]
    assert set(request_schema["required"]) == {"transaction_id", "sender_bank_account", "amount"}
    assert "413" in spec["paths"]["/validate/batch"]["post"]["responses"]


def test_metrics_count_requests_verdicts_and_latency(keyed_client, make_payload, auth):
    keyed_client.post("/validate", json=make_payload(), headers=auth)
    keyed_client.post("/validate", json=make_payload(amount="x"), headers=auth)
    keyed_client.post("/validate", json=make_payload())
    fraud = make_payload(amount=90_000, sender_bank="Offshore Trust Ltd")
    keyed_client.post(
        "/validate/batch", json={"transactions": [fraud, make_payload()]}, headers=auth
    )
    text = keyed_client.get("/metrics").text
    for line in [
        'riskpipe_validator_requests_total{endpoint="/validate",outcome="ok"} 1.0',
        'riskpipe_validator_requests_total{endpoint="/validate",outcome="invalid"} 1.0',
        'riskpipe_validator_requests_total{endpoint="/validate",outcome="unauthorized"} 1.0',
        'riskpipe_validator_requests_total{endpoint="/validate/batch",outcome="ok"} 1.0',
        'riskpipe_validator_validations_total{verdict="fraudulent"} 1.0',
        'riskpipe_validator_validations_total{verdict="legitimate"} 2.0',
        'riskpipe_validator_request_duration_seconds_count{endpoint="/validate"} 3.0',
        "riskpipe_validator_batch_size_sum 2.0",
    ]:
        assert line in text, line
    assert 'endpoint="/health"' not in text


def test_key_is_checked_before_the_body_is_parsed(keyed_client):
    """Without the key, a body that is not even JSON gets 401, not a parse error (422)."""
    for path in ("/validate", "/validate/batch"):
        response = keyed_client.post(
            path, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401, path
        assert response.headers["connection"] == "close"


@pytest.fixture
def small_limit_client(config) -> TestClient:
    """Requires API_KEY; bodies of at most 300 bytes."""
    return TestClient(create_app(config, api_key="k", max_body_bytes=300))


def test_declared_body_over_the_limit_is_413_before_it_is_parsed(small_limit_client, make_payload):
    key = {"X-API-Key": "k", "Content-Type": "application/json"}
    body = json.dumps(make_payload()).encode()
    assert len(body) <= 300
    assert small_limit_client.post("/validate", content=body, headers=key).status_code == 200
    too_big = b"x" * 301  # not JSON either: a 413, not a 422, shows it was never parsed
    response = small_limit_client.post("/validate/batch", content=too_big, headers=key)
    assert response.status_code == 413
    assert response.json()["message"] == (
        "request body of 301 bytes exceeds the limit of 300 bytes; send smaller batches"
    )


def test_chunked_body_over_the_limit_is_413(small_limit_client):
    chunks = (b"x" * 100 for _ in range(4))  # no Content-Length: sent chunked
    response = small_limit_client.post("/validate/batch", content=chunks, headers={"X-API-Key": "k"})
    assert response.status_code == 413
    assert response.json()["message"] == (
        "request body exceeds the limit of 300 bytes; send smaller batches"
    )


def test_the_limit_leaves_other_paths_alone(small_limit_client):
    assert small_limit_client.get("/health").json()["max_body_bytes"] == 300
    assert small_limit_client.get("/metrics").status_code == 200


def test_refusals_are_counted(small_limit_client):
    small_limit_client.post("/validate", content=b"x" * 301, headers={"X-API-Key": "k"})
    small_limit_client.post("/validate", content=b"{}")
    text = small_limit_client.get("/metrics").text
    assert 'riskpipe_validator_requests_total{endpoint="/validate",outcome="too_large"} 1.0' in text
    assert (
        'riskpipe_validator_requests_total{endpoint="/validate",outcome="unauthorized"} 1.0' in text
    )


def test_bad_limits_are_rejected(config):
    with pytest.raises(ValueError, match="max_body_bytes must be >= 1, got 0"):
        create_app(config, max_body_bytes=0)
    with pytest.raises(ValueError, match="max_body_bytes must be >= 1, got -5"):
        RequestGuard(app=None, paths=frozenset(), api_key=None, max_body_bytes=-5)
