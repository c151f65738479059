"""``cleanup_expired_exports``: exports past EXPORT_TTL_H and killed runs' leftovers go, nothing else
does (local EXPORT_DIR with file times set exactly; the S3 sweep is in ``test_exports_s3.py``)."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

import pytest

from actors.cleanup import cleanup_expired_exports
from actors.cleanup.exports import JOB, leftover_age_s
from actors.cleanup.metrics import deleted_total
from scheduler.table import JOBS, parse_schedule
from tests.fixtures.notifications import MakeRuntime
from worker_app.config import load_settings
from worker_app.exports import LocalStorage
from worker_app.logging_setup import JsonFormatter

TTL_S = 24 * 3600
NAME = "payments-2026-12-01_2026-12-07.csv"


def put(root: Path, relative: str, age_s: float, now: float) -> Path:
    """A file (or, ending in ``/``, a directory) under ``root`` last modified ``age_s`` before ``now``."""
    path = root / relative
    if relative.endswith("/"):
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"id\r\n")
    os.utime(path, (now - age_s, now - age_s))
    return path


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def layout(root: Path, now: float) -> dict[str, str]:
    """Job directories of every kind; their ids by role."""
    jobs = {role: str(uuid.uuid4()) for role in ("expired", "at_ttl", "fresh", "killed", "running", "empty")}
    put(root, f"{jobs['expired']}/{NAME}", TTL_S + 1, now)
    put(root, f"{jobs['at_ttl']}/{NAME}", TTL_S, now)
    put(root, f"{jobs['fresh']}/{NAME}", TTL_S - 60, now)
    put(root, f"{jobs['fresh']}/notes.txt", 10 * TTL_S, now)  # not an export's name: never touched
    put(root, f"{jobs['killed']}/.{NAME}.x1y2z3.part", 3600, now)
    put(root, f"{jobs['running']}/.{NAME}.a1b2c3.part", 3599, now)
    put(root, "notes.txt", 10 * TTL_S, now)
    put(root, f"not-a-job/{NAME}", 10 * TTL_S, now)
    put(root, f"{jobs['fresh'].upper()}/{NAME}", 10 * TTL_S, now)
    for role in ("expired", "at_ttl", "fresh", "killed", "running"):
        os.utime(root / jobs[role], (now - 60, now - 60))
    put(root, f"{jobs['empty']}/", 3600, now)
    return jobs


def test_only_exports_past_their_ttl_and_old_leftovers_are_deleted(tmp_path: Path) -> None:
    # Given exports just past, exactly at and within EXPORT_TTL_H, temporary files of a killed and of a
    # running export, an empty job directory, and files that are no export's
    root, now = tmp_path / "exports", time.time()
    jobs = layout(root, now)
    # When the export storage is swept with a TTL of 24 h and leftovers of 1 h
    swept = LocalStorage(root).sweep(now, TTL_S, 3600)
    # Then the two expired exports and the killed run's file went (with their now empty directories)
    assert swept.counts() == {"expired": 2, "leftovers": 1}
    assert files(root) == sorted([
        f"{jobs['fresh']}/", f"{jobs['fresh']}/{NAME}", f"{jobs['fresh']}/notes.txt",
        f"{jobs['running']}/", f"{jobs['running']}/.{NAME}.a1b2c3.part",
        "notes.txt", "not-a-job/", f"not-a-job/{NAME}",
        f"{jobs['fresh'].upper()}/", f"{jobs['fresh'].upper()}/{NAME}",
    ])  # fmt: skip
    # And a second sweep finds nothing more to do
    assert LocalStorage(root).sweep(now, TTL_S, 3600).counts() == {"expired": 0, "leftovers": 0}


def test_a_missing_export_dir_is_nothing_to_sweep(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path / "never-created").sweep(time.time(), TTL_S, 3600).counts() == {
        "expired": 0, "leftovers": 0
    }  # fmt: skip


def test_the_job_deletes_with_its_settings_logs_its_line_and_counts(
    make_runtime: MakeRuntime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given exports kept 2 hours, one finished 3 hours ago and one an hour ago
    root, now = tmp_path / "exports", time.time()
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    put(root, f"{old}/{NAME}", 3 * 3600, now)
    put(root, f"{new}/{NAME}", 3600, now)
    make_runtime(EXPORT_DIR=str(root), EXPORT_TTL_H=2)
    before = deleted_total().labels(JOB)._value.get()
    # When the cleanup job runs
    with caplog.at_level(logging.INFO, logger="actors.cleanup"):
        summary = cleanup_expired_exports()
    # Then the old one is gone, the new one kept, and the run is summarised, logged and counted
    assert files(root) == [f"{new}/", f"{new}/{NAME}"]
    assert summary["job"] == JOB and summary["storage"] == "local"
    assert summary["counts"] == {"expired": 1, "leftovers": 0}
    [line] = [r for r in caplog.records if r.getMessage().startswith(f"cleanup job done: {JOB}")]
    assert json.loads(JsonFormatter().format(line))["counts"] == {"expired": 1, "leftovers": 0}
    assert deleted_total().labels(JOB)._value.get() == before + 1


def test_leftovers_wait_at_least_an_hour_and_twice_the_time_limit() -> None:
    assert leftover_age_s(load_settings({})) == 3600
    assert (
        leftover_age_s(load_settings({"TIME_LIMIT_MS": "2400000", "RABBITMQ_CONSUMER_TIMEOUT_MS": "3600000"}))
        == 4800
    )


def test_the_job_is_scheduled_hourly() -> None:
    [job] = [j for j in JOBS if j.name == JOB]
    assert job.schedule == "15 * * * *" and parse_schedule(job.schedule, job.name) is not None
