"""The validator's rules file: its schema and its loader.

The shipped ``validator/rules.yaml`` is the default; ``--config`` points at another file
of the same shape. A file that does not match the schema (unknown key, negative weight,
missing threshold, ...) raises :class:`ConfigError` naming the bad key, so the service
refuses to start rather than scoring with a half-read configuration.

>>> config = load_config()
>>> config.rules.large_amount.min_eur
10000.0
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigError", "ModelConfig", "load_config", "parse_config"]

DEFAULT_CONFIG_PATH = Path(__file__).with_name("rules.yaml")


class ConfigError(ValueError):
    """The rules file is missing, is not YAML, or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    """A rule with no parameters; ``weight`` 0 switches it off."""

    weight: float = Field(0.0, ge=0.0, le=1.0)


class AmountRule(Rule):
    """Fires when the amount in EUR reaches ``min_eur``."""

    min_eur: float = Field(10_000.0, gt=0)


class RoundAmountRule(Rule):
    """Fires when the amount is at least ``min_amount`` and a multiple of ``multiple``."""

    multiple: float = Field(1000.0, gt=0)
    min_amount: float = Field(1000.0, ge=0)


class WatchListRule(Rule):
    """Fires when the sender's bank is on ``banks`` (compared case-insensitively)."""

    banks: tuple[str, ...] = ()


class RiskRule(Rule):
    """Scales the pipeline's 0-100 risk score above ``min_score`` into 0..weight."""

    min_score: float = Field(50.0, ge=0, lt=100)


class NewAccountRule(Rule):
    """Fires when the sender's account is younger than ``max_age_days``."""

    max_age_days: float = Field(30.0, gt=0)


class HourRule(Rule):
    """Fires when the transaction happened in [start_hour, end_hour) UTC."""

    start_hour: int = Field(0, ge=0, le=23)
    end_hour: int = Field(5, ge=1, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> HourRule:
        if self.start_hour >= self.end_hour:
            raise ValueError(
                f"start_hour ({self.start_hour}) must be before end_hour ({self.end_hour})"
            )
        return self


class Rules(_Strict):
    """Every rule the model knows; a rule left out of the file is off."""

    large_amount: AmountRule = AmountRule()
    very_large_amount: AmountRule = AmountRule(min_eur=50_000.0)
    round_amount: RoundAmountRule = RoundAmountRule()
    watched_sender_bank: WatchListRule = WatchListRule()
    receiver_missing: Rule = Rule()
    receiver_incomplete: Rule = Rule()
    receiver_is_sender: Rule = Rule()
    pipeline_risk: RiskRule = RiskRule()
    new_account: NewAccountRule = NewAccountRule()
    unusual_hour: HourRule = HourRule()
    unknown_currency: Rule = Rule()


class ModelConfig(_Strict):
    """The whole rules file."""

    version: int = Field(1, ge=1, le=1)
    threshold: float = Field(gt=0.0, le=1.0)
    currency_to_eur: dict[str, float] = Field(min_length=1)
    rules: Rules

    @model_validator(mode="after")
    def _currencies(self) -> ModelConfig:
        for code, rate in self.currency_to_eur.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f"currency code {code!r} must be 3 upper-case letters")
            if rate <= 0:
                raise ValueError(f"rate of {code} must be > 0, got {rate}")
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<top level>"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_config(data: Any, source: str = "<dict>") -> ModelConfig:
    """Checks an already-loaded mapping against the schema.

    Raises:
        ConfigError: naming ``source`` and every bad key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"invalid validator config {source}: expected a mapping at top level")
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid validator config {source}: {_describe(exc)}") from None


def load_config(path: str | Path | None = None) -> ModelConfig:
    """Reads and checks a rules file (the shipped ``rules.yaml`` when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read validator config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"validator config {path} is not valid YAML: {exc}") from None
    config = parse_config(data, str(path))
    logger.info("loaded validator rules from %s (threshold %.2f)", path, config.threshold)
    return config
