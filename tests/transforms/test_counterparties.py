"""Tests of the counterparty step, on the runners that execute it (TestStream for timing)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

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
    JournalCoder,
    ProfileCounterparties,
    ProfileCounterpartiesFn,
    _Change,
    _Shard,
    shard_of,
)
from pipeline.transforms.journal import COMPACT_AT
from pipeline.transforms.journal import load as _load

from .pipelines import batch_pipeline, run_and_count, stream_pipeline
from .state_doubles import Bag, Timer

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("args", [{"idle": 0}, {"idle": -1}, {"idle": timedelta(seconds=0)},
                                  {"shards": 0}, {"shards": 2.5}])
def test_bad_arguments_fail_at_construction(args):
    with pytest.raises(ValueError):
        ProfileCounterparties(**args)


def test_counterparties_that_share_a_shard_keep_their_own_features():
    """With one shard every counterparty shares a key: each still counts its own inflows,
    and a late inflow into one corrects only that one's later rows."""
    run_stream(
        [(row("m2", 10, "a2"), 10), (row("s1", 11, "a1", cp="shop"), 11),
         (row("m3", 20, "a3"), 20), (row("s2", 21, "a2", cp="shop"), 21),
         (row("m1", 5, "a1"), 30)],
        [("m2", 0, SENDER, 0.0), ("s1", 0, SENDER, 0.0), ("m3", 0, SENDER, 1.0),
         ("s2", 0, SENDER, 1.0), ("m1", 0, SENDER, 0.0),
         ("m2", 0, SENDER, 1.0), ("m3", 0, SENDER, 2.0)],
        shards=1,
    )


def test_a_counterpartys_shard_is_the_same_in_every_process():
    """A CRC-32 of the id, not Python's per-process string hash: every worker and every
    restart must route a counterparty to the shard that holds its history."""
    ids = [f"ACC-{i:06d}" for i in range(200)]
    here = [shard_of(cp, 64) for cp in ids]
    for seed in ("1", "2"):
        there = subprocess.run(
            [sys.executable, "-c", "import sys; from pipeline.transforms.counterparties import "
             "shard_of; print([shard_of(cp, 64) for cp in sys.argv[1:]])", *ids],
            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            check=True, cwd=ROOT,
        ).stdout
        assert there.strip() == repr(here)
    assert len(set(here)) > 48  # spread over the shards


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
            (SHARD, ((ts * 10**6, r.to_tuple()),)), ts))
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
SHARD = 7  # any key: the step keeps whatever shard it is given


def _process(fn, journal, gc, settle, record, produced):
    """The step's process() for the record produced at ``produced`` × STEP, in a bundle."""
    element = (SHARD, ((produced * STEP, record.to_tuple()),))
    out = list(fn.process(element, journal, gc, settle, GlobalWindow()))
    journal.commit()  # one bundle each
    return out


def _settle(fn, journal, settle, at):
    """The SETTLE timer fired at ``at`` × STEP, in a bundle."""
    out = list(fn._on_settle(Timestamp(micros=at * STEP), journal, settle))
    journal.commit()
    return out


def _inflows(n, counterparties=("mule",)):
    """n inflows from five senders into the counterparties in turn, read in a shuffled order
    (every third one after the next two): many wait for the watermark."""
    rows = [row(f"t{i:03d}", i, f"s{i % 5}", cp=counterparties[i % len(counterparties)])
            for i in range(n)]
    return [rows[j] for i in range(0, n, 3) for j in (i + 1, i + 2, i) if j < n]


def _same(restored: _Shard, live: _Shard) -> None:
    """The shard read back holds what the live one does (NaN-aware: compared as reprs)."""
    assert restored is not live
    assert repr(restored.snapshot()) == repr(live.snapshot())
    assert (restored.pending, restored.newest, restored.gc_at, restored.settle_at) == (
        live.pending, live.newest, live.gc_at, live.settle_at)


