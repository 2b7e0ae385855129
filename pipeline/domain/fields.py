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
from collections.abc import Iterable, Mapping
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
    "code",
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
# Unicode category Cc is exactly these two ranges (C0 and DEL + C1).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Ids that pass every identifier rule at a glance: printable ASCII without spaces.
_PLAIN_ID = re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}")


def show(value: Any) -> str:
    """A short, single-line rendering of a bad value for a reason string."""
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def _string(obj: dict, name: str, required: bool) -> str | None:
    """The field as a string, None when absent (or null) and optional; else invalid."""
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidRecord(f"{name}: missing")
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"{name}: not a string ({type(value).__name__})")
    # Only a non-ASCII string can hold a lone surrogate: JSON may escape one ("\udfd9"),
    # and no sink can store it.
    if not value.isascii() and not _is_utf8(value):
        raise InvalidRecord(f"{name}: lone surrogate, not valid unicode ({show(value)})")
    return value


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def identifier(obj: dict, name: str, required: bool = True) -> str | None:
    """A non-empty id string of at most MAX_ID_LENGTH characters, no control characters."""
    value = obj.get(name)
    if value.__class__ is str and _PLAIN_ID.fullmatch(value):
        return value  # the usual id: printable ASCII, no space, short enough
    value = _string(obj, name, required)
    if value is None:
        return None
    if not value or value.isspace():
        raise InvalidRecord(f"{name}: empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRecord(f"{name}: too long ({len(value)} chars)")
    if _CONTROL.search(value):
        raise InvalidRecord(f"{name}: control characters ({show(value)})")
    return value


def text(obj: dict, name: str, required: bool = False) -> str | None:
    """A free-text string of at most MAX_TEXT_LENGTH characters; required ones non-blank."""
    value = _string(obj, name, required)
    if value is None:
        return None
    if required and (not value or value.isspace()):
        raise InvalidRecord(f"{name}: empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidRecord(f"{name}: too long ({len(value)} chars)")
    if "\x00" in value:
        # PostgreSQL TEXT cannot hold NUL; other control characters are kept as data.
        raise InvalidRecord(f"{name}: contains a NUL character ({show(value)})")
    return value


def number(obj: dict, name: str, required: bool = True) -> float | None:
    """A finite float from a JSON number or a plain decimal string (never a bool)."""
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidRecord(f"{name}: missing")
        return None
    kind = value.__class__
    if kind is float:
        result = value
    elif kind is int:
        try:
            result = float(value)
        except OverflowError:
            result = math.inf
    elif kind is str:
        if not _DECIMAL.fullmatch(value):
            raise InvalidRecord(f"{name}: not a number ({show(value)})")
        result = float(value)
    else:
        raise InvalidRecord(f"{name}: not a number ({kind.__name__})")
    if not math.isfinite(result):
        raise InvalidRecord(f"{name}: not a finite number ({show(result)})")
    return result


def choice(
    obj: dict, name: str, vocabulary: Mapping[str, str], required: bool = True
) -> str | None:
    """The canonical value of a vocabulary word, matched without regard to ASCII case.

    ``vocabulary`` maps each accepted spelling, in lower case, to the value a record
    keeps (see :mod:`pipeline.domain.vocabularies`).

    >>> choice({"status": "Completed"}, "status", {"completed": "completed"})
    'completed'
    """
    value = _string(obj, name, required)
    if value is None:
        return None
    canonical = vocabulary.get(value)
    if canonical is None and value.isascii():
        # ASCII only: str.lower() folds some other letters into ASCII ones (KELVIN SIGN -> k).
        canonical = vocabulary.get(value.lower())
    if canonical is None:
        raise InvalidRecord(f"{name}: unknown ({show(value)})")
    return canonical


def code(obj: dict, name: str, allowed: Iterable[str], required: bool = True) -> str | None:
    """One of ``allowed``, matched exactly (case-sensitive), e.g. an ISO 4217 currency code."""
    value = _string(obj, name, required)
    if value is None:
        return None
    if value not in allowed:
        raise InvalidRecord(f"{name}: unknown ({show(value)})")
    return value


def timestamp(obj: dict, name: str, now: datetime, required: bool = True) -> datetime | None:
    """An ISO-8601 string between EARLIEST and ``now + MAX_FUTURE``; naive means UTC.

    ``T`` or a space may separate date and time (``"2026-01-02 03:04:05"``).
    """
    value = _string(obj, name, required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"{name}: not an ISO-8601 timestamp ({show(value)})") from None
    zone = parsed.tzinfo
    if zone is None:
        parsed = parsed.replace(tzinfo=UTC)
    elif zone is not UTC:
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
