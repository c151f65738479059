"""Stale prometheus-client multiprocess files never inflate counters after a restart."""

from __future__ import annotations

import os
from pathlib import Path

from worker_app.middleware.metrics import run_directory, wipe_stale_runs


def test_directories_of_dead_runs_are_wiped_and_the_current_one_kept(tmp_path: Path) -> None:
    # Given the directory of this run, one of a dead run (pid reused with another start time) and one
    # of a process that no longer exists
    current = run_directory(tmp_path)
    current.mkdir()
    (current / "counter_1.db").write_text("live")
    reused_pid = tmp_path / f"run-{os.getppid()}-1"
    reused_pid.mkdir()
    gone = tmp_path / "run-999999999-5"
    gone.mkdir()

    # When a worker boots
    wipe_stale_runs(tmp_path, keep=current)

    # Then only the current run's files remain
    assert [p.name for p in tmp_path.iterdir()] == [current.name]
    assert (current / "counter_1.db").read_text() == "live"
