"""Why a Prism run makes no dynamic split (``PRISM_NO_SPLITS`` in ``pipeline.runners.flags``).

Prism splits a bundle that has made no progress between two of its progress requests, in
any stage. Splitting a stateful step's bundle, it hands the elements after the split point
back to be read again and releases their keys, though the first part of the bundle still
holds some of them: the next bundle then reads such a key's state before the first part
commits it, and the key's updates from one of the two are lost.

This shows it on Beam's runner alone: a stateful DoFn counts each key's elements in state
(200 keys, 10 elements each, spread over the bundle), and one element takes a second, so
that Prism splits. With Prism's defaults some key counts 1, 1, 2, 2, ... (7 runs of 7 on
2 cores, 2026-12-05); with riskpipe's flags Prism makes no split and every key counts
1 to 10. If a Beam upgrade makes the first test fail, the flag can go.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipeline.runners.flags import PRISM_NO_SPLITS, with_runner_defaults
from stack.prism import prism_binary

pytestmark = pytest.mark.services  # the Prism binary is built by the stack

KEYS = 200
PER_KEY = 10
STALL_S = 1.0
# Runs of Beam's defaults before concluding that Prism no longer loses an update.
ATTEMPTS = 3

# The pipeline's SDK harness runs in this process (LOOPBACK): its output lands here.
_seen: dict[str, list[int]] = defaultdict(list)
_lock = threading.Lock()


class _CountPerKey(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", VarIntCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        key, index = element
        if index == KEYS * PER_KEY // 2:
            time.sleep(STALL_S)  # no progress for a while: Prism splits the bundle
        count = (seen.read() or 0) + 1
        seen.write(count)
        yield key, count


def _record(element):
    key, count = element
    with _lock:
        _seen[key].append(count)


def _counts(flags: list[str]) -> dict[str, list[int]]:
    """Each key's counts, in order, from one run of the counting pipeline with ``flags``."""
    _seen.clear()
    elements = [(f"k{i % KEYS}", i) for i in range(KEYS * PER_KEY)]
    with beam.Pipeline(options=PipelineOptions(flags)) as p:
        (
            p
            | beam.Create(elements, reshuffle=False)
            | beam.ParDo(_CountPerKey())
            | beam.Map(_record)
        )
    return {key: sorted(counts) for key, counts in _seen.items()}


def _lost(counts: dict[str, list[int]]) -> dict[str, list[int]]:
    expected = list(range(1, PER_KEY + 1))
    return {key: got for key, got in counts.items() if got != expected}


def test_with_beams_defaults_prism_loses_updates_of_a_key_it_split():
    flags = ["--runner=PrismRunner", f"--prism_location={prism_binary()}"]
    for _ in range(ATTEMPTS):
        counts = _counts(flags)
        assert len(counts) == KEYS
        if _lost(counts):
            return
    pytest.fail(f"Prism lost no update in {ATTEMPTS} runs: {PRISM_NO_SPLITS} may be dropped")


def test_with_riskpipes_flags_prism_keeps_every_update():
    prism_binary()  # built before the flags look for it
    flags = [
        flag for flag in with_runner_defaults(["--runner=PrismRunner"], "prism-splits")
        if flag.startswith(("--runner", "--prism_location", "--experiments"))
    ]
    assert f"--experiments={PRISM_NO_SPLITS}" in flags
    counts = _counts(flags)
    assert len(counts) == KEYS
    assert not _lost(counts), f"updates lost: {list(_lost(counts).items())[:3]}"
