"""The one way cleanup deletes rows from the backend's busy tables: :func:`delete_in_batches`.

Each :class:`Target` is "rows of ``table`` whose ``column`` is before ``before`` (and ``where``)".
They go ``batch_size`` at a time, each batch its own short transaction of one statement::

    WITH gone AS (DELETE FROM table WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM table WHERE <due> AND <this batch's window> FOR UPDATE SKIP LOCKED))
      RETURNING key, column)
    SELECT count, last row FROM gone;  COMMIT

The window is a primary-key range on an integer key, or the next rows after a cursor on the
column's index (:mod:`actors.cleanup.walks`). ``SKIP LOCKED`` never waits on a row the backend
holds (it is left for the next run). The run holds one connection of its own (the "job's session")
with ``statement_timeout``, ``lock_timeout`` and a session advisory lock per job, so a second run of
the same job (a redelivery while the first still runs) finds it busy and ends at once; the
connection is discarded afterwards (settings and lock go with it, nothing leaks into the pool).

Between batches the run stops cleanly — counting what it deleted, the reason in ``stopped`` — when
its time budget is spent (``time budget``), it deleted its ``max_rows`` (``batch limit``), the
worker is shutting down (``shutdown``) or a batch hit a timeout (``timeout``: a lock held too long,
the database slow); the next run carries on with the rows left. With an archive
(:mod:`actors.cleanup.archive`) the ``DELETE`` returns the rows
whole and they are written durably before the batch commits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row, text
from sqlalchemy.exc import OperationalError

from actors.cleanup.walks import Last, Walk, delete_batch, walk_of
from worker_app.config import Settings
from worker_app.db import Database

log = logging.getLogger("actors.cleanup")

#: SQLSTATEs of a batch given up by its own session's limits: query_canceled (statement_timeout),
#: lock_not_available (lock_timeout).
QUERY_CANCELED, LOCK_NOT_AVAILABLE = "57014", "55P03"  # statement_timeout, lock_timeout
TIMEOUT_SQLSTATES = (QUERY_CANCELED, LOCK_NOT_AVAILABLE)


@dataclass(frozen=True)
class Target:
    """Rows of ``table`` that are due: ``column < before`` (``column IS NOT NULL`` when ``before`` is
    ``None``) and ``where`` (static SQL, the row aliased ``t``; its values in ``params``). ``name``
    labels the count. ``key_ranges``: walk an integer ``key`` by ranges rather than a cursor on
    ``column``. ``then``: a data-modifying statement run with each batch's ``DELETE``, which can read
    the deleted rows as ``gone(key, at)``."""

    name: str
    table: str
    column: str
    before: datetime | None
    where: str = "TRUE"
    params: Mapping[str, Any] = field(default_factory=dict)
    key: str = "id"
    key_type: str = "uuid"
    key_ranges: bool = False
    then: str | None = None

    def due(self) -> str:
        """The SQL condition of a due row."""
        bound = f"{self.column} IS NOT NULL" if self.before is None else f"{self.column} < :before"
        return f"{bound} AND ({self.where})"

    def bind(self) -> dict[str, Any]:
        return {**self.params, "before": self.before}


@dataclass(frozen=True)
class Limits:
    """How a run deletes: rows per batch, seconds it may run, pause between batches, the
    session's ``statement_timeout`` / ``lock_timeout``, and the most rows the run deletes
    (``max_rows``, the job's ``<JOB>_BATCH_LIMIT``; ``None``: no cap)."""

    batch_size: int = 1000
    budget_s: float = 300.0
    pause_s: float = 0.0
    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 1000
    max_rows: int | None = None

    @classmethod
    def of(cls, settings: Settings, job: str | None = None) -> Limits:
        """The CLEANUP_* settings (and ``job``'s batch limit); the budget ends a batch's worst case
        before TIME_LIMIT_MS would interrupt the run."""
        most_s = (settings.time_limit_ms - settings.cleanup_statement_timeout_ms) / 1000
        return cls(
            batch_size=settings.cleanup_batch_size,
            budget_s=min(settings.cleanup_time_budget_s, most_s),
            pause_s=settings.cleanup_batch_pause_ms / 1000,
            statement_timeout_ms=settings.cleanup_statement_timeout_ms,
            lock_timeout_ms=settings.cleanup_lock_timeout_ms,
            max_rows=settings.batch_limit(job) if job else None,
        )


@dataclass
class Deleted:
    """What a run did: rows deleted per target name, batches committed, the longest batch's
    transaction (seconds, BEGIN to COMMIT returned), and why it stopped early (``None``: nothing due
    is left)."""

    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_s: float = 0.0
    stopped: str | None = None

    def add(self, name: str, rows: int, seconds: float) -> None:
        self.counts[name] = self.counts.get(name, 0) + rows
        self.batches += 1
        self.longest_batch_s = max(self.longest_batch_s, seconds)


class Archive(Protocol):
    """Keeps each batch's rows (``key``, ``at`` = the target's column, ``doc`` = the row as JSON)
    durably before their delete commits."""

    def recover(self, conn: Connection) -> None:
        """Settle a batch a killed run left between its archive write and its commit."""

    def write(self, rows: Sequence[Row[Any]]) -> None:
        """Write ``rows`` durably (fsynced) — called before the batch's ``DELETE`` commits."""

    def committed(self) -> None:
        """The batch last written is deleted and committed."""


class Progress(Protocol):
    """Told of each committed batch: ``(target name, rows)``."""

    def __call__(self, name: str, rows: int) -> None: ...


def delete_in_batches(
    database: Database, job: str, targets: Sequence[Target], limits: Limits, *,
    archive: Archive | None = None, stop: threading.Event | None = None, progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Deleted:  # fmt: skip
    """Delete every due row of ``targets`` (in order) in batches, within ``limits``; see the module
    docstring. ``stop`` set: stop at the next batch. ``progress`` is called after each commit;
    ``clock`` (seconds) measures the budget."""
    deadline = clock() + limits.budget_s
    with job_session(database, job, limits, archived=archive is not None) as conn:
        if conn is None:
            return Deleted(stopped="another run in progress")
        run = _Run(conn, limits, lambda: clock() >= deadline, archive, stop, progress)
        if archive is not None:
            archive.recover(conn)
        for target in targets:
            run.deleted.counts.setdefault(target.name, 0)
            run.deleted.stopped = run.walk(target)
            if run.deleted.stopped:
                break
    return run.deleted


@dataclass
class _Run:
    conn: Connection
    limits: Limits
    out_of_time: Callable[[], bool]
    archive: Archive | None
    stop: threading.Event | None
    progress: Progress | None
    deleted: Deleted = field(default_factory=Deleted)

    def walk(self, target: Target) -> str | None:
        """Batches of one target until none is due; the reason if it stopped before that. A statement
        or lock timeout — in a batch, or in the walk's own queries between batches — stops the run
        cleanly (``timeout``), as the budget does; the next run goes on."""
        try:
            return self._walk(target)
        except OperationalError as e:
            if getattr(e.orig, "sqlstate", None) not in TIMEOUT_SQLSTATES:
                raise
            log.warning("cleanup: a batch of %s (%s) gave up: %s; the next run goes on",
                        target.table, target.name, str(e.orig).strip().splitlines()[0])  # fmt: skip
            return "timeout"

    def _walk(self, target: Target) -> str | None:
        walk = walk_of(self.conn, target, self.limits.batch_size)
        while not walk.done:
            if self.stop is not None and self.stop.is_set():
                return "shutdown"
            if self.out_of_time():
                return "time budget"
            if self.limits.max_rows is not None:
                left = self.limits.max_rows - sum(self.deleted.counts.values())
                if left <= 0:
                    return "batch limit"
                walk.n = min(walk.n, left)
            deleted, last = self.batch(target, walk)
            walk.advance(self.conn, deleted, last)
            if self.limits.pause_s and not walk.done and _paused(self.stop, self.limits.pause_s):
                return "shutdown"
        return None

    def batch(self, target: Target, walk: Walk) -> tuple[int, Last | None]:
        """One batch in its own transaction (archived first if there is an archive). A key range is
        first deleted as it is; if a row in it is held past ``lock_timeout``, again with the held rows
        skipped."""
        window, plain = walk.window(), walk.plain
        started = time.perf_counter()
        try:
            with self.conn.begin():
                deleted, last = delete_batch(self.conn, target, window, plain=plain, archive=self.archive)
        except OperationalError as e:
            if not plain or getattr(e.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.info(
                "cleanup: a row of %s (%s) is held; its batch again, skipping it", target.table, target.name
            )
            with self.conn.begin():
                deleted, last = delete_batch(self.conn, target, window, plain=False, archive=self.archive)
        if deleted:
            if self.archive is not None:
                self.archive.committed()
            self.deleted.add(target.name, deleted, time.perf_counter() - started)
            if self.progress is not None:
                self.progress(target.name, deleted)
        return deleted, last


def _paused(stop: threading.Event | None, seconds: float) -> bool:
    """Wait between batches; ``True`` if the worker began stopping meanwhile."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


@contextmanager
def job_session(
    database: Database, job: str, limits: Limits, *, archived: bool
) -> Iterator[Connection | None]:
    """A connection of the run's own, with the session's timeouts, ``TimeZone`` UTC (archived rows'
    timestamps) and the job's advisory lock — or ``None`` when another run holds that lock. Unless
    ``archived`` (the batch is read, written to the archive, then deleted: a transaction), each
    batch's one statement commits on its own (autocommit: no ``BEGIN``/``COMMIT`` round trips).
    Commits stay synchronous: with ``synchronous_commit = off`` the backend's own commits flushed the
    cleanup's WAL, and their p99 latency rose more during a run (``bench.cleanup``). The connection is
    invalidated on the way out: closed, not returned to the pool."""
    conn = database.engine.connect()
    settings = {"statement_timeout": f"{limits.statement_timeout_ms}ms",
                "lock_timeout": f"{limits.lock_timeout_ms}ms", "TimeZone": "UTC"}  # fmt: skip
    if not archived:
        conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with conn.begin():
            for name, value in settings.items():
                conn.execute(text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value})
            locked = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:name))"),
                                  {"name": f"cybervpn:cleanup:{job}"}).scalar_one()  # fmt: skip
        if not locked:
            log.warning("cleanup %s: another run holds its lock; this one does nothing", job)
        yield conn if locked else None
    finally:
        conn.invalidate()
        conn.close()
