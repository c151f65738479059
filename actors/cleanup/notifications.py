"""``cleanup_old_notifications`` (01:00 UTC daily): settled ``notification_queue`` rows — ``sent``
or ``failed`` — created more than CLEANUP_NOTIFICATION_RETENTION_DAYS (7) ago, on the partial index
``ix_notification_queue_settled_created_at`` (migration 0013). A ``pending`` row is never touched,
however old. A settled row of a broadcast still in progress (not ``settled_at``) is kept until the
broadcast settles, so its progress figures stay right; the worker's ``notification_broadcast_items``
row of each deleted notification goes in the same batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.batches import Target
from actors.cleanup.run import run_job
from worker_app.config import Settings
from worker_app.runtime import get_runtime

JOB = "cleanup_old_notifications"

_SETTLED = "status IN ('sent', 'failed')"
_NOT_IN_A_RUNNING_BROADCAST = (
    "NOT EXISTS (SELECT 1 FROM notification_broadcast_items AS i JOIN notification_broadcasts AS b "
    "ON b.id = i.broadcast_id WHERE i.notification_id = t.id AND b.settled_at IS NULL)"
)
_ITEMS = "DELETE FROM notification_broadcast_items WHERE notification_id IN (SELECT key FROM gone)"


def targets(settings: Settings, now: datetime) -> list[Target]:
    """The notifications due at ``now``."""
    before = now - timedelta(days=settings.cleanup_notification_retention_days)
    where = f"{_SETTLED} AND {_NOT_IN_A_RUNNING_BROADCAST}"
    return [Target("deleted", "notification_queue", "created_at", before, where=where, then=_ITEMS)]


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_old_notifications() -> dict[str, Any]:
    """Delete sent and failed notifications past retention in batches (daily, 01:00 UTC)."""
    runtime = get_runtime()
    return run_job(runtime, JOB, targets(runtime.settings, datetime.now(UTC)))
