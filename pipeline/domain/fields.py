"""Field validators shared by the record parsers: each returns a clean value or raises.

Every validator takes the decoded JSON object and a field name, and raises
:class:`~pipeline.errors.InvalidRecord` with a reason of the form
``"<field>: <problem>"`` or ``"<field>: <problem> (<value>)"``, so dead letters group by
the text before the parenthesis.

Numbers: JSON numbers are accepted, and so are strings holding a plain decimal number
(``"12.50"``, ``"1e3"``), because producers that keep money as DECIMAL often serialise
it as a string to keep its precision. Booleans are not numbers; ``"NaN"``, ``"inf"``,
hex, underscores and surrounding spaces are not accepted either.

>>> number({"amount": "12.50"}, "amount")
12.5
>>> number({"amount": True}, "amount")
Traceback (most recent call last):
...
pipeline.errors.InvalidRecord: amount: not a number (bool)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.errors import InvalidRecord

__all__ = [
    "EARLIEST",
    "MAX_FUTURE",
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "calendar_date",
    "choice",
    "identifier",
    "number",
    "show",
    "text",
    "timestamp",
]

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 512
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
_SHOWN_CHARS = 40
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_MISSING = object()


def show(value: Any) -> str:
    """A short, single-line rendering of a bad value for a reason string."""
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def _get(obj: dict, name: str, required: bool) -> Any:
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise InvalidRecord(f"{name}: missing")
        return None
    return value


def _string(obj: dict, name: str, required: bool) -> str | None:
    """The field as a string, None when absent and optional; anything else is invalid."""
    value = _get(obj, name, required)
    if value is not None and not isinstance(value, str):
        raise InvalidRecord(f"{name}: not a string ({type(value).__name__})")
    if value is not None and not _is_utf8(value):
        # JSON may escape a lone surrogate ("\udfd9"); no sink can store one.
        raise InvalidRecord(f"{name}: lone surrogate, not valid unicode ({show(value)})")
    return value


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_control_chars(value: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in value)


def identifier(obj: dict, name: str, required: bool = True) -> str | None:
    """A non-empty id string of at most MAX_ID_LENGTH characters, no control characters."""
    value = _string(obj, name, required)
    if value is None:
        return None
    if not value.strip():
        raise InvalidRecord(f"{name}: empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRecord(f"{name}: too long ({len(value)} chars)")
    if _has_control_chars(value):
        raise InvalidRecord(f"{name}: control characters ({show(value)})")
    return value


def text(obj: dict, name: str, required: bool = False) -> str | None:
    """A free-text string of at most MAX_TEXT_LENGTH characters; required ones non-blank."""
    value = _string(obj, name, required)
    if value is None:
        return None
    if required and not value.strip():
        raise InvalidRecord(f"{name}: empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidRecord(f"{name}: too long ({len(value)} chars)")
    if "\x00" in value:
        # PostgreSQL TEXT cannot hold NUL; other control characters are kept as data.
        raise InvalidRecord(f"{name}: contains a NUL character ({show(value)})")
    return value


def number(obj: dict, name: str, required: bool = True) -> float | None:
    """A finite float from a JSON number or a plain decimal string (never a bool)."""
    value = _get(obj, name, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRecord(f"{name}: not a number ({type(value).__name__})")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise InvalidRecord(f"{name}: not a number ({show(value)})")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise InvalidRecord(f"{name}: not a finite number ({show(result)})")
    return result


def choice(obj: dict, name: str, allowed: Iterable[str], required: bool = True) -> str | None:
    """One of ``allowed``, matched exactly (case-sensitive)."""
    value = _string(obj, name, required)
    if value is None:
        return None
    if value not in allowed:
        raise InvalidRecord(f"{name}: unknown ({show(value)})")
    return value


def timestamp(obj: dict, name: str, now: datetime, required: bool = True) -> datetime | None:
    """An ISO-8601 string between EARLIEST and ``now + MAX_FUTURE``; naive means UTC."""
    value = _string(obj, name, required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"{name}: not an ISO-8601 timestamp ({show(value)})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRecord(f"{name}: out of range ({show(value)})") from None
    if parsed < EARLIEST:
        raise InvalidRecord(f"{name}: before {EARLIEST.year} ({show(value)})")
    if parsed > now + MAX_FUTURE:
        raise InvalidRecord(f"{name}: in the future ({show(value)})")
    return parsed


def calendar_date(obj: dict, name: str, required: bool = False) -> date | None:
    """A ``YYYY-MM-DD`` string from 1900 on."""
    value = _string(obj, name, required)
    if value is None:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"{name}: not an ISO-8601 date ({show(value)})") from None
    if parsed.year < 1900:
        raise InvalidRecord(f"{name}: before 1900 ({show(value)})")
    return parsed
