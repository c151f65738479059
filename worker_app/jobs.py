"""Job tracking: a record per on-demand job, its status, progress, result or error — and cancelling it.

Producers enqueue with :func:`enqueue_job` (the HTTP API does); the row is written before the
message is published, so a worker always finds it. The :class:`~worker_app.middleware.jobs.JobTracking`
middleware moves it through ``queued → running → succeeded | failed | deferred | dead`` (back to
``queued`` while a retry waits); a broadcast's job goes on to ``sending`` and ends with the
broadcast (:mod:`worker_app.notifications.broadcast`). Actors report progress with one call::

    from worker_app.jobs import report_progress
    report_progress(processed=500, total=2000, failed=3)

Writes are throttled to one per ``PROGRESS_EVERY_S`` per job (the last one, ``processed == total``,
always goes through). A job cancelled while it runs (:func:`cancel_job`) stops at the next written
report: it raises :class:`~worker_app.errors.JobCancelled`, which is neither retried nor dead.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from models import Job
from models.notifications import NotificationBroadcast
from worker_app import context
from worker_app.db import Database
from worker_app.errors import JobCancelled
from worker_app.notifications import broadcast
from worker_app.notifications.on_demand import withdraw_deferred
from worker_app.runtime import get_runtime

PROGRESS_EVERY_S = 0.5
_last_write: dict[str, float] = {}
_lock = threading.Lock()


def job_of(message: Any) -> dict[str, Any] | None:
    job = message.options.get("job")
    return job if isinstance(job, dict) else None


def enqueue_job(
    database: Database,
    actor: dramatiq.Actor[..., Any],
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    initiated_by: str | None = None,
    trace_id: str | None = None,
) -> dramatiq.Message[Any]:
    """Record a ``queued`` job and enqueue its message; returns the message (its id is the job id)."""
    trace = trace_id or context.current_trace_id() or context.new_trace_id()
    message = actor.message_with_options(
        args=tuple(args), kwargs=kwargs or {}, job={"initiated_by": initiated_by}, trace_id=trace
    )
    with database.transaction() as s:
        s.add(
            Job(
                job_id=message.message_id, actor_name=actor.actor_name, queue_name=actor.queue_name,
                args=list(message.args), kwargs=dict(message.kwargs), status="queued",
                initiated_by=initiated_by, trace_id=trace,
            )
        )  # fmt: skip
    try:
        actor.broker.enqueue(message)
    except Exception as e:
        with database.transaction() as s:
            s.execute(
                update(Job).where(Job.job_id == message.message_id)
                .values(status="failed", error=f"could not enqueue: {type(e).__name__}: {e}")
            )  # fmt: skip
        raise
    return message


RESULT_STATUSES = {"failed": "failed", "queued": "deferred", "deferred": "deferred"}
"""An actor's ``{"status": ...}`` result -> its job's status (anything else: ``succeeded``).
``queued`` is ``send_notification`` handing the message to ``notification_queue``."""


def status_for_result(result: Any) -> str:
    """The job status an actor's return value stands for."""
    reported = result.get("status") if isinstance(result, dict) else None
    return RESULT_STATUSES.get(reported, "succeeded") if isinstance(reported, str) else "succeeded"


_PROGRESS = text(
    "UPDATE jobs SET progress = CAST(:p AS jsonb) WHERE job_id = :id "
    "RETURNING cancel_requested_at, cancel_requested_by"
)


def report_progress(processed: int, total: int, failed: int = 0) -> None:
    """Record the running job's progress (no-op outside a tracked job).

    Raises :class:`JobCancelled` when the job was cancelled and the work is not finished, so the
    actor stops here (a throttled call that writes nothing does not check).
    """
    message = CurrentMessage.get_current_message()
    if message is None or job_of(message) is None:
        return
    now = time.monotonic()
    with _lock:
        last = _last_write.get(message.message_id, 0.0)
        if processed < total and now - last < PROGRESS_EVERY_S:
            return
        _last_write[message.message_id] = now
        if processed >= total:
            _last_write.pop(message.message_id, None)
    progress = {"processed": processed, "total": total, "failed": failed}
    with get_runtime().database.transaction() as s:
        cancel = s.execute(_PROGRESS, {"p": json.dumps(progress), "id": message.message_id}).first()
    if cancel is not None and cancel[0] is not None and processed < total:
        with _lock:
            _last_write.pop(message.message_id, None)
        raise JobCancelled(f"cancelled by {cancel[1] or 'unknown'} at {processed}/{total}")


def get_job(database: Database, job_id: str) -> Job | None:
    with database.new_session() as s:
        return s.get(Job, job_id)


def list_jobs(
    database: Database, *, status: str | None = None, actor: str | None = None, limit: int = 20
) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if actor:
        query = query.where(Job.actor_name == actor)
    with database.new_session() as s:
        return list(s.scalars(query))


def as_dict(job: Job) -> dict[str, Any]:
    data = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


