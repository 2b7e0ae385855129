"""A keyed step's state and timer parameters in memory, for calling its DoFn directly: what
Beam's state cache holds, and what the runner holds (encoded when a bundle ends)."""

from __future__ import annotations


class Cell:
    """A ReadModifyWriteState (the whole history, as an earlier version kept it)."""

    def __init__(self, value=None):
        self.value = value

    def read(self):
        return self.value

    def clear(self):
        self.value = None


class Bag:
    """A BagState: ``values`` as Beam's state cache holds them, and what the runner holds,
    each bundle's additions encoded with ``coder`` when it ends (``commit()``); ``stored()``
    decodes that, as a read after a restart would."""

    def __init__(self, coder=None):
        self.coder = coder
        self.values, self.encoded, self._pending, self._cleared = [], [], [], False

    def read(self):
        return list(self.values)

    def add(self, value):
        self.values.append(value)
        self._pending.append(value)

    def clear(self):
        self.values, self._pending, self._cleared = [], [], True

    def commit(self):
        if self._cleared:
            self.encoded = []
        self.encoded += [self.coder.encode(v) for v in self._pending]
        self._pending, self._cleared = [], False

    def stored(self):
        restored = Bag(self.coder)
        restored.values = [self.coder.decode(e) for e in self.encoded]
        restored.encoded = list(self.encoded)
        return restored


class Timer:
    """A timer parameter: remembers where it was set (None: never)."""

    def __init__(self):
        self.at = None

    def set(self, ts):
        self.at = ts
