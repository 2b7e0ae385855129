"""`make run`'s demo (``python -m tools.demo``) on the local stack: the job on Flink fed by the
simulator, and everything it started stopped when it is told to stop.

A ``kill`` or a closed terminal sends SIGTERM or SIGHUP, not Ctrl-C; the demo must stop the
job with a savepoint and stop the simulator then too, or both go on running unseen (the
simulator runs in a session of its own, for a week by default).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

from stack import flink_rest
from tests.e2e.conftest import REPO

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 240.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_demo_scores_rows_and_stops_the_job_and_the_simulator_on_sigterm(services):
    demo = subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--tps", "100"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read():
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    job_id = simulator_pid = None
    rows = 0
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        # Until a figures line shows rows the job wrote since the demo started.
        while rows == 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no rows within the time:\n" + "".join(output)
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, "the demo ended early:\n" + "".join(output)
            output.append(line)
            if match := re.search(r"\[demo\] job (\w+) is RUNNING", line):
                job_id = match.group(1)
            if match := re.search(r"simulator at .* \(pid (\d+),", line):
                simulator_pid = int(match.group(1))
            if match := re.search(r"table rows since start\s+(\d+)", line):
                rows = int(match.group(1))
        assert job_id and simulator_pid, "".join(output)
        assert _alive(simulator_pid)

        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=STOP_TIMEOUT_S)
        simulator_left = _alive(simulator_pid)
        job_state = flink_rest.job_state(job_id)
    finally:  # whatever the demo left, so that the next tests find a quiet cluster
        if demo.poll() is None:
            demo.kill()
        if simulator_pid and _alive(simulator_pid):
            os.kill(simulator_pid, signal.SIGKILL)
        if job_id and flink_rest.job_state(job_id) not in flink_rest.TERMINAL_STATES:
            flink_rest.cancel(job_id)
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    text = "".join(output)

    assert code == 0, text
    assert "[demo] SIGTERM: stopping" in text
    assert "[demo] simulator stopped" in text
    assert f"[demo] job {job_id} stopped with a savepoint" in text
    assert not simulator_left
    assert job_state in flink_rest.TERMINAL_STATES
