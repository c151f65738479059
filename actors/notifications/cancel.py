"""The notifications domain's canceller (:func:`worker_app.jobs.register_canceller`): a broadcast,
and a send deferred to ``notification_queue``.

* A broadcast (a ``notification_broadcasts`` row has the id, whether or not a job tracks it) is
  cancelled (:mod:`~actors.notifications.broadcast_cancel`), its pending rows withdrawn, and —
  with a Redis client — settled at once when no row is in flight; otherwise the next drain's
  refresh settles it. Its job (if any) then ends ``cancelled``.
* A ``deferred`` send's queued row is withdrawn unless a drain is sending it or it is over.
"""

from __future__ import annotations

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.notifications import broadcast
from actors.notifications.broadcast_cancel import cancel_broadcast, withdraw_cancelled
from actors.notifications.on_demand import withdraw_deferred
from models import Job
from models.notifications import NotificationBroadcast
from worker_app import jobs
from worker_app.db import Database
from worker_app.jobs import BROADCAST_CANCELLED, CANCELLED, NOTHING_TO_CANCEL, CancelResult

_BROADCAST = select(NotificationBroadcast).with_for_update()


def cancel_notification_job(
    database: Database, job_id: str, by: str, redis_client: redis.Redis | None
) -> CancelResult | None:
    """Cancel the broadcast or deferred send ``job_id``; ``None`` when it is neither."""
    with database.transaction() as s:
        # the broadcast's row is locked before the job's, in the order every other writer takes them
        found = s.get(NotificationBroadcast, job_id, with_for_update=True)
        job = s.get(Job, job_id, with_for_update=True)
        if found is None and job is not None and job.status == "sending":
            # its rows were committed between the two reads: it is a broadcast after all
            found = s.scalar(_BROADCAST.where(NotificationBroadcast.id == job_id))
        if found is None:
            return _withdraw_deferred(s, job, by) if job is not None and job.status == "deferred" else None
        if not cancel_broadcast(s, job_id, by=by):
            status = job.status if job is not None else None
            return CancelResult(job_id, NOTHING_TO_CANCEL, status, f"broadcast {job_id} has settled already")
        jobs.record_cancel(s, job_id, by)
    return _withdraw_broadcast(database, job_id, redis_client)


def describe_notification_job(database: Database, job_id: str) -> str | None:
    """A broadcast without a job row (sent from Python), in one line; ``None`` when it is none."""
    found = broadcast.get_broadcast(database, job_id)
    return None if found is None else f"broadcast {job_id} ({found.total} chats, no job row)"


def _withdraw_deferred(s: Session, job: Job, by: str) -> CancelResult:
    notification_id = job.result.get("notification_id") if isinstance(job.result, dict) else None
    if notification_id and withdraw_deferred(s, str(notification_id), by=by):
        jobs.record_cancel(s, job.job_id, by, status="cancelled", error=f"cancelled by {by} while deferred")
        detail = f"job {job.job_id}: its queued notification {notification_id} was withdrawn"
        return CancelResult(job.job_id, CANCELLED, "cancelled", detail, rows_cancelled=1)
    detail = f"job {job.job_id}: its queued notification was already sent, failed or is being sent"
    return CancelResult(job.job_id, NOTHING_TO_CANCEL, job.status, detail)


def _withdraw_broadcast(
    database: Database, broadcast_id: str, redis_client: redis.Redis | None
) -> CancelResult:
    """Withdraw the cancelled broadcast's pending rows, settle it if nothing is in flight."""
    rows = withdraw_cancelled(database, [broadcast_id])
    if redis_client is not None:
        broadcast.refresh_progress(database, redis_client, [broadcast_id])
    job = jobs.get_job(database, broadcast_id)
    status = job.status if job is not None else None
    settled = broadcast.get_broadcast(database, broadcast_id)
    detail = f"broadcast {broadcast_id}: {rows} pending row(s) cancelled; "
    if settled is not None and settled.settled_at is not None:
        counts = f"{settled.sent} sent, {settled.failed} failed, {settled.cancelled} cancelled"
        detail += f"it has settled ({counts})"
    else:
        detail += "rows being sent finish first, then it settles as cancelled"
    return CancelResult(broadcast_id, BROADCAST_CANCELLED, status, detail, rows_cancelled=rows)
