"""The validation step's rules, without Beam: the retry schedule and the rejection policy.

While the validator is unavailable (no answer, a timeout, 5xx, 408, 429, a garbled answer)
transactions wait and are retried with a capped exponential backoff, :func:`retry_delay_s`.

When the validator *rejects* a request (any other 4xx: a wrong key, an invalid payload, a body
too large), asking again will not help and waiting would block the transactions forever. The
policy decides each affected transaction as not fraudulent (unless the fraud model alerted on
it), decided by nobody, and flagged for a human: :func:`decide_rejected` keeps the row,
:func:`rejection_dead_letter` reports it on the dead-letter topic with the validator's message.

>>> from datetime import UTC, datetime
>>> from pipeline.records import AttributedTransaction, Transaction
>>> tx = Transaction("t1", "a1", "a2", "transfer", 99.0, "EUR", "completed",
...                  datetime(2026, 1, 2, tzinfo=UTC), "Bank A", "unidentified")
>>> row = decide_rejected(AttributedTransaction(tx, "Ann", 40, ("amount_high (+20)",)),
...                       "validator rejected the request (HTTP 401: missing key)")
>>> row.is_fraudulent, row.validated_by, row.risk_reasons[0]
(False, 'none', 'amount_high (+20)')
>>> row.risk_reasons[1]
'review: validator rejected the request (HTTP 401: missing key)'
"""

from __future__ import annotations

import dataclasses
import json

from pipeline.records import AttributedTransaction, DeadLetter

__all__ = [
    "INITIAL_BACKOFF_S",
    "MAX_BACKOFF_S",
    "REVIEW_PREFIX",
    "decide_rejected",
    "rejection_dead_letter",
    "retry_delay_s",
]

# Delay before the first retry while the validator is unavailable; doubles per failed attempt.
INITIAL_BACKOFF_S = 0.5
# Cap of that delay: a validator that comes back is asked again within this long.
MAX_BACKOFF_S = 30.0
# Starts the reason a rejected transaction carries in ``risk_reasons``: someone must look at it.
REVIEW_PREFIX = "review: "


def retry_delay_s(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th consecutive failure (1 = the first).

    >>> [retry_delay_s(n) for n in (1, 2, 3, 7, 8, 50)]
    [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    """
    if attempt < 1:
        raise ValueError(f"retry_delay_s: attempt must be >= 1, got {attempt}")
    return min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2 ** min(attempt - 1, 32))


def decide_rejected(record: AttributedTransaction, reason: str) -> AttributedTransaction:
    """The row of a transaction the validator refused to judge: fraudulent only if the fraud
    model alerted on it (``is_fraudulent`` as it came), decided by nobody
    (``validated_by="none"``), with ``"review: <reason>"`` added to its reasons."""
    return dataclasses.replace(
        record,
        validated_by="none",
        risk_reasons=(*record.risk_reasons, REVIEW_PREFIX + reason),
    )


def rejection_dead_letter(record: AttributedTransaction, reason: str, step: str) -> DeadLetter:
    """The dead letter of a refused transaction: the transaction as the step received it (its
    JSON form), the validator's answer as the reason, and the step.

    >>> from datetime import UTC, datetime
    >>> from pipeline.records import Transaction
    >>> tx = Transaction("t1", "a1", None, "payment", 5.0, "EUR", "completed",
    ...                  datetime(2026, 1, 2, tzinfo=UTC), None, "unidentified")
    >>> letter = rejection_dead_letter(AttributedTransaction(tx, "Ann", 0), "HTTP 422", "Validate")
    >>> letter.reason, letter.step, json.loads(letter.payload)["transaction_id"]
    ('HTTP 422', 'Validate', 't1')
    """
    payload = json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True)
    return DeadLetter(payload=payload.encode("utf-8"), reason=reason, step=step)
