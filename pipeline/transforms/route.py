"""Routing by the bank's evaluation: fraudulent, to be validated, or cleared.

``evaluation == "fraudulent"``: the sender's bank already knows; the transaction is
fraudulent and ``validated_by = "bank"``. ``"unidentified"``: the fraud validator
decides (the fraud model's alert, already in ``is_fraudulent``, stands beside its verdict).
Anything else: cleared, ``validated_by = "none"``.

    routed = scored | 'RouteByEvaluation' >> RouteByEvaluation()
    routed.decided        # AttributedTransactions with a final verdict
    routed.unidentified   # AttributedTransactions the validator must decide
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam import pvalue

from pipeline.metrics import Counters
from pipeline.records import AttributedTransaction

__all__ = ["RouteByEvaluation", "UNIDENTIFIED", "route"]

UNIDENTIFIED = "unidentified"
DECIDED = "decided"


def route(record: AttributedTransaction) -> tuple[str, AttributedTransaction]:
    """Returns the output (`decided` or `unidentified`) and the record with its verdict.

    >>> from pipeline.records import Transaction
    >>> from datetime import datetime, timezone
    >>> t = Transaction("t1", "a1", None, "transfer", 10.0, "EUR", "completed",
    ...                 datetime(2026, 1, 1, tzinfo=timezone.utc), "Bank", "fraudulent")
    >>> output, decided = route(AttributedTransaction(t, "Ann", 12))
    >>> output, decided.is_fraudulent, decided.validated_by
    ('decided', True, 'bank')
    """
    evaluation = record.transaction.evaluation
    if evaluation == "fraudulent":
        return DECIDED, dataclasses.replace(record, is_fraudulent=True, validated_by="bank")
    if evaluation == UNIDENTIFIED:
        return UNIDENTIFIED, record
    if not record.is_fraudulent and record.validated_by == "none":
        return DECIDED, record  # cleared already: no copy
    return DECIDED, dataclasses.replace(record, is_fraudulent=False, validated_by="none")


class _RouteFn(beam.DoFn):
    def __init__(self):
        self.counters = Counters(
            "routed_bank_fraudulent", "routed_unidentified", "routed_cleared"
        )

    def start_bundle(self):
        self.counters.report_zero()

    def finish_bundle(self):
        self.counters.flush()

    def process(self, record: AttributedTransaction):
        output, routed = route(record)
        if output == UNIDENTIFIED:
            self.counters.inc("routed_unidentified")
            yield pvalue.TaggedOutput(UNIDENTIFIED, routed)
        else:
            self.counters.inc("routed_bank_fraudulent" if routed.is_fraudulent else "routed_cleared")
            yield routed


class RouteByEvaluation(beam.PTransform):
    """Splits scored transactions into decided ones and those the validator must decide."""

    def expand(self, scored):
        # Typed, so the rows cross stage boundaries in their coder (pipeline.transforms.coders).
        route = beam.ParDo(_RouteFn()).with_output_types(
            AttributedTransaction, **{UNIDENTIFIED: AttributedTransaction}
        )
        return scored | "Route" >> route.with_outputs(UNIDENTIFIED, main=DECIDED)
