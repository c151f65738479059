"""What a cleanup job would delete now, without deleting (``worker-app cleanup <job> --dry-run``):
per target its table, how many rows are due, and the oldest and newest of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from actors.cleanup import audit_logs, finished_jobs, notifications, tokens, webhook_logs
from actors.cleanup.batches import Target
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.timefmt import utc_stamp

#: Every PostgreSQL cleanup job: the rows it deletes at a given moment.
JOBS: dict[str, Callable[[Settings, datetime], list[Target]]] = {
    notifications.JOB: notifications.targets,
    tokens.JOB: tokens.targets,
    audit_logs.JOB: audit_logs.targets,
    webhook_logs.JOB: webhook_logs.targets,
    finished_jobs.JOB: finished_jobs.targets,
}


@dataclass(frozen=True)
class Due:
    """One target's due rows: how many, and the oldest and newest by the target's column."""

    target: Target
    count: int
    oldest: datetime | None
    newest: datetime | None

    def line(self) -> str:
        t = self.target
        rule = f"{t.column} before {utc_stamp(t.before)}" if t.before else f"{t.column} set"
        span = f"oldest {utc_stamp(self.oldest)}, newest {utc_stamp(self.newest)}" if self.count else "none"
        return f"{t.table:<20} {t.name:<8} {self.count:>12,} row(s) due ({rule}): {span}"


@dataclass(frozen=True)
class Plan:
    """A job's due rows per target."""

    job: str
    due: list[Due]

    def lines(self) -> list[str]:
        total = sum(d.count for d in self.due)
        return [*(d.line() for d in self.due), f"{self.job}: {total:,} row(s) would be deleted (dry run)"]


def plan(database: Database, job: str, settings: Settings, now: datetime) -> Plan:
    """What ``job`` would delete at ``now``."""
    due = []
    with database.transaction() as s:
        for target in JOBS[job](settings, now):
            query = text(f"SELECT count(*), min({target.column}), max({target.column}) "
                         f"FROM {target.table} AS t WHERE {target.due()}")  # fmt: skip
            count, oldest, newest = s.execute(query, target.bind()).one()
            due.append(Due(target, count, oldest, newest))
    return Plan(job, due)