def test_the_state_coder_keeps_what_waits_for_the_watermark():
    """Encoded after a bundle in which an earlier inflow arrived late, the shard decoded for
    the SETTLE timer still knows which rows wait for their correction."""
    shard = _Shard()
    for produced, r in enumerate((row("t2", 10, "a2"), row("t1", 5, "a1")), start=1):
        shard.add(r, produced)
    shard.gc_at, shard.settle_at, shard.applied = 99, 2, 0
    coder = JournalCoder()
    restored = coder.decode(coder.encode(shard))
    assert (restored.gc_at, restored.settle_at, restored.pending) == (99, 2, {"mule"})
    corrections, _ = restored.settle(2, idle=10**12)
    assert [summary(r) for r in corrections] == [("t2", 0, SENDER, 1.0)]
    assert restored.pending == set()


def test_gc_waits_for_a_due_settle_so_no_correction_is_dropped_or_stamped_at_gc():
    """At the end of a bounded run the watermark jumps past both timers of a key at once; the
    step does not rely on the order a runner fires them in: should GC come first, it keeps the
    state and sets itself again after SETTLE, which emits the corrections; then GC drops it."""
    shard = _Shard()
    for produced, r in enumerate((row("t2", 10, "a2"), row("t3", 20, "a3"), row("t1", 5, "a1")),
                                 start=1):
        shard.add(r, produced)  # t1 arrives last, before the watermark: t2 and t3 wait
    shard.settle_at = shard.settle_time
    journal, gc, settle = Bag(JournalCoder()), Timer(), Timer()
    journal.add(shard)
    shard.applied = 0
    fn = ProfileCounterpartiesFn(Duration(seconds=300))
    fn._on_gc(Timestamp(seconds=1000), journal, gc, settle)
    assert journal.values[0] is shard
    assert gc.at == Timestamp(micros=1000 * 10**6 + 1)
    assert settle.at == Timestamp(micros=3)
    out = list(fn._on_settle(settle.at, journal, settle))
    assert [summary(r) for r in out] == [("t2", 0, SENDER, 1.0), ("t3", 0, SENDER, 2.0)]
    fn._on_gc(gc.at, journal, gc, settle)
    assert journal.values == []