def cli_user() -> str:
    """``cli:<login>``: who started a job from ``worker-app``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


CANCELLED = "cancelled"
CANCEL_REQUESTED = "cancel_requested"
BROADCAST_CANCELLED = "broadcast_cancelled"
NOTHING_TO_CANCEL = "nothing_to_cancel"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CancelResult:
    """What :func:`cancel_job` did (``as_dict()`` is its JSON). ``outcome``:

    * ``cancelled`` — the job had not started (its message is acked unrun when delivered), or it was
      a ``deferred`` send whose queued row was withdrawn (``rows_cancelled`` 1);
    * ``cancel_requested`` — it is running: it stops at its next progress report (a job that reports
      no progress runs to its end);
    * ``broadcast_cancelled`` — ``rows_cancelled`` pending rows were withdrawn; rows being sent
      finish, then it settles and its job is ``cancelled`` (``sending`` until then);
    * ``nothing_to_cancel`` — it is over already (``status`` says how);
    * ``unknown`` — no job and no broadcast has that id.

    ``status`` is the job's status afterwards (None: no jobs row, e.g. a broadcast sent from Python).
    """

    job_id: str
    outcome: str
    status: str | None
    detail: str
    rows_cancelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cancel_job(
    database: Database, job_id: str, *, by: str, redis_client: redis.Redis | None = None
) -> CancelResult:
    """Cancel the job (or broadcast) ``job_id`` on behalf of ``by`` (``cli:alice``, ``admin:42``),
    recorded in ``cancel_requested_by``/``cancel_requested_at`` and in the ``error`` text.

    A broadcast is cancelled when a ``notification_broadcasts`` row has that id (see
    :func:`~worker_app.notifications.broadcast.cancel_broadcast`); with ``redis_client`` it settles at
    once when no row is in flight, else the next drain's refresh settles it. A ``broadcast_message``
    job still inserting its rows is cancelled like any running job: the broadcast is cancelled in
    the transaction that commits them.
    """
    with database.transaction() as s:
        # the broadcast's row is locked before the job's, in the order every other writer takes them
        found = s.get(NotificationBroadcast, job_id, with_for_update=True)
        job = s.get(Job, job_id, with_for_update=True)
        if found is None:
            if job is None:
                return CancelResult(job_id, UNKNOWN, None, f"no job or broadcast with id {job_id}")
            return _cancel_job_row(s, job, by)
        if not broadcast.cancel_broadcast(s, job_id, by=by):
            status = job.status if job is not None else None
            return CancelResult(job_id, NOTHING_TO_CANCEL, status, f"broadcast {job_id} has settled already")
        _mark(s, job_id, by)
    return _withdraw_broadcast(database, job_id, redis_client)


def _cancel_job_row(s: Session, job: Job, by: str) -> CancelResult:
    """Cancel a job that is not (yet) a broadcast, according to its status."""
    if job.status == "queued":
        _mark(s, job.job_id, by, status="cancelled", error=f"cancelled by {by} before it started")
        detail = f"job {job.job_id} had not started: cancelled (its message is acked without running)"
        return CancelResult(job.job_id, CANCELLED, "cancelled", detail)
    if job.status in ("running", "sending"):
        _mark(s, job.job_id, by)
        detail = f"job {job.job_id} is running: it stops at its next progress report"
        return CancelResult(job.job_id, CANCEL_REQUESTED, job.status, detail)
    notification_id = job.result.get("notification_id") if isinstance(job.result, dict) else None
    if job.status == "deferred" and notification_id and withdraw_deferred(s, str(notification_id), by=by):
        _mark(s, job.job_id, by, status="cancelled", error=f"cancelled by {by} while deferred")
        detail = f"job {job.job_id}: its queued notification {notification_id} was withdrawn"
        return CancelResult(job.job_id, CANCELLED, "cancelled", detail, rows_cancelled=1)
    detail = f"job {job.job_id} is {job.status}: nothing to cancel"
    if job.status == "deferred":
        detail = f"job {job.job_id}: its queued notification was already sent, failed or is being sent"
    return CancelResult(job.job_id, NOTHING_TO_CANCEL, job.status, detail)


def _mark(s: Session, job_id: str, by: str, *, status: str | None = None, error: str | None = None) -> None:
    """Record who cancelled and when (the first request wins); with ``status``, the job ends so."""
    values: dict[str, Any] = {
        "cancel_requested_at": func.coalesce(Job.cancel_requested_at, func.now()),
        "cancel_requested_by": func.coalesce(Job.cancel_requested_by, by),
    }
    if status is not None:
        values.update(status=status, error=error, finished_at=func.now())
    s.execute(update(Job).where(Job.job_id == job_id).values(**values))


def _withdraw_broadcast(
    database: Database, broadcast_id: str, redis_client: redis.Redis | None
) -> CancelResult:
    """Withdraw the cancelled broadcast's pending rows, settle it if nothing is in flight."""
    rows = broadcast.withdraw_cancelled(database, [broadcast_id])
    if redis_client is not None:
        broadcast.refresh_progress(database, redis_client, [broadcast_id])
    job = get_job(database, broadcast_id)
    status = job.status if job is not None else None
    settled = broadcast.get_broadcast(database, broadcast_id)
    detail = f"broadcast {broadcast_id}: {rows} pending row(s) cancelled; "
    if settled is not None and settled.settled_at is not None:
        counts = f"{settled.sent} sent, {settled.failed} failed, {settled.cancelled} cancelled"
        detail += f"it has settled ({counts})"
    else:
        detail += "rows being sent finish first, then it settles as cancelled"
    return CancelResult(broadcast_id, BROADCAST_CANCELLED, status, detail, rows_cancelled=rows)
