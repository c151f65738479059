"""``cleanup_finished_jobs`` (03:30 UTC daily): ``jobs`` rows of settled jobs — succeeded, failed,
dead, cancelled — created more than CLEANUP_JOB_RETENTION_DAYS (30) ago, on ``ix_jobs_created_at``.
A job queued, running, sending or deferred (cancelling it still withdraws its queued row) is never
touched, however old. Every tracked message writes a row, so without
this the table (and the dashboard's indexes over it) grows without end.

What goes with a row: the job's page and its line on the Jobs page; an export's ``result.url`` (its
file has long expired: ``EXPORT_TTL_S``). Not the work: a bulk job's journal, a broadcast's rows
and the dead letters are kept in their own tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.batches import Target
from actors.cleanup.run import run_job
from worker_app.config import Settings
from worker_app.runtime import get_runtime

JOB = "cleanup_finished_jobs"
SETTLED = ("succeeded", "failed", "dead", "cancelled")
_SETTLED = "status IN (" + ", ".join(f"'{status}'" for status in SETTLED) + ")"


def targets(settings: Settings, now: datetime) -> list[Target]:
    """The finished jobs due at ``now``."""
    before = now - timedelta(days=settings.cleanup_job_retention_days)
    return [Target("deleted", "jobs", "created_at", before, where=_SETTLED, key="job_id", key_type="text")]


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_finished_jobs() -> dict[str, Any]:
    """Delete finished jobs past retention in batches (daily, 03:30 UTC)."""
    runtime = get_runtime()
    return run_job(runtime, JOB, targets(runtime.settings, datetime.now(UTC)))