def test_an_idle_counterparty_is_dropped_while_its_shard_stays_busy():
    """A shard's GC timer moves with its newest inflow; a counterparty idle for ``idle`` is
    dropped when either timer fires after its deadline, the busy ones kept."""
    fn = ProfileCounterpartiesFn(Duration(seconds=3 * STEP // 10**6))  # idle: 3 steps
    journal, gc, settle = Bag(JournalCoder()), Timer(), Timer()
    _process(fn, journal, gc, settle, row("q1", 0, "a1", cp="quiet"), 1)
    for p in range(2, 8):
        _process(fn, journal, gc, settle, row(f"b{p}", p * 10, "a2", cp="busy"), p)
    _settle(fn, journal, settle, 7)
    shard = journal.values[0]
    assert set(shard.histories) == {"busy"}  # quiet's last inflow at 1, idle from 4 on
    restored, _ = _load(journal.stored())
    assert set(restored.histories) == {"busy"}  # the drop is in the journal too
    # A new inflow into the dropped counterparty starts it afresh.
    out = _process(fn, journal, gc, settle, row("q2", 80, "a1", cp="quiet"), 8)
    assert [summary(r) for r in out] == [("q2", 0, SENDER, 0.0)]


def test_a_bundle_journals_its_change_not_the_whole_history():
    """Each inflow appends one change to the shard's journal; the journal starts again from
    a snapshot only once the changes outnumber max(COMPACT_AT, the inflows the snapshot held)."""
    fn, journal, gc, settle = (ProfileCounterpartiesFn(Duration(seconds=86400)),
                               Bag(JournalCoder()), Timer(), Timer())
    sizes = []
    for produced, record in enumerate(_inflows(30, ("mule", "shop")), start=1):
        _process(fn, journal, gc, settle, record, produced)
        sizes.append(len(journal.values))
    assert isinstance(journal.values[0], _Shard)
    assert all(isinstance(v, _Change) for v in journal.values[1:])
    assert sizes == list(range(1, 31))  # a snapshot, then one change per inflow
    for produced, record in enumerate(_inflows(200, ("mule", "shop"))[30:], start=31):
        _process(fn, journal, gc, settle, record, produced)
        if produced % 20 == 0:  # the watermark moves: settled inflows leave the logs
            _settle(fn, journal, settle, produced)
        sizes.append(len(journal.values))
    shard = journal.values[0]
    assert 1 < len(journal.values) <= max(COMPACT_AT, shard.size) + 1
    assert min(sizes[30:]) == 1  # compacted at least once


def test_a_shard_read_back_from_the_runner_replays_its_changes_exactly():
    """What the runner holds (the journal encoded) decodes to the shard the step holds in
    memory: the same logs, features and timers, and the same rows from then on."""
    fn = ProfileCounterpartiesFn(Duration(seconds=86400))
    journal, gc, settle = Bag(JournalCoder()), Timer(), Timer()
    inflows = _inflows(160, ("mule", "shop"))
    for produced, record in enumerate(inflows[:100], start=1):
        _process(fn, journal, gc, settle, record, produced)
    _settle(fn, journal, settle, 40)
    produced = 100
    while produced < 112 or len(journal.values) < 13:  # 12 changes after the snapshot: 2 h
        produced += 1
        _process(fn, journal, gc, settle, inflows[produced - 1], produced)
    stored = journal.stored()
    assert len(stored.values) > 1  # a snapshot and changes after it
    snapshot_gc_at = stored.values[0].gc_at
    live, (restored, replayed) = journal.values[0], _load(stored)
    assert replayed >= 12
    _same(restored, live)
    assert snapshot_gc_at < live.gc_at  # the GC timer moved after the snapshot
    later_live = [summary(r) for p, rec in enumerate(inflows[produced:], start=produced + 1)
                  for r in _process(fn, journal, gc, settle, rec, p)]
    later_restored = [summary(r) for p, rec in enumerate(inflows[produced:], start=produced + 1)
                      for r in _process(fn, stored, Timer(), Timer(), rec, p)]
    assert later_restored == later_live
    settled_live = [summary(r) for r in _settle(fn, journal, settle, 200)]
    settled_restored = [summary(r) for r in _settle(fn, stored, Timer(), 200)]
    assert settled_restored == settled_live and settled_live


def test_a_shards_rows_of_one_bundle_are_one_change_each_and_read_back_the_same():
    """One call takes a bundle's rows of the shard together: each is a change in the journal
    (with the timers as the call left them), and the shard read back is the one in memory;
    each row leaves at its own timestamp."""
    fn, journal, gc, settle = (ProfileCounterpartiesFn(Duration(seconds=86400)),
                               Bag(JournalCoder()), Timer(), Timer())
    _process(fn, journal, gc, settle, row("t0", 0, "a0"), 1)
    group = tuple((p * STEP, row(f"t{p}", p * 10, f"a{p}", cp=cp).to_tuple())
                  for p, cp in ((2, "mule"), (3, "shop"), (9, "mule")))
    out = list(fn.process((SHARD, group), journal, gc, settle, GlobalWindow()))
    journal.commit()
    assert [(o.value.transaction_id, summary(o.value)[3], o.timestamp.micros) for o in out] == [
        ("t2", 1.0, 2 * STEP), ("t3", 0.0, 3 * STEP), ("t9", 2.0, 9 * STEP)]
    assert len(journal.values) == 4  # the snapshot, then one change per row
    live = journal.values[0]
    restored, replayed = _load(journal.stored())
    assert replayed == 3
    _same(restored, live)
    assert live.gc_at == 9 * STEP + 86400 * 10**6  # moved by the group's newest row
