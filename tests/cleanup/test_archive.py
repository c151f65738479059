"""The audit-log archive (CLEANUP_AUDIT_ARCHIVE=jsonl:<dir>): every deleted row is in it exactly
once — counted and checksummed against the rows as they were — one gzip JSONL file per UTC day,
also when a run dies between writing a batch and deleting it, or between committing and tidying up."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from actors.cleanup.archive import JsonlArchive
from actors.cleanup.batches import Limits, Target, delete_in_batches
from tests.cleanup.conftest import audit_logs, ids
from worker_app.db import Database

BEFORE = datetime(2026, 9, 1, tzinfo=UTC)
DUE = Target("deleted", "audit_logs", "created_at", BEFORE, key_type="bigint")
JOB = "cleanup_audit_logs"


class Killed(Exception):
    """The process dies here."""


def archived_lines(directory: Path) -> list[str]:
    """Every line of every archive file (each file read whole, all its gzip members)."""
    lines: list[str] = []
    for path in sorted(directory.glob("audit_logs-*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            lines.extend(f.read().splitlines())
    return lines


def due_rows(engine: sa.Engine) -> list[str]:
    """The due rows as the archive renders them (``row_to_json``, timestamps in UTC)."""
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        query = "SELECT row_to_json(t)::text FROM audit_logs AS t WHERE created_at < :before"
        return list(conn.execute(sa.text(query), {"before": BEFORE}).scalars())


def checksum(lines: list[str]) -> tuple[int, str]:
    return len(lines), hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


MIDNIGHT = datetime(2026, 8, 20, tzinfo=UTC)


def seed(engine: sa.Engine) -> tuple[list[str], set[int]]:
    """300 due rows over three UTC days (two a microsecond either side of a midnight), 40 not due;
    the due rows' JSON and the others' ids."""
    spread = [MIDNIGHT + timedelta(seconds=(n - 149) * 580, microseconds=n % 2) for n in range(298)]
    audit_logs(engine, [MIDNIGHT - timedelta(microseconds=1), MIDNIGHT, *spread])
    kept = audit_logs(engine, [BEFORE + timedelta(microseconds=n) for n in range(40)])
    return due_rows(engine), set(kept)


@pytest.mark.parametrize("key_ranges", [True, False], ids=["key ranges", "cursor"])
def test_every_deleted_row_is_in_the_archive_once_in_the_file_of_its_day(
    database: Database, clean_tables: sa.Engine, tmp_path: Path, key_ranges: bool
) -> None:
    # Given 300 due rows over three days and 40 not due
    due, kept = seed(clean_tables)
    archive = JsonlArchive(tmp_path, "audit_logs")

    # When they are deleted in batches of 7 with the archive on
    target = Target("deleted", "audit_logs", "created_at", BEFORE, key_type="bigint", key_ranges=key_ranges)
    deleted = delete_in_batches(database, JOB, [target], Limits(batch_size=7), archive=archive)

    # Then the archive holds exactly the deleted rows, each in its UTC day's file, and no journal
    assert deleted.counts == {"deleted": 300} and archive.rows == 300
    assert checksum(archived_lines(tmp_path)) == checksum(due)
    assert sorted(p.name for p in tmp_path.glob("audit_logs*")) == [
        "audit_logs-2026-08-18.jsonl.gz", "audit_logs-2026-08-19.jsonl.gz", "audit_logs-2026-08-20.jsonl.gz",
    ]  # fmt: skip
    for day in ("2026-08-18", "2026-08-19", "2026-08-20"):
        with gzip.open(tmp_path / f"audit_logs-{day}.jsonl.gz", "rt") as f:
            assert all(json.loads(line)["created_at"].startswith(f"{day}T") for line in f)
    assert ids(clean_tables, "audit_logs") == kept


class DiesAfterWriting(JsonlArchive):
    def write(self, rows: object) -> None:
        super().write(rows)  # type: ignore[arg-type]
        if self.rows >= 50:
            raise Killed  # after the batch is archived and fsynced, before its DELETE


class DiesBeforeTidying(JsonlArchive):
    def committed(self) -> None:
        if self.rows >= 50:
            raise Killed  # after the batch's DELETE committed, before the journal goes
        super().committed()


@pytest.mark.parametrize("dying", [DiesAfterWriting, DiesBeforeTidying])
def test_a_run_killed_around_a_batch_leaves_nothing_lost_or_twice_after_the_next_run(
    database: Database, clean_tables: sa.Engine, tmp_path: Path, dying: type[JsonlArchive]
) -> None:
    # Given a run that dies around its sixth batch of 10
    due, kept = seed(clean_tables)
    with pytest.raises(Killed):
        delete_in_batches(database, JOB, [DUE], Limits(batch_size=10), archive=dying(tmp_path, "audit_logs"))
    in_flight = {int(k) for k in JsonlArchive(tmp_path, "audit_logs").pending()["keys"]}
    assert len(in_flight) == 10
    left = 300 - 50 - (10 if dying is DiesBeforeTidying else 0)
    assert len(ids(clean_tables, "audit_logs")) == len(kept) + left
    assert len(archived_lines(tmp_path)) == 60  # the batch in flight is in the archive too

    # When the next run starts
    archive = JsonlArchive(tmp_path, "audit_logs")
    deleted = delete_in_batches(database, JOB, [DUE], Limits(batch_size=10), archive=archive)

    # Then it settled the batch and finished: every due row archived exactly once
    assert deleted.counts == {"deleted": left}
    assert checksum(archived_lines(tmp_path)) == checksum(due)
    assert ids(clean_tables, "audit_logs") == kept
    journaled = {int(k) for k in archive.pending()["keys"]}  # the last batch's: deleted
    assert journaled and not (journaled | in_flight) & ids(clean_tables, "audit_logs")


def test_a_journal_torn_by_a_crash_while_it_was_written_is_ignored(tmp_path: Path) -> None:
    # Given a journal cut short mid-write (its batch had not appended anything yet)
    (tmp_path / ".audit_logs.journal.json").write_text('{"table": "audit_logs", "keys": ["1", "2"')

    # Then it reads as nothing pending
    assert JsonlArchive(tmp_path, "audit_logs").pending() == {}
