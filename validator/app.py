"""The validator's HTTP API (FastAPI), built by :func:`create_app`.

Endpoints: ``POST /validate`` (one transaction, the old PoC's contract),
``POST /validate/batch`` (many, in order), ``GET /health``, ``GET /metrics``
(Prometheus) and the OpenAPI docs at ``/docs``. When an API key is configured, the two
validation endpoints need it in the ``X-API-Key`` header; health, metrics and docs
stay open so that probes, scrapers and people can reach them. The key and the body size
(``max_body_bytes``) are checked by :class:`validator.guard.RequestGuard` before the body
is read, so a caller without the key cannot make the service read or parse anything.

>>> from fastapi.testclient import TestClient
>>> from validator.config import load_config
>>> client = TestClient(create_app(load_config()))
>>> client.get("/health").json()["status"]
'ok'
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_core import to_json
from starlette.exceptions import HTTPException

from validator.config import ModelConfig, load_config
from validator.guard import API_KEY_HEADER, DEFAULT_MAX_BODY_BYTES, RequestGuard
from validator.metrics import MetricsMiddleware, ValidatorMetrics
from validator.model import FraudModel, Verdict
from validator.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ValidationRequest,
    ValidationResponse,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_BODY_BYTES", "create_app", "create_app_from_env"]

DEFAULT_MAX_BATCH_SIZE = 1000
VALIDATION_PATHS = frozenset({"/validate", "/validate/batch"})
# Past this many field errors the 422 message says "and N more" (the detail has all).
_MAX_ERRORS_IN_MESSAGE = 5
_ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
    413: {"model": ErrorResponse, "description": "Request body larger than the limit."},
    422: {"model": ErrorResponse, "description": "Invalid request; the message names the field."},
}


def _field_path(loc: tuple) -> str:
    """('body', 'transactions', 3, 'amount') -> 'transactions[3].amount'."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _describe(error: dict) -> dict:
    loc = tuple(error["loc"])
    if error["type"] == "json_invalid":
        field = "body"  # loc is ("body", <character position>)
    else:
        field = _field_path(loc)
    msg = error["msg"].removeprefix("Value error, ")
    return {"loc": list(loc), "field": field, "msg": msg, "type": error["type"]}


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_describe(e) for e in exc.errors()]
    shown = "; ".join(f"{e['field']}: {e['msg']}" for e in errors[:_MAX_ERRORS_IN_MESSAGE])
    if len(errors) > _MAX_ERRORS_IN_MESSAGE:
        shown += f"; and {len(errors) - _MAX_ERRORS_IN_MESSAGE} more"
    return JSONResponse({"message": f"invalid request: {shown}", "detail": errors}, status_code=422)


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(
        {"message": str(exc.detail), "detail": exc.detail},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _result(request: ValidationRequest, verdict: Verdict) -> dict:
    return {
        "is_fraudulent_transaction": verdict.is_fraudulent,
        "score": verdict.score,
        "reasons": list(verdict.reasons),
        "transaction_id": request.transaction_id,
    }


def _documents_the_key() -> list:
    """Declares ``X-API-Key`` in the OpenAPI schema (``/docs`` can send it); RequestGuard checks it."""
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Validator API key")
    return [Security(header)]


def create_app(
    config: ModelConfig,
    api_key: str | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Builds the validator app around one rules configuration.

    Args:
        config: the checked rules (see :func:`validator.config.load_config`).
        api_key: when set, required in the ``X-API-Key`` header of validation calls.
        max_batch_size: the most transactions one ``/validate/batch`` call may carry.
        max_body_bytes: the largest request body of a validation call (else 413).
    """
    if max_batch_size < 1:
        raise ValueError(f"create_app: max_batch_size must be >= 1, got {max_batch_size}")
    if max_body_bytes < 1:
        raise ValueError(f"create_app: max_body_bytes must be >= 1, got {max_body_bytes}")
    model = FraudModel(config)
    metrics = ValidatorMetrics()
    app = FastAPI(
        title="riskpipe fraud validator",
        version="1.0.0",
        description="Deterministic, explainable fraud rules (see validator/README.md).",
    )
    app.state.model = model
    app.state.metrics = metrics
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # The last added runs first: metrics see every answer, the guard's 401/413 included.
    app.add_middleware(
        RequestGuard, paths=VALIDATION_PATHS, api_key=api_key, max_body_bytes=max_body_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=VALIDATION_PATHS)
    guarded = _documents_the_key()

    @app.post(
        "/validate",
        response_model=ValidationResponse,
        dependencies=guarded,
        responses=_ERRORS,
        summary="Validate one transaction",
    )
    async def validate(body: ValidationRequest) -> Response:
        verdict = model.evaluate(body)
        metrics.count_verdicts(int(verdict.is_fraudulent), 1)
        return Response(to_json(_result(body, verdict)), media_type="application/json")

    @app.post(
        "/validate/batch",
        response_model=BatchResponse,
        dependencies=guarded,
        responses={
            **_ERRORS,
            413: {
                "model": ErrorResponse,
                "description": f"More than {max_batch_size} items, or a body over "
                f"{max_body_bytes} bytes.",
            },
        },
        summary=f"Validate up to {max_batch_size} transactions, answered in order",
    )
    async def validate_batch(body: BatchRequest) -> Response:
        items = body.transactions
        if len(items) > max_batch_size:
            raise HTTPException(
                413,
                f"transactions: batch of {len(items)} exceeds the limit of "
                f"{max_batch_size}; split it into smaller batches",
            )
        evaluate = model.evaluate
        results = [_result(item, evaluate(item)) for item in items]
        fraudulent = sum(1 for r in results if r["is_fraudulent_transaction"])
        metrics.count_verdicts(fraudulent, len(results))
        metrics.batch_size.observe(len(results))
        return Response(to_json({"results": results}), media_type="application/json")

    @app.get("/health", summary="Liveness and the rules in use")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "rules_version": config.version,
            "threshold": config.threshold,
            "max_batch_size": max_batch_size,
            "max_body_bytes": max_body_bytes,
            "api_key_required": api_key is not None,
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / multi-worker runs.

    Reads ``RISKPIPE_VALIDATOR_CONFIG`` (rules file; the shipped one when unset),
    ``RISKPIPE_VALIDATOR_API_KEY``, ``RISKPIPE_VALIDATOR_MAX_BATCH`` and
    ``RISKPIPE_VALIDATOR_MAX_BODY_BYTES``.
    """
    return create_app(
        load_config(os.environ.get("RISKPIPE_VALIDATOR_CONFIG") or None),
        api_key=os.environ.get("RISKPIPE_VALIDATOR_API_KEY") or None,
        max_batch_size=int(os.environ.get("RISKPIPE_VALIDATOR_MAX_BATCH", DEFAULT_MAX_BATCH_SIZE)),
        max_body_bytes=int(
            os.environ.get("RISKPIPE_VALIDATOR_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        ),
    )
