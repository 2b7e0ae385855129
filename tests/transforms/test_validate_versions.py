"""Which buffered versions of a transaction the validation step decides (no Beam, no service)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from factories import T0, transaction

from pipeline.records import AttributedTransaction
from pipeline.transforms.validate import newest_versions


def row(transaction_id: str, name: str, processed_s: float | None) -> AttributedTransaction:
    record = AttributedTransaction(transaction(transaction_id=transaction_id), name, 10)
    processed_at = None if processed_s is None else T0 + timedelta(seconds=processed_s)
    return dataclasses.replace(record, processed_at=processed_at)


def names(pending) -> list[tuple[int, str, str]]:
    return [(at, record.transaction_id, record.account_name) for at, record in pending]


def test_a_correction_with_an_older_timestamp_replaces_the_row_it_corrects():
    pending = [(200, row("t1", "Ada", 1)), (100, row("t2", "Bo", 1)), (50, row("t1", "Ada K", 2))]
    assert names(newest_versions(pending)) == [(50, "t1", "Ada K"), (100, "t2", "Bo")]


def test_the_newest_version_wins_whatever_order_the_buffer_holds_them_in():
    pending = [(50, row("t1", "Ada K", 2)), (200, row("t1", "Ada", 1))]
    assert names(newest_versions(pending)) == [(50, "t1", "Ada K")]


def test_of_equal_versions_the_one_buffered_last_wins():
    pending = [(50, row("t1", "Ada", 1)), (60, row("t1", "Ada K", 1))]
    assert names(newest_versions(pending)) == [(60, "t1", "Ada K")]
    pending = [(50, row("t1", "Ada", None)), (60, row("t1", "Ada K", None))]
    assert names(newest_versions(pending)) == [(60, "t1", "Ada K")]


def test_distinct_transactions_come_in_timestamp_then_id_order():
    pending = [(7, row("t3", "C", 1)), (5, row("t2", "B", 1)), (5, row("t1", "A", 1))]
    assert names(newest_versions(pending)) == [(5, "t1", "A"), (5, "t2", "B"), (7, "t3", "C")]
