"""Parsing Kafka records into accounts and transactions, bad ones to a dead-letter output.

The PTransforms :class:`ParseTransactions` and :class:`ParseAccounts` apply the pure parsers
of :mod:`pipeline.domain.parsing` to :class:`~pipeline.records.KafkaRecord` s and split the
result into the records and a ``dead_letters`` output::

    parsed = kafka_records | "ParseTransactions" >> ParseTransactions()
    parsed.records        # PCollection[Transaction]
    parsed.dead_letters   # PCollection[DeadLetter]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from pipeline.domain.parsing import parse_account, parse_transaction
from pipeline.errors import InvalidRecord
from pipeline.metrics import Counters
from pipeline.records import Account, DeadLetter, KafkaRecord, Transaction

__all__ = ["DEAD_LETTERS", "ParseAccounts", "ParseTransactions", "ReadRecords"]

logger = logging.getLogger(__name__)

DEAD_LETTERS = "dead_letters"


class _ParseFn(beam.DoFn):
    """Applies a parser to each KafkaRecord; failures go to the dead-letter output."""

    def __init__(self, parser: Callable[..., Any], step: str, clock: Callable[[], datetime]):
        self._parser = parser
        self._step = step
        self._clock = clock
        self._counters = Counters("parsed", "dead_lettered")

    def start_bundle(self):
        self._counters.report_zero()

    def process(self, record: KafkaRecord):
        try:
            parsed = self._parser(record.value, now=self._clock())
        except InvalidRecord as exc:
            self._counters.inc("dead_lettered")
            logger.debug(
                "%s: dead-lettered %s/%s@%s: %s",
                self._step,
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
            )
            yield pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter(
                    payload=record.value,
                    reason=exc.reason,
                    step=self._step,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                ),
            )
            return
        self._counters.inc("parsed")
        yield parsed


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _ParseRecords(beam.PTransform):
    """KafkaRecords → a DoOutputsTuple of ``records`` and ``dead_letters``."""

    _parser: Callable[..., Any]
    _record_type: type

    def __init__(self, clock: Callable[[], datetime] | None = None):
        super().__init__()
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        self._clock = clock or _utcnow

    def expand(self, records):
        # The applied label ("ParseTransactions") names the step in dead letters.
        return records | "Parse" >> beam.ParDo(
            _ParseFn(type(self)._parser, self.label, self._clock)
        ).with_input_types(KafkaRecord).with_output_types(
            self._record_type, **{DEAD_LETTERS: DeadLetter}
        ).with_outputs(DEAD_LETTERS, main="records")


class ParseTransactions(_ParseRecords):
    """KafkaRecords of the transactions topic → ``records`` (Transaction) + ``dead_letters``.

    Args:
      clock: returns "now" for the future-timestamp check; defaults to the UTC clock.
    """

    _parser = staticmethod(parse_transaction)
    _record_type = Transaction


class ParseAccounts(_ParseRecords):
    """KafkaRecords of the accounts topic → ``records`` (Account) + ``dead_letters``.

    Args:
      clock: returns "now" for the future-timestamp check; defaults to the UTC clock.
    """

    _parser = staticmethod(parse_account)
    _record_type = Account


class ReadRecords(beam.PTransform):
    """A read of KafkaRecords and its parse, as one step: ``records`` + ``dead_letters``.

    >>> ReadRecords(beam.Create([]), ParseAccounts()).label
    'ReadRecords'
    """

    def __init__(self, read: beam.PTransform, parse: _ParseRecords):
        super().__init__()
        if not isinstance(parse, _ParseRecords):
            raise ValueError(
                f"ReadRecords: parse must be ParseAccounts or ParseTransactions, got {parse!r}"
            )
        self._read = read
        self._parse = parse

    def expand(self, pbegin):
        # The parse keeps its own name (ParseTransactions): dead letters carry it as their step.
        return pbegin | "Read" >> self._read | type(self._parse).__name__ >> self._parse
