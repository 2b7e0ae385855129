"""The validator's request and response bodies (pydantic v2 models).

The request is the old PoC's ``{transaction_id, sender_bank_account, receiver_details,
sender_bank, amount}``; every other field is optional, so a PoC client still works, and
the pipeline sends them to sharpen the decision. ``receiver_details`` may be an object or
that object as a JSON string (the PoC sent a string).

>>> r = ValidationRequest.model_validate({"transaction_id": "t1", "sender_bank_account": "A1",
...     "receiver_details": '{"name": "Bo", "bank": "B", "bank_account": "R1"}',
...     "sender_bank": "Bank A", "amount": 10})
>>> r.receiver_details.bank_account
'R1'
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "ErrorResponse",
    "ReceiverDetails",
    "ValidationRequest",
    "ValidationResponse",
]

_INPUT = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True, extra="ignore")


class ReceiverDetails(BaseModel):
    """Who receives the money, as far as the sender's bank knows."""

    model_config = _INPUT

    name: str | None = Field(None, description="Receiver's name.")
    bank: str | None = Field(None, description="Receiver's bank.")
    bank_account: str | None = Field(
        None,
        validation_alias=AliasChoices("bank_account", "account_number", "iban", "account"),
        description="Receiver's bank account (also read from account_number, iban, account).",
    )
    account_id: str | None = Field(None, description="Receiver's riskpipe account id.")

    @property
    def is_empty(self) -> bool:
        """True when neither a name nor any account is known."""
        return not (self.name or self.bank_account or self.account_id)


class ValidationRequest(BaseModel):
    """One transaction to validate."""

    model_config = _INPUT

    transaction_id: str | int = Field(description="Echoed back in the response.")
    sender_bank_account: str = Field(min_length=1, description="Sender's account.")
    receiver_details: ReceiverDetails | None = Field(
        None, description="An object, or the same object as a JSON string."
    )
    sender_bank: str | None = Field(None, description="Sender's bank.")
    amount: float = Field(allow_inf_nan=False, description="Amount in `currency`.")
    currency: str | None = Field(
        None, pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code; EUR when absent."
    )
    transaction_type: str | None = Field(None, description="transfer, payment, ...")
    risk_score: float | None = Field(
        None, ge=0, le=100, description="The pipeline's 0-100 risk score."
    )
    account_created_at: datetime | None = Field(
        None, description="When the sender's account was opened (ISO 8601)."
    )
    datetime_occurred: datetime | None = Field(
        None, description="When the transaction happened (ISO 8601; naive = UTC)."
    )

    @field_validator("receiver_details", mode="before")
    @classmethod
    def _decode_receiver(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"receiver_details is not valid JSON ({exc})") from None
        return value

    @field_validator("account_created_at", "datetime_occurred")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class BatchRequest(BaseModel):
    """Several transactions, validated in order."""

    transactions: list[ValidationRequest]


class ValidationResponse(BaseModel):
    """The verdict on one transaction, with the rules that fired."""

    is_fraudulent_transaction: bool
    score: float = Field(description="0..1; fraudulent when >= the configured threshold.")
    reasons: list[str] = Field(description="Names of the rules that fired, in rule order.")
    transaction_id: str | int


class BatchResponse(BaseModel):
    """One result per request transaction, in the same order."""

    results: list[ValidationResponse]


class ErrorResponse(BaseModel):
    """An error: a one-line ``message`` naming the field, and the details."""

    message: str
    detail: Any = None
