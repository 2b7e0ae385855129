"""The currencies riskpipe accepts and their reference rates to EUR, in one table.

Parsing rejects any currency not listed here, and scoring normalises every amount to
EUR with the same rates, so thresholds are comparable across currencies.

The rates are fixed reference rates (approximate, early 2026), not live quotes: risk
scoring needs amounts on one scale, not exact conversions. Besides the usual European and
major currencies the table holds the common Asian, Middle-Eastern and Latin-American ones
(the Flink SQL system's producers write ``VND`` amounts).

>>> to_eur(100.0, "USD")
92.0
>>> "EUR" in CURRENCIES, "VND" in CURRENCIES
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CURRENCIES", "RATES_TO_EUR", "to_eur"]

# EUR per one unit of the currency (ISO 4217 codes).
RATES_TO_EUR: Mapping[str, float] = MappingProxyType(
    {
        "EUR": 1.0,
        "USD": 0.92,
        "GBP": 1.17,
        "CHF": 1.05,
        "JPY": 0.0061,
        "CNY": 0.127,
        "CAD": 0.68,
        "AUD": 0.61,
        "NZD": 0.56,
        "SEK": 0.088,
        "NOK": 0.086,
        "DKK": 0.134,
        "PLN": 0.23,
        "CZK": 0.040,
        "HUF": 0.0025,
        "RON": 0.20,
        "BGN": 0.511,
        "INR": 0.011,
        "BRL": 0.17,
        "MXN": 0.050,
        "ZAR": 0.050,
        "SGD": 0.68,
        "HKD": 0.118,
        "KRW": 0.00068,
        "VND": 0.000036,
        "THB": 0.026,
        "IDR": 0.000058,
        "MYR": 0.20,
        "PHP": 0.016,
        "TWD": 0.029,
        "AED": 0.25,
        "SAR": 0.245,
        "ILS": 0.25,
        "TRY": 0.027,
        "ISK": 0.0067,
        "CLP": 0.00098,
        "COP": 0.00023,
    }
)
CURRENCIES = frozenset(RATES_TO_EUR)


def to_eur(amount: float, currency: str) -> float:
    """Converts ``amount`` in ``currency`` to EUR; raises ``KeyError`` for an unknown one."""
    return amount * RATES_TO_EUR[currency]
