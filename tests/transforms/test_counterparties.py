"""Tests of the counterparty step, on the runners that execute it (TestStream for timing)."""

from __future__ import annotations

import math
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from factories import T0, transaction
from pipeline.domain.counterparty import COUNTERPARTY_FEATURES
from pipeline.records import AttributedTransaction
from pipeline.transforms.counterparties import (
    CounterpartyHistoryCoder,
    JournalCoder,
    ProfileCounterparties,
    ProfileCounterpartiesFn,
    _Change,
    _History,
)
from pipeline.transforms.journal import COMPACT_AT
from pipeline.transforms.journal import load as _load

from .pipelines import batch_pipeline, run_and_count, stream_pipeline
from .state_doubles import Bag, Cell, Timer

INFLOWS = COUNTERPARTY_FEATURES.index("cp_inflows")
SENDER = (7.0,)  # stands for the sender's features


def row(txn_id, minute, sender="a1", cp="mule", correction=False, score=0):
    txn = transaction(transaction_id=txn_id, account_id=sender, counterparty_account_id=cp,
                      transaction_type="transfer", datetime_occurred=T0 + timedelta(minutes=minute))
    return AttributedTransaction(txn, sender, score, features=SENDER, correction=correction)


def summary(out: AttributedTransaction):
    """(id, score, the sender's features kept, earlier inflows or None without a counterparty)."""
    inflows = out.features[len(SENDER) + INFLOWS]
    return (out.transaction_id, out.risk_score, out.features[: len(SENDER)],
            None if math.isnan(inflows) else inflows)


def test_rows_get_the_counterparty_features_and_rows_without_one_pass_through():
    with batch_pipeline() as pipeline:
        rows = pipeline | beam.Create([row("t1", 0, "a1"), row("t2", 5, "a2"),
                                       row("t3", 1, "a3", cp=None), row("t4", 2, "a4", cp="shop")])
        out = rows | ProfileCounterparties()
        assert_that(out | beam.Map(summary), equal_to([
            ("t1", 0, SENDER, 0.0), ("t2", 0, SENDER, 1.0), ("t3", 0, SENDER, None),
            ("t4", 0, SENDER, 0.0),
        ]))


def test_counters():
    pipeline = batch_pipeline()
    rows = pipeline | beam.Create([row("t1", 0), row("t2", 5), row("t3", 1, cp=None)])
    _ = rows | ProfileCounterparties()
    assert run_and_count(pipeline)["counterparty_rows"] == 2


def test_a_bundles_rows_reach_the_counterparty_in_event_time_order():
    """The account step emits a bundle's rows sender by sender; the step sorts each
    counterparty's rows of a bundle by event time, so none is corrected."""
    pipeline = batch_pipeline()
    rows = pipeline | beam.Create([row("t3", 20, "a1"), row("t1", 0, "a2"), row("t2", 10, "a3")])
    out = rows | ProfileCounterparties()
    assert_that(out | beam.Map(summary), equal_to([
        ("t1", 0, SENDER, 0.0), ("t2", 0, SENDER, 1.0), ("t3", 0, SENDER, 2.0)]))
    counts = run_and_count(pipeline)
    assert counts["counterparty_rows"] == 3
    assert "counterparty_corrected" not in counts, counts


def run_stream(events, expected, **args):
    stream = BeamTestStream()
    for event in events:
        if isinstance(event, int):
            stream.advance_watermark_to(event)
        else:
            record, ts = event
            stream.add_elements([TimestampedValue(record, ts)])
    stream.advance_watermark_to_infinity()
    with stream_pipeline() as pipeline:
        out = pipeline | stream | ProfileCounterparties(**args)
        assert_that(out | beam.Map(summary), equal_to(expected))


def test_a_late_earlier_inflow_corrects_the_rows_after_it():
    run_stream(
        [(row("t2", 10, "a2"), 10), (row("t3", 20, "a3"), 20), (row("t1", 5, "a1"), 30)],
        [("t2", 0, SENDER, 0.0), ("t3", 0, SENDER, 1.0), ("t1", 0, SENDER, 0.0),
         ("t2", 0, SENDER, 1.0), ("t3", 0, SENDER, 2.0)],
    )


def test_a_corrected_row_replaces_the_logged_one():
    run_stream(
        [(row("t1", 0, "a1"), 10), (row("t2", 10, "a2"), 20),
         (row("t1", 0, "a1", correction=True, score=80), 30), (row("t0", -5, "a0"), 40)],
        [("t1", 0, SENDER, 0.0), ("t2", 0, SENDER, 1.0), ("t1", 80, SENDER, 0.0),
         ("t0", 0, SENDER, 0.0), ("t1", 80, SENDER, 1.0), ("t2", 0, SENDER, 2.0)],
    )


