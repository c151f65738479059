"""Rows archived before cleanup deletes them (``CLEANUP_AUDIT_ARCHIVE=jsonl:<dir>``, audit logs).

**Format.** ``<dir>/<table>-YYYY-MM-DD.jsonl.gz``, one file per UTC day of the rows' ``created_at``;
one line per row: the row as PostgreSQL's ``row_to_json`` renders it (every column in table order,
the backend's own included; timestamps in UTC). Each batch appends one gzip member to each day's
file it touches; ``zcat`` and Python's :mod:`gzip` read such a multi-member file whole.

**Guarantee.** Every row cleanup deletes is in the archive exactly once, whatever kills the run and
when; a row still in the table is in no file, except while its batch is in flight. Per batch, in the
batch's transaction:

1. the rows are deleted (not committed yet), the statement returning them whole;
2. the journal ``<dir>/.<table>.journal.json`` is overwritten with the batch's keys and each file's
   size before, and fsynced;
3. the gzip members are appended and each file fsynced (the directory too for a new file);
4. the transaction commits.

Every run (under the job's advisory lock, before its first batch) settles the journal: it locks the
journal's rows that are still there — waiting for a killed run's transaction to end — and if any is
there the batch never committed, so every file is truncated back to its recorded size (a new file
removed); if none is, the batch committed and its lines stay. The ``DELETE`` of a batch is atomic
and keys are never reused, so "any row still there" is exactly "not committed". A journal torn by a
crash while it was written means its batch had not appended anything yet: it is ignored. Two fsyncs
per batch (journal, file) plus one per new file.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, text

from worker_app.durable import fsync_dir

log = logging.getLogger("actors.cleanup")


class JsonlArchive:
    """The archive of one table in ``directory`` (created on first use)."""

    def __init__(self, directory: Path, table: str, *, key: str = "id", key_type: str = "bigint") -> None:
        self.directory = directory
        self.table = table
        self.key = key
        self.key_type = key_type
        self.journal = directory / f".{table}.journal.json"
        self.rows = 0
        """Rows archived (and deleted) through this object."""
        self._in_flight = 0

    def path(self, day: date) -> Path:
        """The file of rows created on ``day`` (UTC)."""
        return self.directory / f"{self.table}-{day.isoformat()}.jsonl.gz"

    def pending(self) -> dict[str, Any]:
        """The journal: the last batch written (``keys``, ``files``: each file's size before), ``{}``
        once settled. A torn journal (a crash while writing it, before any line of its batch was
        appended, the batch before it committed) reads as ``{}``."""
        try:
            content = json.loads(self.journal.read_bytes() or b"{}")
        except (FileNotFoundError, ValueError):
            return {}
        return content if isinstance(content, dict) else {}

    def recover(self, conn: Connection) -> None:
        """Settle the journal's batch (module docstring): its lines go if its rows are still there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pending = self.pending()
        if not pending.get("keys"):
            return
        keys = f"{self.key} = ANY(CAST(:keys AS {self.key_type}[]))"
        locked = f"SELECT count(*) FROM (SELECT 1 FROM {self.table} WHERE {keys} FOR UPDATE) AS still"
        with conn.begin():
            still_there = conn.execute(text(locked), {"keys": pending["keys"]}).scalar_one()
        if still_there:
            for name, size in pending["files"].items():
                _truncate(self.directory / name, size)
            log.warning("cleanup archive: a batch of %d %s row(s) was archived but never deleted (the run "
                        "was killed); its lines were taken out of %s", len(pending["keys"]), self.table,
                        ", ".join(sorted(pending["files"])))  # fmt: skip
        self._write_journal({})

    def write(self, rows: Sequence[Row[Any]]) -> None:
        """Journal the batch, then append its rows to their days' files, fsynced (steps 2 and 3)."""
        by_day: dict[date, list[str]] = {}
        for row in rows:
            by_day.setdefault(row.at.astimezone(UTC).date(), []).append(row.doc)
        paths = {day: self.path(day) for day in by_day}
        sizes = {p.name: p.stat().st_size if p.exists() else 0 for p in paths.values()}
        self._write_journal({"table": self.table, "keys": [str(r.key) for r in rows], "files": sizes})
        for day, docs in sorted(by_day.items()):
            member = gzip.compress(("\n".join(docs) + "\n").encode(), compresslevel=1, mtime=0)
            _append(paths[day], member, new=sizes[paths[day].name] == 0)
        self._in_flight = len(rows)

    def committed(self) -> None:
        """The batch is deleted and committed. Its journal stays until the next batch's replaces it:
        a recovery would find its rows gone and keep its lines."""
        self.rows += self._in_flight
        self._in_flight = 0

    def _write_journal(self, content: dict[str, Any]) -> None:
        """Overwrite the journal in place and fsync it (the directory too when it is new)."""
        new = not self.journal.exists()
        data = json.dumps(content).encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            _write_all(fd, data)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append(path: Path, data: bytes, *, new: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def _truncate(path: Path, size: int) -> None:
    if size == 0:
        path.unlink(missing_ok=True)
        return
    with path.open("r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
