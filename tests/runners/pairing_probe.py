"""A small pipeline that uses every Beam feature riskpipe's job relies on, with checkable output.

Each part stands for a part of the job (``pipeline/``):

- ``Impulse`` → ``Specs`` → ``Spread`` (Reshuffle) → ``Count``: the Kafka read (Impulse,
  partition discovery, Reshuffle, a splittable DoFn). ``Count`` reads the positions
  ``[0, SIZE)`` of an ``OffsetRange`` restriction, ``CHUNK`` per call, and checkpoints itself
  after each (``defer_remainder``, every other time with a resume delay, as a caught-up
  Kafka partition does); a ``ManualWatermarkEstimator`` follows the positions' timestamps
  (``BASE`` + position seconds); each call registers a bundle-finalization callback (the
  read's offset commit), which leaves a file ``finalized/<start>`` behind.
- ``Split`` (tagged outputs) → ``Merge`` (Flatten): the parsers' dead-letter and account
  outputs, merged again like the join's ``Union`` of its inputs.
- ``Key`` → ``State``: the join (a keyed shuffle into a stateful DoFn) with a bag and a
  read-modify-write state of a custom coder, event-time timers (``early`` during the input,
  ``end`` at the window's end, as the validator's and S3 writer's ``END``), a boolean state
  (the S3 writer's ``SCHEDULED``), a processing-time
  timer (``tick``, as their ``FLUSH``), a timer set and cleared (the join's ``expiry``),
  ``KeyParam`` in timer callbacks, and a main and a tagged output.
- Counters: ``probe_positions`` (one per position) and ``probe_reads`` (one per call of the
  splittable DoFn).

What the pipeline writes (JSON lines under ``out_dir``; the SDK harness runs in the test's
own process with the LOOPBACK environment): ``final-*.jsonl`` (per key, at ``end``: the
positions seen, their labels, the running total) and ``fired-*.jsonl`` (per timer firing:
which timer, the key, how many positions the key had seen then).
"""

from __future__ import annotations

import functools
import json
import struct
import uuid
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import BooleanCoder, Coder, TupleCoder, VarIntCoder
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils import proto_utils
from apache_beam.utils.timestamp import Duration, Timestamp

SIZE = 40  # positions read by the splittable DoFn
CHUNK = 4  # positions per call: SIZE / CHUNK calls, each checkpointing the rest
RESUME_DELAY_S = 1  # every other checkpoint asks to resume after this long
BASE = Timestamp(1_767_225_600)  # 2026-01-01T00:00:00Z, the event time of position 0
EARLY_AT = 5  # the `early` timer, BASE + 5 s: due while positions are still being read
KEYS = 2
NAMESPACE = "probe"


class Point(NamedTuple):
    label: str
    value: int


class PointCoder(Coder):
    """A coder of our own (the job's state uses its own coders, e.g. ``HistoryCoder``)."""

    def encode(self, point: Point) -> bytes:
        label = point.label.encode("utf-8")
        return struct.pack(">q", point.value) + label

    def decode(self, encoded: bytes) -> Point:
        (value,) = struct.unpack(">q", encoded[:8])
        return Point(encoded[8:].decode("utf-8"), value)

    def is_deterministic(self) -> bool:
        return True


class _Positions(RestrictionProvider):
    def initial_restriction(self, element) -> OffsetRange:
        _, size = element
        return OffsetRange(0, size)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction) -> int:
        return restriction.size()

    def split(self, element, restriction):
        yield restriction


_POSITIONS = beam.DoFn.RestrictionParam(_Positions())
_WATERMARK = beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())


def _touch(folder: str, name: str) -> None:
    path = Path(folder) / "finalized"
    path.mkdir(parents=True, exist_ok=True)
    (path / name).touch()