def test_idle_state_is_dropped():
    run_stream(
        [(row("t1", 0, "a1"), 0), 400, (row("t2", 10, "a2"), 500)],
        [("t1", 0, SENDER, 0.0), ("t2", 0, SENDER, 0.0)],
        idle=300,
    )


@pytest.mark.parametrize("idle", [0, -1, timedelta(seconds=0)])
def test_bad_arguments_fail_at_construction(idle):
    with pytest.raises(ValueError):
        ProfileCounterparties(idle=idle)


def test_inflows_read_far_out_of_order_before_the_watermark_are_placed_exactly():
    """Two partitions read one after the other: 40 later inflows first, then 40 earlier ones,
    all before the watermark moves (more than the 32 settled inflows the log keeps). Each
    inflow's last row counts every inflow earlier in event time."""
    later = [(row(f"b{j:02d}", 100 + j, f"s{j % 5}"), 100 + j) for j in range(40)]
    earlier = [(row(f"a{i:02d}", i, f"s{i % 5}"), i) for i in range(40)]
    stream = BeamTestStream()
    stream.add_elements([TimestampedValue(record, ts) for record, ts in later])
    stream.add_elements([TimestampedValue(record, ts) for record, ts in earlier])
    stream.advance_watermark_to_infinity()
    with stream_pipeline() as pipeline:
        out = pipeline | stream | ProfileCounterparties()
        emitted = out | beam.Map(lambda r: (r.transaction_id, summary(r)[3]))
        expected = {f"a{i:02d}": float(i) for i in range(40)}
        expected |= {f"b{j:02d}": float(40 + j) for j in range(40)}

        def last_rows_count_every_earlier_inflow(pairs):
            final = {}
            for tid, inflows in pairs:  # corrections only add earlier inflows: the last is the max
                final[tid] = max(final.get(tid, -1.0), inflows)
            if final != expected:
                wrong = {t: (final.get(t), n) for t, n in expected.items() if final.get(t) != n}
                raise AssertionError(f"{len(wrong)} rows end wrong, e.g. {list(wrong.items())[:3]}")

        assert_that(emitted, last_rows_count_every_earlier_inflow)


def test_the_state_coder_keeps_what_waits_for_the_watermark():
    """Encoded after a bundle in which an earlier inflow arrived late, the history decoded for
    the SETTLE timer still knows which rows wait for their correction."""
    history = _History()
    for produced, r in enumerate((row("t2", 10, "a2"), row("t1", 5, "a1")), start=1):
        history.add(r, produced)
    history.gc_at, history.settle_at = 99, 2
    restored = CounterpartyHistoryCoder().decode(CounterpartyHistoryCoder().encode(history))
    assert (restored.gc_at, restored.settle_at, restored.settled) == (99, 2, history.settled)
    assert [summary(r) for r in restored.settle(2)] == [("t2", 0, SENDER, 1.0)]


def test_gc_waits_for_a_due_settle_so_no_correction_is_dropped_or_stamped_at_gc():
    """At the end of a bounded run the watermark jumps past both timers of a key at once; the
    step does not rely on the order a runner fires them in: should GC come first, it keeps the
    state and sets itself again after SETTLE, which emits the corrections; then GC drops it."""
    history = _History()
    for produced, r in enumerate((row("t2", 10, "a2"), row("t3", 20, "a3"), row("t1", 5, "a1")),
                                 start=1):
        history.add(r, produced)  # t1 arrives last, before the watermark: t2 and t3 wait
    history.settle_at = history.settle_time
    journal, legacy, gc, settle = Bag(JournalCoder()), Cell(), Timer(), Timer()
    journal.add(history)
    history.applied = 0
    fn = ProfileCounterpartiesFn(Duration(seconds=300))
    fn._on_gc(Timestamp(seconds=1000), journal, legacy, gc, settle)
    assert journal.values[0] is history
    assert gc.at == Timestamp(micros=1000 * 10**6 + 1)
    assert settle.at == Timestamp(micros=3)
    out = list(fn._on_settle(settle.at, journal, legacy, settle))
    assert [summary(r) for r in out] == [("t2", 0, SENDER, 1.0), ("t3", 0, SENDER, 2.0)]
    fn._on_gc(gc.at, journal, legacy, gc, settle)
    assert journal.values == []


