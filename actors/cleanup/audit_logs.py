"""``cleanup_audit_logs`` (Sunday 03:00 UTC): ``audit_logs`` rows older than
CLEANUP_AUDIT_RETENTION_DAYS (90), walked by ranges of the primary key (``id``, in insertion order
like ``created_at``) — archived first when
CLEANUP_AUDIT_ARCHIVE is ``jsonl:<dir>`` (:mod:`actors.cleanup.archive`: gzip JSONL per day, every
deleted row in it exactly once, whatever kills the run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.archive import JsonlArchive
from actors.cleanup.batches import Target
from actors.cleanup.run import run_job
from worker_app.config import Settings
from worker_app.runtime import get_runtime

JOB = "cleanup_audit_logs"
TABLE = "audit_logs"


def targets(settings: Settings, now: datetime) -> list[Target]:
    """The audit logs due at ``now``."""
    before = now - timedelta(days=settings.cleanup_audit_retention_days)
    return [Target("deleted", TABLE, "created_at", before, key_type="bigint", key_ranges=True)]


def archive_of(settings: Settings) -> JsonlArchive | None:
    """The archive CLEANUP_AUDIT_ARCHIVE names (validated at start-up), or ``None``."""
    if not settings.cleanup_audit_archive:
        return None
    return JsonlArchive(Path(settings.cleanup_audit_archive.removeprefix("jsonl:")), TABLE, key_type="bigint")


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_audit_logs() -> dict[str, Any]:
    """Delete (and archive, if configured) audit logs past retention in batches (weekly, Sunday 03:00 UTC)."""
    runtime = get_runtime()
    settings = runtime.settings
    return run_job(runtime, JOB, targets(settings, datetime.now(UTC)), archive=archive_of(settings))
