"""Client of the fraud validator service (``python -m validator``), without Beam.

The pipeline's validation step builds one request per suspicious transaction and sends
them in batches::

    client = ValidatorClient("http://127.0.0.1:8000", api_key=key)
    payloads = [build_validation_request(t, receiver=acct) for t, acct in pending]
    results = client.validate_batch(payloads)   # one ValidationResult per payload, in order

Contract with the caller: :meth:`ValidatorClient.validate_batch` makes one HTTP attempt per
chunk and either returns exactly one well-formed result per request, in order, or raises:

- :class:`ValidatorUnavailable` (no answer, a timeout, 5xx, 408, 429, or an answer that is not
  a valid result): nothing is wrong with the request; the caller keeps the transactions and
  tries again later. The client never retries by itself: the caller owns the one retry
  mechanism (the validation step keeps transactions in state and retries on a timer).
- :class:`ValidatorRejected` (any other 4xx: bad key, invalid payload, body too large): asking
  again will not help; the caller decides those transactions by its own policy.

It never returns defaults or a partial list. Validation is deterministic on the server, so
asking twice is harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, Self

import requests
from requests.adapters import HTTPAdapter

from pipeline.errors import RiskpipeError
from pipeline.records import Account, AttributedTransaction

logger = logging.getLogger(__name__)

__all__ = [
    "ValidationResult",
    "ValidatorClient",
    "ValidatorError",
    "ValidatorProtocolError",
    "ValidatorRejected",
    "ValidatorUnavailable",
    "build_validation_request",
]

# 4xx statuses that mean "busy", not "wrong request": the server timed out or sheds load.
RETRYABLE_4XX = frozenset({408, 429})
# The server's default /validate/batch limit; larger batches are sent in chunks.
DEFAULT_MAX_BATCH_SIZE = 1000
# How much of the validator's error message a ValidatorRejected keeps.
MAX_MESSAGE_CHARS = 200


class ValidatorError(RiskpipeError):
    """Base class of the validator client's errors."""


class ValidatorUnavailable(ValidatorError):
    """No trustworthy answer from the validator; keep the transactions and retry later."""


class ValidatorProtocolError(ValidatorUnavailable):
    """The validator answered, but with something that is not a valid batch result."""


class ValidatorRejected(ValidatorError):
    """The validator refused the request (a 4xx other than 408/429): retrying will not help.

    >>> str(ValidatorRejected(401, "missing or invalid X-API-Key header"))
    'validator rejected the request (HTTP 401: missing or invalid X-API-Key header)'
    """

    def __init__(self, status_code: int, message: str):
        self.status_code = status_code
        self.message = message[:MAX_MESSAGE_CHARS]
        super().__init__(
            f"validator rejected the request (HTTP {status_code}: {self.message})"
        )

    @property
    def rejects_the_caller(self) -> bool:
        """401/403: the caller's key is refused, whatever the request carries."""
        return self.status_code in (401, 403)


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
    """Sends validation batches over a pooled keep-alive session, one attempt per call.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` when set.
        timeout_s: connect and read timeout of one HTTP attempt.
        max_batch_size: larger batches are sent in chunks of this size.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        if timeout_s <= 0 or max_batch_size < 1:
            raise ValueError(
                "ValidatorClient: need timeout_s > 0 and max_batch_size >= 1; "
                f"got {timeout_s}, {max_batch_size}"
            )
        self.url = base_url.rstrip("/") + "/validate/batch"
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self.session = requests.Session()
        # One attempt: urllib3 must not retry behind the caller's back.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Content-Type"] = "application/json"
        if api_key:
            self.session.headers["X-API-Key"] = api_key

    def validate_batch(self, requests_: Sequence[Mapping[str, Any]]) -> list[ValidationResult]:
        """One result per request, in order; raises :class:`ValidatorError` otherwise."""
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
        body = json.dumps({"transactions": list(chunk)}, default=_json_default).encode()
        try:
            response = self.session.post(self.url, data=body, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ValidatorUnavailable(
                f"validator {self.url} did not answer: {type(exc).__name__}: {exc}"
            ) from None
        status = response.status_code
        if status >= 500 or status in RETRYABLE_4XX:
            raise ValidatorUnavailable(f"validator {self.url} answered HTTP {status}")
        if 400 <= status < 500:
            raise ValidatorRejected(status, _error_message(response))
        return _parse_results(response, chunk)


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
