"""A bundle's elements per key, handed on together at the bundle's end.

Usage (a subclass says what the key is, and may shape an entry and a group)::

    class _GroupByShardFn(PerKeyOfBundle):
        def key(self, row):
            return shard_of(row.transaction_id)

    grouped = rows | beam.ParDo(_GroupByShardFn())
    # (shard, ((timestamp_micros, row.to_tuple()), ...)), one element per shard and bundle

A stateful step after it then runs once per key and bundle rather than once per element:
Beam's work per call of a stateful step (the shuffle's decoding, its state and timer
parameters, a state read and write) is a large part of its cost (docs/flink-notes.md). Each
group is timestamped with the earliest of its elements and keeps its window; the job runs in
the global window, so nothing handed on at a bundle's end is dropped as late. The entries
are tuples of primitives, which the shuffle encodes without pickling.

The step takes each element as Beam's ``WindowedValue`` and builds its outputs from
microseconds: asking Beam for an element's timestamp and window as separate parameters
costs about 3 µs per element, most of what grouping costs (docs/flink-notes.md).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.utils import windowed_value

__all__ = ["PerKeyOfBundle"]


class PerKeyOfBundle(beam.DoFn):
    """Collects ``entry(element, micros)`` per ``(key(element), window)`` and emits
    ``(key, group(entries))`` per key at the bundle's end (module docstring)."""

    def key(self, element):
        raise NotImplementedError

    def entry(self, element, micros: int):
        """What the group keeps of one element: ``(micros, element.to_tuple())``."""
        return micros, element.to_tuple()

    def group(self, entries: list):
        """The value handed on for a key: its entries in the order they came."""
        return tuple(entries)

    def start_bundle(self):
        self._groups: dict = {}

    def process(self, element, windowed=beam.DoFn.WindowedValueParam):
        micros = windowed.timestamp_micros
        key = self.key(element)
        entry = self.entry(element, micros)
        for window in windowed.windows:
            group = self._groups.get(key_in_window := (key, window))
            if group is None:
                self._groups[key_in_window] = group = [micros, []]  # [earliest, entries]
            elif micros < group[0]:
                group[0] = micros
            group[1].append(entry)

    def finish_bundle(self):
        groups, self._groups = self._groups, {}
        for (key, window), (earliest, entries) in groups.items():
            yield windowed_value.create((key, self.group(entries)), earliest, (window,))
