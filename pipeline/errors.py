"""The exceptions riskpipe raises: one base class, one subclass per kind of failure.

Catch :class:`RiskpipeError` to catch anything the package raises on purpose; anything
else is a bug.

>>> try:
...     raise InvalidRecord("amount: not a finite number (nan)")
... except RiskpipeError as exc:
...     exc.reason
'amount: not a finite number (nan)'
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "InvalidRecord", "LookupUnavailable", "RiskpipeError"]


class RiskpipeError(Exception):
    """Base class of every exception riskpipe raises on purpose."""


class ConfigurationError(RiskpipeError):
    """A setting is wrong or a dependency it names cannot be reached.

    The command-line entry points print its message as one line and exit non-zero.
    """


class InvalidRecord(RiskpipeError):
    """A record failed validation; ``reason`` says which field and which value.

    Reasons are short and stable so dead letters group by them: ``"<field>: <problem>"``,
    optionally followed by the offending value in parentheses.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LookupUnavailable(RiskpipeError):
    """A lookup's backing store (e.g. PostgreSQL) could not be reached just now.

    Lookups raise this for transient failures; callers treat it as "not found for now"
    instead of failing the bundle.
    """
