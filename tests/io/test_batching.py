"""The shared sink base: batches by size and age, written in order, a bundle waits for all."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.io.batching import BatchingWriteFn


class RecordingSink(BatchingWriteFn):
    """Keeps every batch it is asked to write; the first write can be held back."""

    SINK = "test"

    def __init__(self, batch_size=3, max_wait_s=60.0, fail_with=None, quiet_s=60.0):
        super().__init__(batch_size, max_wait_s, quiet_s)
        self.batches: list[list] = []
        self.release_first = threading.Event()
        self.release_first.set()
        self.fail_with = fail_with

    def open_client(self):
        return object()

    def write_batch(self, client, batch):
        if not self.batches:
            self.release_first.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(list(batch))


def run_bundle(sink, elements):
    sink.setup()
    sink.start_bundle()
    for element in elements:
        sink.process(element)
    sink.finish_bundle()
    sink.teardown()


def test_batches_by_size_in_order_and_the_bundle_waits_for_all():
    sink = RecordingSink(batch_size=3)
    sink.release_first.clear()
    # The first batch is held back while later ones queue: order still holds.
    threading.Timer(0.2, sink.release_first.set).start()
    run_bundle(sink, range(7))
    assert sink.batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_leaves_on_age_without_another_element_or_the_bundle_end():
    """A quiet stream's last rows are written after max_wait_s, not at the bundle's end."""
    sink = RecordingSink(batch_size=1000, max_wait_s=0.05)
    sink.setup()
    sink.start_bundle()
    try:
        sink.process("a")
        sink.process("b")
        deadline = time.monotonic() + 5
        while not sink.batches and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sink.batches == [["a", "b"]]
        sink.process("c")
        sink.finish_bundle()
        assert sink.batches == [["a", "b"], ["c"]]
    finally:
        sink.teardown()


def test_a_burst_leaves_once_no_element_has_come_for_quiet_s():
    """A burst's rows are written when it ends (no element for quiet_s), long before
    max_wait_s; while elements keep coming, the batch keeps filling."""
    sink = RecordingSink(batch_size=1000, max_wait_s=30.0, quiet_s=1.0)
    sink.setup()
    sink.start_bundle()
    try:
        for element in range(10):  # one every 20 ms: never quiet for a second
            sink.process(element)
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while not sink.batches and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sink.batches == [list(range(10))]  # within 5 s: not max_wait_s
    finally:
        sink.finish_bundle()
        sink.teardown()


def test_a_failed_write_fails_the_bundle():
    sink = RecordingSink(batch_size=2, fail_with=ValueError("constraint violated"))
    with pytest.raises(ValueError, match="constraint violated"):
        run_bundle(sink, range(5))


@pytest.mark.parametrize("args", [{"batch_size": 0}, {"max_wait_s": 0}, {"quiet_s": 0}])
def test_bad_arguments_fail_at_construction(args):
    with pytest.raises(ValueError):
        RecordingSink(**args)
