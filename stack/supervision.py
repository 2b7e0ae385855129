"""The supervisor's restart policy and its record, without processes.

The supervisor (``stack/supervisor.py``) restarts a supervised process that died: the first
time at once, then after :func:`restart_delay_s` (1, 2, 4, 8 s), and gives up after
:data:`RESTART_LIMIT` restarts within :data:`RESTART_WINDOW_S` (a process that dies that
often needs a person; ``stack up <service>`` gives it a new budget). What it did is kept in
``<state>/supervisor/restarts.json``, which ``stack status`` reads:

>>> Restarts(count=2, last="2026-12-01 14:03:05").describe()
'2 (last 14:03:05)'
>>> Restarts(count=5, gave_up=True, error="exited during startup").describe()
'5, gave up: exited during startup'
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stack import config

__all__ = [
    "RESTART_LIMIT",
    "RESTART_WINDOW_S",
    "Restarts",
    "combined",
    "load",
    "record_path",
    "restart_delay_s",
    "save",
]

# Restarts of one process within RESTART_WINDOW_S after which the supervisor gives up.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 300.0
# Cap of the delay before a restart.
MAX_RESTART_DELAY_S = 30.0


def restart_delay_s(recent: int) -> float:
    """Seconds to wait before restarting a process restarted ``recent`` times in the window.

    >>> [restart_delay_s(n) for n in range(6)]
    [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    """
    if recent < 0:
        raise ValueError(f"restart_delay_s: recent must be >= 0, got {recent}")
    return 0.0 if recent == 0 else min(MAX_RESTART_DELAY_S, 2.0 ** min(recent - 1, 16))


@dataclass(frozen=True)
class Restarts:
    """What the supervisor did to one process since it started watching."""

    count: int = 0
    last: str | None = None  # local time of the last restart, "YYYY-MM-DD HH:MM:SS"
    gave_up: bool = False
    error: str = ""  # why the last restart failed, if it did

    def describe(self) -> str:
        """One cell of the status table."""
        if self.gave_up:
            return f"{self.count}, gave up: {self.error}"
        text = f"{self.count} (last {self.last.split()[-1]})" if self.last else str(self.count)
        return f"{text}, last failed: {self.error}" if self.error else text


def combined(records: list[Restarts | None]) -> Restarts:
    """One service's record from those of its processes (e.g. Flink's TaskManager).

    >>> combined([Restarts(1, "2026-12-01 10:00:00"), None, Restarts(2, "2026-12-01 09:00:00")])
    Restarts(count=3, last='2026-12-01 10:00:00', gave_up=False, error='')
    """
    present = [r for r in records if r is not None]
    if not present:
        return Restarts()
    lasts = [r.last for r in present if r.last]
    return Restarts(
        count=sum(r.count for r in present),
        last=max(lasts) if lasts else None,
        gave_up=any(r.gave_up for r in present),
        error="; ".join(r.error for r in present if r.error),
    )


def record_path() -> Path:
    """``<state>/supervisor/restarts.json``."""
    return config.state_dir("supervisor") / "restarts.json"


def load() -> dict[str, Restarts]:
    """Process name -> its record; empty when the supervisor never ran."""
    try:
        raw = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return {unit: Restarts(**fields) for unit, fields in raw.items()}


def save(record: dict[str, Restarts]) -> None:
    """Replaces the record at once (readers never see half a file)."""
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {unit: dataclasses.asdict(r) for unit, r in record.items()}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        json.dump(data, tmp, indent=1, sort_keys=True)
    os.replace(tmp.name, path)
