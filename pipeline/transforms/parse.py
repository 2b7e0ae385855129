"""Parsing Kafka records into accounts and transactions, bad ones to a dead-letter output.

The PTransforms :class:`ParseTransactions` and :class:`ParseAccounts` apply the pure parsers
of :mod:`pipeline.domain.shapes` (riskpipe's own shape or those of the systems it replaces,
``input_format``) to :class:`~pipeline.records.KafkaRecord` s and split the result into the
records and a ``dead_letters`` output::

    parsed = kafka_records | "ParseTransactions" >> ParseTransactions(input_format="auto")
    parsed.records        # PCollection[Transaction]
    parsed.accounts       # PCollection[Account]: the users a transfer message carried
    parsed.dead_letters   # PCollection[DeadLetter]

The Kafka key plays no part: records are keyed by their ``account_id`` after parsing, so
unkeyed messages (both older systems wrote them) are read like keyed ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from pipeline.domain.shapes import INPUT_FORMATS, account_parser, transaction_parser
from pipeline.errors import InvalidRecord
from pipeline.metrics import Counters
from pipeline.records import Account, DeadLetter, KafkaRecord, Transaction

__all__ = ["ACCOUNTS", "DEAD_LETTERS", "ParseAccounts", "ParseTransactions", "ReadRecords"]

logger = logging.getLogger(__name__)

DEAD_LETTERS = "dead_letters"
ACCOUNTS = "accounts"


class _ParseFn(beam.DoFn):
    """Applies a parser to each KafkaRecord; failures go to the dead-letter output.

    With ``emit_parties`` the accounts a transaction's message described (its
    ``account_details`` and ``counterparty_details``) also go to the ``accounts`` output.
    """

    def __init__(
        self,
        parser: Callable[..., Any],
        step: str,
        clock: Callable[[], datetime],
        emit_parties: bool = False,
    ):
        self._parser = parser
        self._step = step
        self._clock = clock
        self._emit_parties = emit_parties
        self._counters = Counters("parsed", "dead_lettered", "accounts_from_transactions")

    def start_bundle(self):
        self._counters.report_zero()

    def finish_bundle(self):
        self._counters.flush()

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
        if self._emit_parties:
            yield from self._parties(parsed)

    def _parties(self, transaction: Transaction):
        sender, receiver = transaction.account_details, transaction.counterparty_details
        if sender is not None:
            self._counters.inc("accounts_from_transactions")
            yield pvalue.TaggedOutput(ACCOUNTS, sender)
        if receiver is not None and (sender is None or receiver.account_id != sender.account_id):
            self._counters.inc("accounts_from_transactions")
            yield pvalue.TaggedOutput(ACCOUNTS, receiver)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _ParseRecords(beam.PTransform):
    """KafkaRecords → a DoOutputsTuple of ``records`` and ``dead_letters``."""

    _record_type: type

    def __init__(self, clock: Callable[[], datetime] | None = None, input_format: str = "auto"):
        super().__init__()
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        if input_format not in INPUT_FORMATS:
            raise ValueError(
                f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}"
            )
        self._clock = clock or _utcnow
        self._input_format = input_format

    def _fn(self) -> _ParseFn:
        raise NotImplementedError

    def _outputs(self, pardo):
        return pardo.with_output_types(
            self._record_type, **{DEAD_LETTERS: DeadLetter}
        ).with_outputs(DEAD_LETTERS, main="records")

    def expand(self, records):
        return records | "Parse" >> self._outputs(
            beam.ParDo(self._fn()).with_input_types(KafkaRecord)
        )


class ParseTransactions(_ParseRecords):
    """KafkaRecords of the transactions topic → ``records`` (Transaction), ``accounts``
    (Account: both users of each transfer in the fraud PoC's shape) + ``dead_letters``.

    Args:
      clock: returns "now" for the future-timestamp check; defaults to the UTC clock.
      input_format: ``auto`` (each message recognised by its keys), ``riskpipe``,
        ``flinksql`` or ``poc`` (see :mod:`pipeline.domain.shapes`).
    """

    _record_type = Transaction

    def _fn(self) -> _ParseFn:
        # The applied label ("ParseTransactions") names the step in dead letters.
        parser = transaction_parser(self._input_format)
        return _ParseFn(parser, self.label, self._clock, emit_parties=True)

    def _outputs(self, pardo):
        return pardo.with_output_types(
            Transaction, **{DEAD_LETTERS: DeadLetter, ACCOUNTS: Account}
        ).with_outputs(DEAD_LETTERS, ACCOUNTS, main="records")


class ParseAccounts(_ParseRecords):
    """KafkaRecords of the accounts topic → ``records`` (Account) + ``dead_letters``.

    Args:
      clock: returns "now" for the future-timestamp check; defaults to the UTC clock.
      input_format: ``auto``, ``riskpipe``, ``flinksql`` or ``poc`` (a PoC user record).
    """

    _record_type = Account

    def _fn(self) -> _ParseFn:
        return _ParseFn(account_parser(self._input_format), self.label, self._clock)


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


class ReadBankRecords(beam.PTransform):
    """The job's input: ``{"accounts", "transactions", "dead_letters"}``.

    Transactions come from their topic; accounts from the accounts topic (none when
    ``accounts_read`` is None) and from the transactions' own messages (the fraud PoC's
    transfers carry both users), as a tuple of one PCollection per source, not flattened
    (:class:`~pipeline.transforms.attribute.AttributeTransactions` takes the tuple); dead
    letters from every parse.

    Args:
      accounts_read: the read of the accounts topic (a PTransform of KafkaRecords), or None.
      transactions_read: the read of the transactions topic.
      input_format: the record shape, see :class:`ParseTransactions`.
      accounts_first: read the accounts topic to its end before the transactions topic
        (bounded reads; ``transactions_read`` must have ``after()``, as
        :class:`~pipeline.io.kafka.ReadFromKafka` has). The account step then finds each
        transaction's account version in state: no lookup and no correction. The rows
        are the same either way.
    """

    def __init__(self, accounts_read, transactions_read, input_format: str = "auto",
                 accounts_first: bool = False):
        super().__init__()
        if accounts_first and not hasattr(transactions_read, "after"):
            raise ValueError("ReadBankRecords: accounts_first needs a read with after()")
        self._accounts = accounts_read
        self._transactions = transactions_read
        self._format = input_format
        self._accounts_first = accounts_first

    def expand(self, pbegin):
        accounts, dead_letters = [], []
        if self._accounts is not None:
            topic = pbegin | "ReadAccounts" >> ReadRecords(
                self._accounts, ParseAccounts(input_format=self._format)
            )
            accounts.append(topic.records)
            dead_letters.append(topic.dead_letters)
        read = self._transactions
        if self._accounts_first and self._accounts is not None:
            read = read.after(topic.records)
        transactions = pbegin | "ReadTransactions" >> ReadRecords(
            read, ParseTransactions(input_format=self._format)
        )
        accounts.append(transactions.accounts)
        dead_letters.append(transactions.dead_letters)
        return {
            "accounts": tuple(accounts),
            "transactions": transactions.records,
            "dead_letters": dead_letters | "MergeParseDeadLetters" >> beam.Flatten(),
        }
