"""Client of the fraud validator service (``python -m validator``), without Beam.

The pipeline's validation step builds one request per suspicious transaction and sends
them in batches::

    client = ValidatorClient("http://127.0.0.1:8000", api_key=key,
                             breaker=CircuitBreaker(failure_threshold=5, reset_timeout_s=30))
    payloads = [build_validation_request(t, receiver=acct) for t, acct in pending]
    results = client.validate_batch(payloads)   # one ValidationResult per payload, in order

Contract with the caller: :meth:`ValidatorClient.validate_batch` either returns exactly
one well-formed result per request, in order, or raises :class:`ValidatorUnavailable`
(or a subclass). It never returns defaults or a partial list. On an error the caller
keeps the transactions and tries again later; it never drops them or marks them
cleared. Validation is deterministic on the server, so asking twice is harmless.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, Self

import requests
from requests.adapters import HTTPAdapter

from pipeline.errors import RiskpipeError
from pipeline.io.breaker import CircuitBreaker
from pipeline.records import Account, AttributedTransaction

logger = logging.getLogger(__name__)

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "ValidationResult",
    "ValidatorClient",
    "ValidatorProtocolError",
    "ValidatorRejected",
    "ValidatorUnavailable",
    "build_validation_request",
]

# Statuses worth another attempt besides every 5xx: the server timed out or sheds load.
RETRYABLE_4XX = frozenset({408, 429})
# The server's default /validate/batch limit; larger batches are sent in chunks.
DEFAULT_MAX_BATCH_SIZE = 1000


class ValidatorUnavailable(RiskpipeError):
    """No trustworthy answer from the validator; keep the transactions and retry later."""


class CircuitOpen(ValidatorUnavailable):
    """The breaker is open: recent calls failed, so this one was not even attempted."""


class ValidatorProtocolError(ValidatorUnavailable):
    """The validator answered, but with something that is not a valid batch result."""


class ValidatorRejected(ValidatorUnavailable):
    """The validator refused the request (4xx: bad key, bad payload, batch too large)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"validator rejected the request with HTTP {status_code}: {message}")
        self.status_code = status_code


class ValidationResult(NamedTuple):
    """The validator's verdict on one transaction."""

    transaction_id: Any
    is_fraudulent: bool
    score: float
    reasons: tuple[str, ...]


def _json_default(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} to the validator: {value!r}")


class ValidatorClient:
    """Sends validation batches over a pooled keep-alive session, with retries and a breaker.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` when set.
        timeout_s: connect and read timeout of one HTTP attempt.
        max_retries: extra attempts after a connection error, timeout or retryable status.
        backoff_s: first delay between attempts; doubles each time (with jitter).
        breaker: shared :class:`CircuitBreaker`; a fresh default one when None.
        max_backoff_s: cap of one delay.
        max_batch_size: larger batches are sent in chunks of this size.
        sleep, rng: injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
        max_backoff_s: float = 10.0,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_batch_size < 1:
            raise ValueError(
                "ValidatorClient: need timeout_s > 0, max_retries >= 0, backoff_s >= 0, "
                f"max_batch_size >= 1; got {timeout_s}, {max_retries}, {backoff_s}, {max_batch_size}"
            )
        self.url = base_url.rstrip("/") + "/validate/batch"
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_batch_size = max_batch_size
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.session = requests.Session()
        # Our own retry loop decides; urllib3 must not retry behind our back.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Content-Type"] = "application/json"
        if api_key:
            self.session.headers["X-API-Key"] = api_key

    def validate_batch(self, requests_: Sequence[Mapping[str, Any]]) -> list[ValidationResult]:
        """One result per request, in order; raises :class:`ValidatorUnavailable` otherwise."""
        results: list[ValidationResult] = []
        for start in range(0, len(requests_), self.max_batch_size):
            results.extend(self._validate_chunk(requests_[start : start + self.max_batch_size]))
        return results

    def close(self) -> None:
        """Closes the pooled connections."""
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _validate_chunk(self, chunk: Sequence[Mapping[str, Any]]) -> list[ValidationResult]:
        if not self.breaker.allow():
            raise CircuitOpen(
                f"validator circuit open after repeated failures; next try in "
                f"{self.breaker.retry_after_s():.1f}s ({self.url})"
            )
        body = json.dumps({"transactions": list(chunk)}, default=_json_default).encode()
        try:
            response = self._post_with_retries(body)
            if 400 <= response.status_code < 500:
                raise ValidatorRejected(response.status_code, _error_message(response))
            results = _parse_results(response, chunk)
        except ValidatorRejected:
            self.breaker.record_success()  # the service is up; the request is what is wrong
            raise
        except ValidatorUnavailable:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return results

    def _post_with_retries(self, body: bytes) -> requests.Response:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                response = self.session.post(self.url, data=body, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
                    return response
                problem = f"HTTP {response.status_code}"
            if attempt + 1 < attempts:
                delay = self._backoff(attempt)
                logger.warning(
                    "validator attempt %d/%d failed (%s); retrying in %.2fs",
                    attempt + 1,
                    attempts,
                    problem,
                    delay,
                )
                self._sleep(delay)
        raise ValidatorUnavailable(
            f"validator {self.url} failed {attempts} attempt(s); last: {problem}"
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step."""
        step = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return step / 2 + self._rng.uniform(0, step / 2)


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
        return str(payload.get("message") or payload.get("detail"))
    except (ValueError, AttributeError):
        return response.text[:200]