def test_corrections_at_the_end_of_a_bounded_run_leave_at_their_settle_time_not_at_gc():
    """The FnApiRunner fires a key's GC and SETTLE timers at once at the end of a bounded run.
    The corrections carry SETTLE's timestamp (the newest inflow's), never GC's (``idle`` after
    the last inflow): a row stamped days ahead holds the processing-time timers it sets
    downstream (the validator's) until then, and the run fails with "time-pending bundles
    did not execute"."""
    with batch_pipeline() as pipeline:
        # Keyed as the step's input, one element each and t1 last (ProfileCounterparties
        # would sort the rows of one bundle into event-time order, and correct none).
        rows = pipeline | beam.Create([(row("t2", 10, "a2"), 10), (row("t3", 20, "a3"), 20),
                                       (row("t1", 5, "a1"), 30)])
        keyed = rows | beam.MapTuple(lambda r, ts: TimestampedValue(
            ("mule", ((ts * 10**6, r.to_tuple()),)), ts))
        out = keyed | beam.ParDo(ProfileCounterpartiesFn(Duration(seconds=7 * 86400)))
        emitted = out | beam.Map(
            lambda r, ts=beam.DoFn.TimestampParam: (summary(r)[0], summary(r)[3], ts.micros))
        last_input = 30_000_000

        def corrected_and_stamped_no_later_than_the_last_inflow(found):
            assert sorted((tid, n) for tid, n, _ in found) == [
                ("t1", 0.0), ("t2", 0.0), ("t2", 1.0), ("t3", 1.0), ("t3", 2.0)]
            late = [(tid, ts) for tid, _, ts in found if ts > last_input]
            assert not late, f"stamped after the last inflow (at GC?): {late}"

        assert_that(emitted, corrected_and_stamped_no_later_than_the_last_inflow)


STEP = 600 * 10**6  # µs between the productions of _inflows (the GC timer moves hourly)


def _process(fn, journal, legacy, gc, settle, record, produced):
    """The step's process() for the record produced at ``produced`` × STEP, in a bundle."""
    element = (record.transaction.counterparty_account_id,
               ((produced * STEP, record.to_tuple()),))
    out = list(fn.process(element, journal, legacy, gc, settle, GlobalWindow()))
    journal.commit()  # one bundle each
    return out


def _settle(fn, journal, legacy, settle, at):
    """The SETTLE timer fired at ``at`` × STEP, in a bundle."""
    out = list(fn._on_settle(Timestamp(micros=at * STEP), journal, legacy, settle))
    journal.commit()
    return out


def _inflows(n):
    """n inflows into one counterparty from five senders, read in a shuffled order (every
    third one after the next two): many wait for the watermark."""
    rows = [row(f"t{i:03d}", i, f"s{i % 5}") for i in range(n)]
    return [rows[j] for i in range(0, n, 3) for j in (i + 1, i + 2, i) if j < n]


def test_a_bundle_journals_its_change_not_the_whole_history():
    """Each inflow appends one change to the counterparty's journal; the journal starts again
    from a snapshot only once the changes outnumber max(COMPACT_AT, the logged inflows)."""
    fn, journal, legacy, gc, settle = (ProfileCounterpartiesFn(Duration(seconds=86400)),
                                       Bag(JournalCoder()), Cell(), Timer(), Timer())
    sizes = []
    for produced, record in enumerate(_inflows(30), start=1):
        _process(fn, journal, legacy, gc, settle, record, produced)
        sizes.append(len(journal.values))
    assert isinstance(journal.values[0], _History)
    assert all(isinstance(v, _Change) for v in journal.values[1:])
    assert sizes == list(range(1, 31))  # a snapshot, then one change per inflow
    for produced, record in enumerate(_inflows(200)[30:], start=31):
        _process(fn, journal, legacy, gc, settle, record, produced)
        if produced % 20 == 0:  # the watermark moves: settled inflows leave the log
            _settle(fn, journal, legacy, settle, produced)
        sizes.append(len(journal.values))
    history = journal.values[0]
    assert 1 < len(journal.values) <= max(COMPACT_AT, len(history.log)) + 1
    assert min(sizes[30:]) == 1  # compacted at least once