class _CountFn(beam.DoFn):
    """Emits positions ``CHUNK`` at a time, self-checkpointing after each call."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.reads = Metrics.counter(NAMESPACE, "probe_reads")

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element,
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=_POSITIONS,
        watermark=_WATERMARK,
    ):
        restriction = tracker.current_restriction()
        self.reads.inc()
        position = restriction.start
        end = min(restriction.start + CHUNK, restriction.stop)
        while position < end and tracker.try_claim(position):
            yield TimestampedValue(position, BASE + position)
            position += 1
        if position > restriction.start:
            watermark.set_watermark(BASE + (position - 1))
            finalizer.register(functools.partial(_touch, self.out_dir, str(restriction.start)))
        if position < restriction.stop:
            delayed = (restriction.start // CHUNK) % 2 == 1
            tracker.defer_remainder(Duration(seconds=RESUME_DELAY_S) if delayed else None)


class _SplitFn(beam.DoFn):
    def process(self, position: int):
        if position % 2:
            yield pvalue.TaggedOutput("odd", position)
        else:
            yield position


class _StatefulFn(beam.DoFn):
    """Keeps each key's positions and total; reports its timers (see the module docstring)."""

    SEEN = BagStateSpec("seen", TupleCoder((VarIntCoder(), PointCoder())))
    TOTAL = ReadModifyWriteStateSpec("total", PointCoder())
    STARTED = ReadModifyWriteStateSpec("started", BooleanCoder())
    EARLY = TimerSpec("early", TimeDomain.WATERMARK)
    END = TimerSpec("end", TimeDomain.WATERMARK)
    TICK = TimerSpec("tick", TimeDomain.REAL_TIME)
    CLEARED = TimerSpec("cleared", TimeDomain.WATERMARK)

    def __init__(self):
        self.positions = Metrics.counter(NAMESPACE, "probe_positions")

    def process(
        self,
        element,
        window=beam.DoFn.WindowParam,
        seen=beam.DoFn.StateParam(SEEN),
        total=beam.DoFn.StateParam(TOTAL),
        started=beam.DoFn.StateParam(STARTED),
        early=beam.DoFn.TimerParam(EARLY),
        end=beam.DoFn.TimerParam(END),
        tick=beam.DoFn.TimerParam(TICK),
        cleared=beam.DoFn.TimerParam(CLEARED),
    ):
        key, position = element
        self.positions.inc()
        seen.add((position, Point(f"key-{key}", position)))
        so_far = total.read()
        total.write(Point("total", (so_far.value if so_far else 0) + position))
        if not started.read():
            started.write(True)
            early.set(BASE + EARLY_AT)
            end.set(window.max_timestamp())
            tick.set(Timestamp.now() + Duration(seconds=0.5))
            cleared.set(BASE + 1)
            cleared.clear()

    def _fired(self, timer: str, key, seen):
        count = len(list(seen.read()))
        return pvalue.TaggedOutput("fired", {"timer": timer, "key": key, "seen": count})

    @on_timer(EARLY)
    def on_early(self, key=beam.DoFn.KeyParam, seen=beam.DoFn.StateParam(SEEN)):
        yield self._fired("early", key, seen)

    @on_timer(TICK)
    def on_tick(self, key=beam.DoFn.KeyParam, seen=beam.DoFn.StateParam(SEEN)):
        yield self._fired("tick", key, seen)

    @on_timer(CLEARED)
    def on_cleared(self, key=beam.DoFn.KeyParam, seen=beam.DoFn.StateParam(SEEN)):
        yield self._fired("cleared", key, seen)

    @on_timer(END)
    def on_end(
        self,
        key=beam.DoFn.KeyParam,
        seen=beam.DoFn.StateParam(SEEN),
        total=beam.DoFn.StateParam(TOTAL),
    ):
        yield self._fired("end", key, seen)
        items = list(seen.read())
        yield {
            "key": key,
            "positions": sorted(position for position, _ in items),
            "labels": sorted({point.label for _, point in items}),
            "total": total.read().value,
        }


