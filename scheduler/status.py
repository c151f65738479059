"""What the schedule looks like right now: every job, its last and next fire, and who leads.

Read by ``worker-app schedules`` (and the dashboard). The table is the one the leader published
(``scheduler_jobs``: its env overrides, its actors); before any scheduler has led, this host's own
configuration is shown instead. The leader and standbys come from PostgreSQL's lock table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from scheduler.fire import conninfo
from scheduler.leader import Holder, holders
from scheduler.table import ScheduledJob, resolve_jobs
from worker_app.config import Settings


@dataclass(frozen=True)
class LastFire:
    scheduled_at: datetime
    kind: str
    status: str
    reason: str | None
    message_id: str | None
    fired_at: datetime
    started_at: datetime | None


@dataclass(frozen=True)
class JobStatus:
    job: ScheduledJob
    last: LastFire | None
    next_fire_at: datetime | None


@dataclass(frozen=True)
class ScheduleStatus:
    jobs: list[JobStatus]
    published_by: str | None  # None: this host's configuration (no scheduler has published)
    published_at: datetime | None
    sessions: list[Holder]

    @property
    def leader(self) -> Holder | None:
        return next((h for h in self.sessions if h.leader), None)

    @property
    def standbys(self) -> list[Holder]:
        return [h for h in self.sessions if not h.leader]


def schedule_status(
    conn: psycopg.Connection[Any], lock_name: str, local_jobs: list[ScheduledJob], now: datetime | None = None
) -> ScheduleStatus:
    """Assemble the status from the database; ``local_jobs`` stand in until a leader publishes."""
    now = now or datetime.now(UTC)
    published = conn.execute(
        "SELECT job, actor, queue, schedule, jitter_s, grace_s, immediate, enabled, disabled_reason,"
        " updated_at, updated_by FROM scheduler_jobs"
    ).fetchall()
    published_by = published_at = None
    if published:
        order = {job.name: i for i, job in enumerate(local_jobs)}
        published.sort(key=lambda r: (order.get(r[0], len(order)), r[0]))
        # a batch limit is the workers' setting, not the scheduler's: this host's configuration says it
        limits = {job.name: job.batch_limit for job in local_jobs}
        jobs = [
            ScheduledJob(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], None, limits.get(r[0]))
            for r in published
        ]
        newest = max(published, key=lambda r: r[9])
        published_at, published_by = newest[9], newest[10]
    else:
        jobs = local_jobs
    last = {
        r[0]: LastFire(*r[1:])
        for r in conn.execute(  # each job's newest fire through the primary key (job, scheduled_at)
            "SELECT f.job, f.scheduled_at, f.kind, f.status, f.reason, f.message_id, f.fired_at, f.started_at"
            " FROM unnest(%(jobs)s::text[]) AS j(job) CROSS JOIN LATERAL ("
            "  SELECT * FROM scheduler_fires WHERE job = j.job ORDER BY scheduled_at DESC LIMIT 1) f",
            {"jobs": [job.name for job in jobs]},
        ).fetchall()
    }
    statuses = [
        JobStatus(
            job, last.get(job.name), job.trigger().get_next_fire_time(None, now) if job.enabled else None
        )
        for job in jobs
    ]
    return ScheduleStatus(statuses, published_by, published_at, holders(conn, lock_name))


def current_status(settings: Settings, actors: dict[str, Any]) -> ScheduleStatus:
    """The status as ``worker-app schedules`` and the dashboard show it: this host's table stands in
    until a leader publishes. Raises ``psycopg.Error`` (``UndefinedTable`` before migrations)."""
    local = resolve_jobs(settings, actors)
    with psycopg.connect(
        conninfo(settings.database_url.get_secret_value()), autocommit=True, connect_timeout=5
    ) as conn:
        return schedule_status(conn, settings.scheduler_lock_name, local)