def test_a_history_read_back_from_the_runner_replays_its_changes_exactly():
    """What the runner holds (the journal encoded) decodes to the history the step holds in
    memory: the same log, features and timers, and the same rows from then on."""
    fn = ProfileCounterpartiesFn(Duration(seconds=86400))
    journal, legacy, gc, settle = Bag(JournalCoder()), Cell(), Timer(), Timer()
    inflows = _inflows(160)
    for produced, record in enumerate(inflows[:100], start=1):
        _process(fn, journal, legacy, gc, settle, record, produced)
    _settle(fn, journal, legacy, settle, 40)
    produced = 100
    while produced < 112 or len(journal.values) < 13:  # 12 changes after the snapshot: 2 h
        produced += 1
        _process(fn, journal, legacy, gc, settle, inflows[produced - 1], produced)
    stored = journal.stored()
    assert len(stored.values) > 1  # a snapshot and changes after it
    snapshot_gc_at = stored.values[0].gc_at
    live, (restored, replayed) = journal.values[0], _load(stored, Cell())
    assert restored is not live and replayed >= 12
    assert repr(restored.to_tuple()) == repr(live.to_tuple())  # NaN-aware
    assert (restored.gc_at, restored.settle_at) == (live.gc_at, live.settle_at)
    assert snapshot_gc_at < live.gc_at  # the GC timer moved after the snapshot
    later_live = [summary(r) for p, rec in enumerate(inflows[produced:], start=produced + 1)
                  for r in _process(fn, journal, legacy, gc, settle, rec, p)]
    later_restored = [summary(r) for p, rec in enumerate(inflows[produced:], start=produced + 1)
                      for r in _process(fn, stored, Cell(), Timer(), Timer(), rec, p)]
    assert later_restored == later_live
    settled_live = [summary(r) for r in _settle(fn, journal, legacy, settle, 200)]
    settled_restored = [summary(r) for r in _settle(fn, stored, Cell(), Timer(), 200)]
    assert settled_restored == settled_live and settled_live


def test_a_history_an_earlier_version_saved_whole_moves_into_the_journal():
    """A savepoint of the version that kept the whole history in one cell: the step reads it,
    moves it into the journal and clears the cell; its inflows still count."""
    old = _History()
    for produced, record in enumerate((row("t1", 0, "a1"), row("t2", 5, "a2")), start=1):
        old.add(record, produced)
    legacy = Cell(CounterpartyHistoryCoder().decode(CounterpartyHistoryCoder().encode(old)))
    fn, journal = ProfileCounterpartiesFn(Duration(seconds=86400)), Bag(JournalCoder())
    out = _process(fn, journal, legacy, Timer(), Timer(), row("t3", 10, "a3"), 3)
    assert [summary(r) for r in out] == [("t3", 0, SENDER, 2.0)]
    assert legacy.value is None
    assert isinstance(journal.values[0], _History)
    restored, _ = _load(journal.stored(), Cell())
    assert [e.row.transaction_id for e in restored.log] == ["t1", "t2", "t3"]


def test_a_history_from_the_earlier_cell_is_in_the_journal_as_soon_as_it_is_read():
    """Reading moves the earlier version's history into the journal: were the call to end
    without a change, the runner would still hold it, and the cell is cleared."""
    old = _History()
    old.add(row("t1", 0, "a1"), 1)
    legacy = Cell(CounterpartyHistoryCoder().decode(CounterpartyHistoryCoder().encode(old)))
    journal = Bag(JournalCoder())
    history, replayed = _load(journal, legacy)
    journal.commit()
    assert replayed == 0 and legacy.value is None
    assert journal.values == [history]
    restored, _ = _load(journal.stored(), Cell())
    assert [e.row.transaction_id for e in restored.log] == ["t1"]


def test_a_counterpartys_rows_of_one_bundle_are_one_change_each_and_read_back_the_same():
    """One call takes a bundle's rows of the counterparty together: each is a change in the
    journal (with the timers as the call left them), and the history read back is the one
    in memory; each row leaves at its own timestamp."""
    fn, journal, legacy, gc, settle = (ProfileCounterpartiesFn(Duration(seconds=86400)),
                                       Bag(JournalCoder()), Cell(), Timer(), Timer())
    _process(fn, journal, legacy, gc, settle, row("t0", 0, "a0"), 1)
    group = tuple((p * STEP, row(f"t{p}", p * 10, f"a{p}").to_tuple()) for p in (2, 3, 9))
    out = list(fn.process(("mule", group), journal, legacy, gc, settle, GlobalWindow()))
    journal.commit()
    assert [(o.value.transaction_id, o.timestamp.micros) for o in out] == [
        ("t2", 2 * STEP), ("t3", 3 * STEP), ("t9", 9 * STEP)]
    assert len(journal.values) == 4  # the snapshot, then one change per row
    live = journal.values[0]
    restored, replayed = _load(journal.stored(), Cell())
    assert replayed == 3
    assert repr(restored.to_tuple()) == repr(live.to_tuple())  # NaN-aware
    assert (restored.gc_at, restored.settle_at) == (live.gc_at, live.settle_at)
    assert live.gc_at == 9 * STEP + 86400 * 10**6  # moved by the group's newest row