class _WriteJsonFn(beam.DoFn):
    """Appends each element as a JSON line to a file of its bundle, ``<name>-<uuid>.jsonl``."""

    def __init__(self, out_dir: str, name: str):
        self.out_dir, self.name = out_dir, name

    def start_bundle(self):
        self.lines = []

    def process(self, element):
        self.lines.append(json.dumps(element, sort_keys=True))

    def finish_bundle(self):
        if self.lines:
            path = Path(self.out_dir) / f"{self.name}-{uuid.uuid4().hex}.jsonl"
            path.write_text("\n".join(self.lines) + "\n")


def build(p: beam.Pipeline, out_dir: str) -> None:
    """Adds the probe to ``p``; it writes under ``out_dir``."""
    positions = (
        p
        | "Impulse" >> beam.Impulse()
        | "Specs" >> beam.FlatMap(lambda _: [("positions", SIZE)])
        | "Spread" >> beam.Reshuffle()
        | "Count" >> beam.ParDo(_CountFn(out_dir)).with_output_types(int)
    )
    split = positions | "Split" >> beam.ParDo(_SplitFn()).with_outputs("odd", main="even")
    results = (
        (split.even, split.odd)
        | "Merge" >> beam.Flatten()
        | "Key" >> beam.Map(lambda position: (position % KEYS, position))
        | "State" >> beam.ParDo(_StatefulFn()).with_outputs("fired", main="final")
    )
    results.final | "WriteFinal" >> beam.ParDo(_WriteJsonFn(out_dir, "final"))
    results.fired | "WriteFired" >> beam.ParDo(_WriteJsonFn(out_dir, "fired"))


def read_lines(out_dir: Path, name: str) -> list[dict]:
    """Every JSON line the pipeline wrote under ``<name>-*.jsonl``."""
    return [
        json.loads(line)
        for path in sorted(out_dir.glob(f"{name}-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def features(proto: beam_runner_api_pb2.Pipeline) -> set[tuple]:
    """What a pipeline asks of its runner, as comparable facts: its requirements, the URNs of
    its primitive transforms (and whether the SDK or the runner executes them) and of its
    composites, its ParDos' state kinds, timer domains and capabilities (finalization,
    splittable, stable or time-sorted input, side inputs), its windowing (window functions,
    triggers) and its coders."""
    found: set[tuple] = {("requirement", urn) for urn in proto.requirements}
    for transform in proto.components.transforms.values():
        urn = transform.spec.urn
        if not transform.subtransforms:
            found.add(("primitive", urn, "sdk" if transform.environment_id else "runner"))
        elif urn:
            found.add(("composite", urn))
        if urn != common_urns.primitives.PAR_DO.urn:
            continue
        pardo = proto_utils.parse_Bytes(transform.spec.payload, beam_runner_api_pb2.ParDoPayload)
        found |= {("state", spec.WhichOneof("spec")) for spec in pardo.state_specs.values()}
        found |= {
            ("timer", beam_runner_api_pb2.TimeDomain.Enum.Name(spec.time_domain))
            for spec in pardo.timer_family_specs.values()
        }
        for flag, present in (
            ("finalization", pardo.requests_finalization),
            ("splittable", bool(pardo.restriction_coder_id)),
            ("stable_input", pardo.requires_stable_input),
            ("time_sorted_input", pardo.requires_time_sorted_input),
            ("side_inputs", bool(pardo.side_inputs)),
        ):
            if present:
                found.add(("pardo", flag))
    for strategy in proto.components.windowing_strategies.values():
        found.add(("window_fn", strategy.window_fn.urn))
        found.add(("trigger", strategy.trigger.WhichOneof("trigger")))
    found |= {("coder", coder.spec.urn) for coder in proto.components.coders.values()}
    return found


# Translated by the runner whatever environment the SDK gave them.
_RUNNER_URNS = (common_urns.primitives.FLATTEN.urn, common_urns.composites.RESHUFFLE.urn)


def runner_primitives(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    """The URNs the runner must translate itself: primitives with no SDK environment
    (Impulse, GroupByKey), Flatten, and Reshuffle, which a portable runner translates
    natively."""
    return {
        feature[1]
        for feature in features(proto)
        if feature[0] in ("primitive", "composite")
        and (feature[1] in _RUNNER_URNS or feature[-1] == "runner")
    }