def _parse_results(
    response: requests.Response, chunk: Sequence[Mapping[str, Any]]
) -> list[ValidationResult]:
    """Checks the shape of a batch answer item by item; any surprise is a protocol error."""
    if response.status_code != 200:
        raise ValidatorProtocolError(f"unexpected HTTP {response.status_code} from the validator")
    try:
        items = response.json()["results"]
    except (ValueError, KeyError, TypeError):
        raise ValidatorProtocolError(
            f"validator answer is not a results object: {response.text[:200]!r}"
        ) from None
    if not isinstance(items, list) or len(items) != len(chunk):
        count = len(items) if isinstance(items, list) else type(items).__name__
        raise ValidatorProtocolError(f"asked for {len(chunk)} validations, got {count}")
    results = []
    for index, (item, sent) in enumerate(zip(items, chunk)):
        try:
            verdict, score = item["is_fraudulent_transaction"], item["score"]
            reasons, tx_id = item["reasons"], item["transaction_id"]
        except (KeyError, TypeError):
            raise ValidatorProtocolError(
                f"result {index} lacks required fields: {item!r}"
            ) from None
        well_formed = (
            isinstance(verdict, bool)
            and isinstance(score, (int, float))
            and not isinstance(score, bool)
            and isinstance(reasons, list)
            and all(isinstance(r, str) for r in reasons)
        )
        if not well_formed:
            raise ValidatorProtocolError(f"result {index} is malformed: {item!r}")
        if tx_id != sent.get("transaction_id"):
            raise ValidatorProtocolError(
                f"result {index} is for {tx_id!r}, expected {sent.get('transaction_id')!r}"
            )
        results.append(ValidationResult(tx_id, verdict, float(score), tuple(reasons)))
    return results


def build_validation_request(
    attributed: AttributedTransaction,
    receiver: Account | None = None,
    sender: Account | None = None,
) -> dict[str, Any]:
    """The validator request for one attributed transaction.

    ``sender_bank_account`` is the sender account's ``bank_account`` when known, else its
    ``account_id``; ``receiver_details`` describes the counterparty account (only its id
    when the account is unknown, None when there is no counterparty).

    >>> from pipeline.records import Transaction
    >>> tx = Transaction("t1", "a1", "a2", "transfer", 99.0, "EUR", "completed",
    ...                  datetime(2026, 1, 2), "Bank A", "unidentified")
    >>> req = build_validation_request(AttributedTransaction(tx, "Ann", 40),
    ...                                receiver=Account("a2", "Bo", bank="Bank B"))
    >>> req["sender_bank_account"], req["receiver_details"]["bank_account"]
    ('a1', 'a2')
    """
    tx = attributed.transaction
    if receiver is not None:
        receiver_details: dict | None = {
            "name": receiver.account_name,
            "bank": receiver.bank,
            "bank_account": receiver.bank_account or receiver.account_id,
            "account_id": receiver.account_id,
        }
    elif tx.counterparty_account_id:
        receiver_details = {"account_id": tx.counterparty_account_id}
    else:
        receiver_details = None
    request = {
        "transaction_id": tx.transaction_id,
        "sender_bank_account": (sender.bank_account if sender else None) or tx.account_id,
        "receiver_details": receiver_details,
        "sender_bank": tx.sender_bank or (sender.bank if sender else None),
        "amount": tx.amount,
        "currency": tx.currency,
        "transaction_type": tx.transaction_type,
        "risk_score": attributed.risk_score,
        "datetime_occurred": tx.datetime_occurred.isoformat() if tx.datetime_occurred else None,
    }
    if sender is not None and sender.created_at is not None:
        request["account_created_at"] = sender.created_at.isoformat()
    return request
