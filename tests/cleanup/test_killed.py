"""``cleanup_audit_logs`` with the archive on, in a process of its own (the actor's function, as a
worker runs it) SIGKILLed mid-run: nothing that was not due is lost, the next run completes the job,
and every deleted row is in the archive exactly once (count and checksum against the rows before).

The first case kills the process at the worst moment on purpose: it SIGKILLs itself right after its
fifth batch is archived and fsynced, the batch's ``DELETE`` done but not committed. The second
blocks a batch's ``DELETE`` behind ``LOCK TABLE audit_logs IN SHARE MODE`` and kills the process
while it waits. The third kills it three times at whatever point it has reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from actors.cleanup.archive import JsonlArchive
from tests.cleanup.conftest import audit_logs, ids
from tests.cleanup.test_archive import archived_lines, checksum
from tests.fixtures.worker import ROOT, wait_for

RETENTION_DAYS = 90
RUN = "import worker_app\nfrom actors.cleanup import cleanup_audit_logs\nprint(cleanup_audit_logs())\n"
#: The job, SIGKILLing its own process once 200 rows are committed and the next batch is archived.
RUN_KILLED_AFTER_ARCHIVING = """
import os, signal
import worker_app
from actors.cleanup import archive, cleanup_audit_logs
write = archive.JsonlArchive.write
def write_then_die(self, rows):
    write(self, rows)
    if self.rows >= 200:
        os.kill(os.getpid(), signal.SIGKILL)
archive.JsonlArchive.write = write_then_die
cleanup_audit_logs()
"""


def start(tmp_path: Path, name: str, code: str = RUN, **env: str) -> subprocess.Popen[bytes]:
    """The job in a process of its own, its output in ``tmp_path/name.log``."""
    settings = {
        "CLEANUP_AUDIT_ARCHIVE": f"jsonl:{tmp_path / 'archive'}", "CLEANUP_AUDIT_RETENTION_DAYS": "90",
        "CLEANUP_LOCK_TIMEOUT_MS": "60000", "CLEANUP_STATEMENT_TIMEOUT_MS": "60000", **env,
    }  # fmt: skip
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **settings},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def seed(engine: sa.Engine) -> tuple[list[str], set[int], datetime]:
    """3,000 rows past retention over five days, 100 inside it; the due rows as the archive renders
    them, the others' ids and the retention bound (with a minute to spare for the runs)."""
    now = datetime.now(UTC)
    audit_logs(engine, [now - timedelta(days=RETENTION_DAYS + 5, seconds=-n * 144) for n in range(3000)])
    kept = audit_logs(
        engine, [now - timedelta(days=RETENTION_DAYS, minutes=-1, seconds=-n) for n in range(100)]
    )
    bound = now - timedelta(days=RETENTION_DAYS)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        query = "SELECT row_to_json(t)::text FROM audit_logs AS t WHERE created_at < :bound"
        due = list(conn.execute(sa.text(query), {"bound": bound}).scalars())
    return due, set(kept), bound


def left_due(engine: sa.Engine, bound: datetime) -> int:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM audit_logs WHERE created_at < :bound"
        return int(conn.execute(sa.text(query), {"bound": bound}).scalar_one())


def blocked_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = ("SELECT count(*) FROM pg_stat_activity "
                   "WHERE wait_event_type = 'Lock' AND datname = current_database()")  # fmt: skip
        return bool(conn.execute(sa.text(waiting)).scalar_one())


def journaled(tmp_path: Path) -> set[int]:
    """The ids of the batch the archive's journal names."""
    return {int(k) for k in JsonlArchive(tmp_path / "archive", "audit_logs").pending().get("keys", [])}


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def finish(tmp_path: Path, engine: sa.Engine, due: list[str], kept: set[int]) -> None:
    """A last run completes the job: only the rows inside retention are left, all others archived once."""
    last = start(tmp_path, "last")
    assert last.wait(timeout=90) == 0, (tmp_path / "last.log").read_text()
    assert "'stopped': None" in (tmp_path / "last.log").read_text()
    assert ids(engine, "audit_logs") == kept
    assert checksum(archived_lines(tmp_path / "archive")) == checksum(due)
    assert not journaled(tmp_path) & ids(engine, "audit_logs")


def test_a_run_killed_after_archiving_a_batch_before_committing_it_loses_and_repeats_nothing(
    tmp_path: Path, clean_tables: sa.Engine
) -> None:
    # Given 3,000 due rows
    due, kept, bound = seed(clean_tables)

    # When a run in batches of 50 is SIGKILLed with its fifth batch archived, deleted, not committed
    run = start(tmp_path, "killed", RUN_KILLED_AFTER_ARCHIVING, CLEANUP_BATCH_SIZE="50")
    assert run.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()

    # Then that batch is in the archive and still in the table; nothing else was touched
    in_flight = journaled(tmp_path)
    assert len(in_flight) == 50 and in_flight <= ids(clean_tables, "audit_logs")
    assert left_due(clean_tables, bound) == 3000 - 200
    assert len(archived_lines(tmp_path / "archive")) == 200 + 50
    assert kept <= ids(clean_tables, "audit_logs")

    # And the next run completes the job with every deleted row archived exactly once
    finish(tmp_path, clean_tables, due, kept)


def test_a_run_killed_while_its_delete_waits_for_a_lock_loses_and_repeats_nothing(
    tmp_path: Path, clean_tables: sa.Engine
) -> None:
    # Given 3,000 due rows and a run deleting them in batches of 50, a little apart
    due, kept, bound = seed(clean_tables)
    run = start(tmp_path, "killed", CLEANUP_BATCH_SIZE="50", CLEANUP_BATCH_PAUSE_MS="20")
    wait_for(lambda: left_due(clean_tables, bound) <= 2800, 60, "a few batches deleted")

    # When a batch's DELETE waits behind a table lock, and the process is killed then
    with clean_tables.connect() as holder:
        holder.execute(sa.text("LOCK TABLE audit_logs IN SHARE MODE"))
        wait_for(lambda: blocked_on_a_lock(clean_tables), 30, "the batch's DELETE blocked")
        kill(run)
        holder.rollback()

    # Then what was committed is archived once; nothing inside retention was touched
    left = left_due(clean_tables, bound)
    assert 0 < left <= 2800
    assert len(archived_lines(tmp_path / "archive")) == 3000 - left
    assert kept <= ids(clean_tables, "audit_logs")

    # And the next run completes the job with every deleted row archived exactly once
    finish(tmp_path, clean_tables, due, kept)


def test_a_run_killed_three_times_at_any_point_is_completed_by_the_next(
    tmp_path: Path, clean_tables: sa.Engine
) -> None:
    # Given 3,000 due rows
    due, kept, bound = seed(clean_tables)

    # When three runs are killed, each once it has deleted another 400 rows or so
    for attempt in range(3):
        run = start(tmp_path, f"killed-{attempt}", CLEANUP_BATCH_SIZE="5")
        goal = 3000 - 400 * (attempt + 1)

        def got_there(proc: subprocess.Popen[bytes] = run, goal: int = goal) -> bool:
            return left_due(clean_tables, bound) <= goal or proc.poll() is not None

        wait_for(got_there, 60, f"run {attempt} to delete a few batches", poll_s=0.01)
        kill(run)
        assert kept <= ids(clean_tables, "audit_logs")
    assert left_due(clean_tables, bound) > 0, "the runs ended before they were killed: nothing tested"

    # Then the next run completes the job: nothing lost, nothing archived twice
    finish(tmp_path, clean_tables, due, kept)
