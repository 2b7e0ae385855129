"""Flink's scratch directories are emptied only when no Flink process runs (no services)."""

from __future__ import annotations

import os

from stack.flink import SCRATCH_DIRS, Flink


def fill(state) -> None:
    for sub in (*SCRATCH_DIRS, "checkpoints", "savepoints"):
        (state / sub).mkdir(parents=True)
        (state / sub / "a-file").write_bytes(b"x" * 1024)


def test_scratch_is_emptied_when_no_flink_process_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKPIPE_STATE_DIR", str(tmp_path))
    cluster = Flink()
    fill(cluster.state_dir)
    cluster._empty_scratch()
    left = sorted(p.name for p in cluster.state_dir.iterdir())
    assert left == ["checkpoints", "savepoints"]
    assert (cluster.state_dir / "checkpoints" / "a-file").exists()


def test_scratch_is_kept_while_a_flink_process_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKPIPE_STATE_DIR", str(tmp_path))
    cluster = Flink()
    fill(cluster.state_dir)
    cluster.taskmanagers[-1].pid_path.write_text(str(os.getpid()))  # a live process
    cluster._empty_scratch()
    for sub in SCRATCH_DIRS:
        assert (cluster.state_dir / sub / "a-file").exists()
