"""Detached processes: a stopped service leaves no process of its group behind."""

import os
import signal
import sys
from pathlib import Path

from stack import process


def test_stop_ends_the_whole_process_group(tmp_path):
    pid_path = tmp_path / "svc.pid"
    # A parent that ignores SIGTERM, with a child: only the group kill can end both.
    script = (
        "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen(['sleep', '300']); time.sleep(300)"
    )
    pid = process.start_detached(
        [sys.executable, "-c", script], log_path=tmp_path / "svc.log", pid_path=pid_path
    )
    assert process.read_pid(pid_path) == pid
    assert os.getpgid(pid) == pid

    assert process.stop(pid_path, sig=signal.SIGTERM, timeout=1.0) is True

    assert not process.is_alive(pid)
    assert not pid_path.exists()
    assert _live_members_of_group(pid) == []


def _live_members_of_group(pgid: int) -> list[int]:
    """Pids of the group, zombies excluded (an orphan is reaped by pid 1, maybe lazily)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_port_taken_waits_for_a_dying_listener_and_reports_a_live_one():
    import socket
    import threading

    from stack.process import port_taken

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert port_taken("127.0.0.1", port, grace_s=0.5)  # still listening after the grace
    threading.Timer(0.5, listener.close).start()  # a process that is still exiting
    assert not port_taken("127.0.0.1", port, grace_s=10)
