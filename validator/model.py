"""The fraud model: deterministic, explainable rules with weights from the rules file.

Every rule looks at one thing the request carries and returns how strongly it fires,
from 0 (not at all) to 1 (fully); the score is the sum of ``weight * strength`` over the
rules, capped at 1 and rounded to 4 decimals, and the transaction is fraudulent when the
score reaches the configured threshold. The reasons are the names of the rules that fired,
in the order of :data:`RULE_ORDER`. No I/O, no clock, no randomness: the same request and
rules always give the same verdict.

>>> from validator.config import load_config
>>> from validator.schemas import ValidationRequest
>>> model = FraudModel(load_config())
>>> model.evaluate(ValidationRequest(transaction_id="t1", sender_bank_account="A1",
...     sender_bank="Offshore Trust Ltd", amount=20000, receiver_details=None))
Verdict(is_fraudulent=True, score=1.0, reasons=('large_amount', 'round_amount', \
'watched_sender_bank', 'receiver_missing'))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC
from typing import NamedTuple

from validator.config import ModelConfig
from validator.schemas import ValidationRequest

__all__ = ["RULE_ORDER", "FraudModel", "Verdict"]

# The order rules are evaluated and reported in; every name is a key of `rules:` in the
# rules file and a section of validator/README.md.
RULE_ORDER = (
    "large_amount",
    "very_large_amount",
    "round_amount",
    "watched_sender_bank",
    "receiver_missing",
    "receiver_incomplete",
    "receiver_is_sender",
    "pipeline_risk",
    "new_account",
    "unusual_hour",
    "unknown_currency",
)
_SECONDS_PER_DAY = 86_400.0
# Tolerance for "is a whole multiple" on floats (amounts carry cents at most).
_ROUND_EPSILON = 1e-6


class Verdict(NamedTuple):
    """The model's answer for one transaction."""

    is_fraudulent: bool
    score: float
    reasons: tuple[str, ...]


class _Facts(NamedTuple):
    """What several rules need, computed once per request."""

    request: ValidationRequest
    amount: float
    amount_eur: float
    currency_known: bool


class FraudModel:
    """Scores validation requests with the rules and weights of a :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig):
        self.config = config
        rules = config.rules
        self._rates = config.currency_to_eur
        self._watched = frozenset(
            bank.strip().casefold() for bank in rules.watched_sender_bank.banks
        )
        checks: dict[str, Callable[[_Facts], float]] = {
            "large_amount": self._large_amount,
            "very_large_amount": self._very_large_amount,
            "round_amount": self._round_amount,
            "watched_sender_bank": self._watched_sender_bank,
            "receiver_missing": self._receiver_missing,
            "receiver_incomplete": self._receiver_incomplete,
            "receiver_is_sender": self._receiver_is_sender,
            "pipeline_risk": self._pipeline_risk,
            "new_account": self._new_account,
            "unusual_hour": self._unusual_hour,
            "unknown_currency": self._unknown_currency,
        }
        # Rules with weight 0 are off: they are not even evaluated.
        self._active = tuple(
            (name, getattr(rules, name).weight, checks[name])
            for name in RULE_ORDER
            if getattr(rules, name).weight > 0
        )

    def evaluate(self, request: ValidationRequest) -> Verdict:
        """Returns the verdict, the score and the reasons for one request."""
        facts = self._facts(request)
        total = 0.0
        reasons = []
        for name, weight, check in self._active:
            strength = check(facts)
            if strength > 0:
                total += weight * strength
                reasons.append(name)
        score = round(min(total, 1.0), 4)
        return Verdict(score >= self.config.threshold, score, tuple(reasons))

    def _facts(self, request: ValidationRequest) -> _Facts:
        code = (request.currency or "EUR").upper()
        rate = self._rates.get(code)
        amount = abs(request.amount)
        return _Facts(request, amount, amount * (rate or 1.0), rate is not None)

    # -- the rules: each returns a strength in [0, 1] ---------------------------------
    def _large_amount(self, f: _Facts) -> float:
        return float(f.amount_eur >= self.config.rules.large_amount.min_eur)

    def _very_large_amount(self, f: _Facts) -> float:
        return float(f.amount_eur >= self.config.rules.very_large_amount.min_eur)

    def _round_amount(self, f: _Facts) -> float:
        rule = self.config.rules.round_amount
        if f.amount < rule.min_amount or f.amount == 0:
            return 0.0
        remainder = math.fmod(f.amount, rule.multiple)
        return float(remainder < _ROUND_EPSILON or rule.multiple - remainder < _ROUND_EPSILON)

    def _watched_sender_bank(self, f: _Facts) -> float:
        bank = f.request.sender_bank
        return float(bank is not None and bank.casefold() in self._watched)

    def _receiver_missing(self, f: _Facts) -> float:
        receiver = f.request.receiver_details
        return float(receiver is None or receiver.is_empty)

    def _receiver_incomplete(self, f: _Facts) -> float:
        receiver = f.request.receiver_details
        if receiver is None or receiver.is_empty:
            return 0.0  # receiver_missing covers it
        has_account = bool(receiver.bank_account or receiver.account_id)
        return float(not (receiver.name and receiver.bank and has_account))

    def _receiver_is_sender(self, f: _Facts) -> float:
        receiver = f.request.receiver_details
        if receiver is None:
            return 0.0
        sender = f.request.sender_bank_account
        return float(sender in (receiver.bank_account, receiver.account_id))

    def _pipeline_risk(self, f: _Facts) -> float:
        risk = f.request.risk_score
        floor = self.config.rules.pipeline_risk.min_score
        if risk is None or risk <= floor:
            return 0.0
        return min((risk - floor) / (100.0 - floor), 1.0)

    def _new_account(self, f: _Facts) -> float:
        created, occurred = f.request.account_created_at, f.request.datetime_occurred
        if created is None or occurred is None:
            return 0.0
        age_days = (occurred - created).total_seconds() / _SECONDS_PER_DAY
        return float(age_days < self.config.rules.new_account.max_age_days)

    def _unusual_hour(self, f: _Facts) -> float:
        occurred = f.request.datetime_occurred
        if occurred is None:
            return 0.0
        rule = self.config.rules.unusual_hour
        return float(rule.start_hour <= occurred.astimezone(UTC).hour < rule.end_hour)

    def _unknown_currency(self, f: _Facts) -> float:
        return float(not f.currency_known)
