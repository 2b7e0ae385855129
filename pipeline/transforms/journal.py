"""A keyed step's state as a journal: a snapshot of its history, then the changes made since.

The counterparty step keeps the histories of a shard of counterparties (their recent
inflows). Kept in one ReadModifyWriteState, the whole value is encoded and written back after
every bundle that touches the key; while a backlog is read the watermark lags, the histories
hold every inflow it has not passed, and those writes cost more than the step's own work
(``docs/flink-notes.md``, "The fraud model's cost on Flink"). The account step keeps its
history in one cell still: its journal, tried, moved no rate on Flink and cost the
FnApiRunner a fifth of its rate (the same section).

Here the state is a BagState. Its first value is the history (the *snapshot*), each later
one a *change* the step made to it: a record taken, the watermark settled at, a timer moved.
A bundle appends only its changes, so what it writes is about the size of its records.
Once the changes after the snapshot outnumber ``max(COMPACT_AT, the history's
journal_size())`` (the records the snapshot held) the journal starts again from a snapshot,
so replaying the changes never costs more than reading a snapshot.

Reading is cheap on the common path: Beam's state cache keeps the bag's decoded values, the
first one the history the step changes in place, and the history counts the changes after
it that it already holds (``applied``), so a read skips them. Read back from the runner
(after a restart, or an eviction from the cache), the snapshot says how many changes it held
when it was written and the later ones are made again (:meth:`Change.apply`). Replaying is
exact because each history is a function of its inputs in the order they were taken.

A step defines its history type (a :class:`Journaled` with ``snapshot()``,
``from_snapshot()`` and ``journal_size()``) and its :class:`Change` type (``apply``), and
reads and writes with :func:`load` and :func:`record`.
"""

from __future__ import annotations

import itertools

from apache_beam.coders import Coder, FastPrimitivesCoder
from apache_beam.runners.worker.statecache import CacheAware

__all__ = ["COMPACT_AT", "Change", "JournalCoder", "Journaled", "load", "record"]

COMPACT_AT = 64  # a snapshot once the changes after it outnumber this and the logged records
SNAPSHOT = 0  # the tag of a snapshot's encoding (a change's first value is its kind, > 0)


class Journaled(CacheAware):
    """A history kept in a journal. ``applied``: how many of the journal's changes after its
    snapshot it holds (-1: it is not in the journal yet). Beam's state cache weighs it by
    ``__sizeof__``, not by walking it.
    """

    __slots__ = ()
    applied: int

    def get_referents_for_cache(self) -> list:
        return []

    def journal_size(self) -> int:
        """How many records its last snapshot held: the changes after it may grow to that
        many (or COMPACT_AT) before the journal starts again from a snapshot."""
        raise NotImplementedError

    def snapshotted(self) -> None:
        """The journal starts again from this history as its snapshot (it may remember how
        many records that holds)."""

    def snapshot(self) -> tuple:
        """The history (with ``applied``) as a tuple of primitives."""
        raise NotImplementedError

    @classmethod
    def from_snapshot(cls, values: tuple) -> "Journaled":
        raise NotImplementedError


class Change(CacheAware):
    """One change in a journal: ``values``, a tuple of primitives whose first is its kind
    (> 0). ``RECORDS``: the kinds that carry a record (weighed as one by the state cache)."""

    __slots__ = ("values",)
    RECORDS: frozenset = frozenset()

    def __init__(self, values: tuple):
        self.values = values

    def get_referents_for_cache(self) -> list:
        return []

    def __sizeof__(self) -> int:
        return 1200 if self.values[0] in self.RECORDS else 96

    def apply(self, history) -> None:
        """Makes the change again on ``history`` (its outputs were emitted when it was made)."""
        raise NotImplementedError


class JournalCoder(Coder):
    """Encodes a journal's values, the history (its snapshot) or a change, as tagged tuples of
    primitives (no pickling)."""

    _TUPLES = FastPrimitivesCoder()

    def __init__(self, history_type: type[Journaled], change_type: type[Change]):
        self._history_type = history_type
        self._change_type = change_type

    def encode(self, value) -> bytes:
        if isinstance(value, Change):
            return self._TUPLES.encode(value.values)
        return self._TUPLES.encode((SNAPSHOT, *value.snapshot()))

    def decode(self, encoded: bytes):
        values = self._TUPLES.decode(encoded)
        if values[0] == SNAPSHOT:
            return self._history_type.from_snapshot(values[1:])
        return self._change_type(values)

    def is_deterministic(self) -> bool:
        return True

    def __eq__(self, other) -> bool:
        return (type(self) is type(other) and self._history_type is other._history_type
                and self._change_type is other._change_type)

    def __hash__(self) -> int:
        return hash((type(self), self._history_type, self._change_type))


def load(journal) -> tuple[Journaled | None, int]:
    """The history in ``journal`` (None: it has none) with the changes after what it holds
    made again, and how many were."""
    values = iter(journal.read())
    history = next(values, None)
    if history is None:
        return None, 0
    replayed = 0
    for change in itertools.islice(values, history.applied, None):
        change.apply(history)
        history.applied += 1
        replayed += 1
    return history, replayed


def record(journal, history: Journaled, change: Change) -> bool:
    """Appends a change just made to ``history`` to its journal, or a snapshot in its place
    (module docstring); True for a snapshot."""
    if 0 <= history.applied < max(COMPACT_AT, history.journal_size()):
        history.applied += 1
        journal.add(change)
        return False
    journal.clear()
    history.applied = 0  # the changes recorded after this in the bundle follow it
    history.snapshotted()
    journal.add(history)
    return True
