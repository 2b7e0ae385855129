"""Deciding fraud: the bank's own verdict where it gave one, the validator's otherwise.

Usage::

    decided = attributed | "DecideFraud" >> DecideFraud(ValidateUnidentified(validator_url))
    # PCollection[AttributedTransaction] with is_fraudulent and validated_by final

``RouteByEvaluation`` takes what the bank decided (``fraudulent``: fraud, ``validated_by =
"bank"``; anything but ``unidentified``: cleared) and sends the ``unidentified`` ones through
the given validation step; both streams leave merged.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.transforms.route import RouteByEvaluation

__all__ = ["DecideFraud"]


class DecideFraud(beam.PTransform):
    """Scored AttributedTransactions → decided ones (``is_fraudulent``, ``validated_by``).

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
        return (routed.decided, validated) | "MergeDecisions" >> beam.Flatten()
