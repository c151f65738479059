"""``cleanup_webhook_logs`` (Monday 03:00 UTC): ``webhook_logs`` rows older than
CLEANUP_WEBHOOK_RETENTION_DAYS (30), on ``ix_webhook_logs_created_at``. ``retry_failed_webhooks``
only looks at the last 24 h, so nothing it could still need is ever due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.batches import Target
from actors.cleanup.run import run_job
from worker_app.config import Settings
from worker_app.runtime import get_runtime

JOB = "cleanup_webhook_logs"


def targets(settings: Settings, now: datetime) -> list[Target]:
    """The webhook logs due at ``now``."""
    before = now - timedelta(days=settings.cleanup_webhook_retention_days)
    return [Target("deleted", "webhook_logs", "created_at", before)]


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_webhook_logs() -> dict[str, Any]:
    """Delete webhook logs past retention in batches (weekly, Monday 03:00 UTC)."""
    runtime = get_runtime()
    return run_job(runtime, JOB, targets(runtime.settings, datetime.now(UTC)))
