"""Deciding fraud: the bank's own verdict where it gave one, the validator's otherwise.

Usage::

    decisions = attributed | "DecideFraud" >> DecideFraud(ValidateUnidentified(validator_url))
    decisions["decided"]       # AttributedTransactions the bank decided, is_fraudulent final
    decisions["validated"]     # the unidentified ones, decided by the validator
    decisions["dead_letters"]  # DeadLetters of transactions the validator refused to judge

``RouteByEvaluation`` takes what the bank decided (``fraudulent``: fraud, ``validated_by =
"bank"``; anything but ``unidentified``: cleared) and sends the ``unidentified`` ones through
the given validation step (which returns ``records`` and ``dead_letters``). The two decided
streams leave apart, to be written where each is decided: merged by a Flatten, every row
would be encoded and decoded once more on the FnApiRunner, whose fuser does not fuse a
Flatten of two stages' outputs (Flink's does). A transaction's rows all take one route.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.transforms.route import RouteByEvaluation

__all__ = ["DecideFraud"]


class DecideFraud(beam.PTransform):
    """Scored AttributedTransactions → ``{"decided": …, "dead_letters": …}``.

    Args:
      validate: the step that decides ``unidentified`` transactions, e.g.
        :class:`~pipeline.transforms.validate.ValidateUnidentified`.
    """

    def __init__(self, validate: beam.PTransform):
        super().__init__()
        if not isinstance(validate, beam.PTransform):
            raise ValueError(f"DecideFraud: validate must be a PTransform, got {validate!r}")
        self._validate = validate

    def expand(self, scored):
        routed = scored | "RouteByEvaluation" >> RouteByEvaluation()
        validated = routed.unidentified | "ValidateUnidentified" >> self._validate
        return {
            "decided": routed.decided,
            "validated": validated.records,
            "dead_letters": validated.dead_letters,
        }
