"""The records' coders: every field survives, and the job's graph uses them, not pickle."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import apache_beam as beam
import pytest
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from factories import account, transaction
from pipeline.main import build
from pipeline.options import RunOptions
from pipeline.records import Account, AttributedTransaction, Transaction
from pipeline.runners.flags import with_runner_defaults
from pipeline.transforms.coders import (
    AccountCoder,
    AttributedTransactionCoder,
    TransactionCoder,
)

FULL_ACCOUNT = account(
    account_id="a1", account_name="Ann Bee", email="ann@example.com", account_type="credit",
    balance=-12.5, created_at=datetime(2020, 2, 3, 4, 5, 6, 789, tzinfo=UTC),
    address="1 Main St", birthdate=date(1980, 1, 2), phone_number="+34 600",
    job="pilot", company="Acme", bank="Banco", bank_account="ES00 1234",
)
FULL_TRANSACTION = dataclasses.replace(
    transaction(transaction_id="t1", account_id="a1", counterparty_account_id="a2",
                amount=99.99, currency="USD", transaction_status="failed",
                datetime_occurred=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    account_details=FULL_ACCOUNT,
)
FULL_ROW = AttributedTransaction(
    FULL_TRANSACTION, "Ann Bee", 77, ("night: 03:04 UTC (+5)", "withdrawal: cash (+10)"),
    is_fraudulent=True, validated_by="validator",
    processed_at=datetime(2026, 1, 2, 3, 4, 6, 1, tzinfo=UTC), account=FULL_ACCOUNT,
    features=(1.5, -2.0, 0.0), correction=True,
)


@pytest.mark.parametrize(("coder", "record"), [
    (AccountCoder(), FULL_ACCOUNT),
    (TransactionCoder(), FULL_TRANSACTION),
    (AttributedTransactionCoder(), FULL_ROW),
    (AttributedTransactionCoder(), AttributedTransaction(transaction(), None, 0)),
])
def test_every_field_survives_the_coder(coder, record):
    assert coder.decode(coder.encode(record)) == record


def test_a_row_is_under_half_its_pickled_size():
    # What the coder saves on every boundary a row crosses (pickle: Beam's fallback).
    pickled = FastPrimitivesCoder().encode(FULL_ROW)
    assert len(AttributedTransactionCoder().encode(FULL_ROW)) * 2 < len(pickled)


def test_the_job_carries_its_records_in_their_coders_not_pickled():
    options = PipelineOptions(with_runner_defaults(["--runner=DirectRunner"], "riskpipe"))
    options.view_as(RunOptions).bounded = True
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    expected = {Account: AccountCoder, Transaction: TransactionCoder,
                AttributedTransaction: AttributedTransactionCoder}
    typed: dict[str, type] = {}
    untyped_rows: list[str] = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            for tag, pcoll in node.outputs.items():
                label = f"{node.full_label}[{tag}]"
                if pcoll.element_type in expected:
                    coder = beam.coders.registry.get_coder(pcoll.element_type)
                    assert isinstance(coder, expected[pcoll.element_type]), label
                    typed[label] = pcoll.element_type
                elif node.full_label.startswith(("DecideFraud/RouteByEvaluation",
                                                 "MergeFraudulent")):
                    untyped_rows.append(label)

    pipeline.visit(Visitor())
    assert untyped_rows == []  # the rows of the decisions: both routes, and the fraud's merge
    assert sum(t is AttributedTransaction for t in typed.values()) >= 4
    assert Transaction in typed.values() and Account in typed.values()
